"""grain pipeline: augmentation, partial labels in batches, workers, iterator state, eval coverage."""

import numpy as np
import pytest
from helpers import tiny_run_config

from mlrpl_jax import config_validation
from mlrpl_jax.data import label_semantics, pipeline, transforms
from mlrpl_jax.data import partial_labels as pl


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    config = tiny_run_config(tmp_path_factory.mktemp("tfds"))
    return (
        config,
        pipeline.make_source(config.data, "train"),
        pipeline.make_source(config.data, "test"),
    )


def test_scaled_sizes_follow_the_reference_at_full_and_small_scale():
    assert transforms.scaled_sizes(512, (512, 448, 384, 320, 256), 448, 1.0) == (
        512, (512, 448, 384, 320, 256), 448,
    )  # fmt: skip
    scale, crops, size = transforms.scaled_sizes(512, (512, 448, 384, 320, 256), 448, 96 / 448)
    assert (scale, size) == (110, 96) and crops == (110, 96, 82, 69, 55)


def test_train_augment_is_seeded_and_crops_the_right_region():
    image = np.arange(20 * 20 * 3, dtype=np.uint8).reshape(20, 20, 3)
    aug = transforms.TrainAugment(scale_size=20, crop_sizes=(20, 10), image_size=10)
    out1 = aug.random_map({"image": image}, np.random.default_rng(3))["image"]
    out2 = aug.random_map({"image": image}, np.random.default_rng(3))["image"]
    assert out1.shape == (10, 10, 3) and out1.dtype == np.uint8
    np.testing.assert_array_equal(out1, out2)
    # With one crop size equal to the image size and no resize, the output is the image or its flip.
    aug = transforms.TrainAugment(scale_size=20, crop_sizes=(20,), image_size=20)
    seen = set()
    for seed in range(20):
        out = aug.random_map({"image": image}, np.random.default_rng(seed))["image"]
        if np.array_equal(out, image):
            seen.add("same")
        elif np.array_equal(out, image[:, ::-1]):
            seen.add("flipped")
        else:
            raise AssertionError("unexpected augmentation output")
    assert seen == {"same", "flipped"}


def test_train_batches_carry_the_partial_labels_of_their_examples(data):
    config, train, _ = data
    loader = pipeline.make_train_loader(config.data, train, 16, seed=0)
    full = train.labels_matrix()
    ids = []
    for batch in (b for _, b in zip(range(4), loader)):
        assert batch["image"].shape == (16, 32, 32, 3) and batch["image"].dtype == np.uint8
        assert batch["labels"].dtype == np.int8
        expected = pl.partial_labels(
            full[batch["example_id"]], "pal", 0.5, config.data.label_seed, batch["example_id"]
        )
        np.testing.assert_array_equal(batch["labels"], expected)
        np.testing.assert_array_equal(batch["full_labels"], full[batch["example_id"]])
        ids.extend(batch["example_id"].tolist())
    assert sorted(ids) == list(range(64))  # one pass = a permutation of the split


def _same(got, expected):
    for k in expected:
        np.testing.assert_array_equal(got[k], expected[k], err_msg=k)


def test_workers_and_a_loader_started_at_a_step_give_identical_batches(data):
    config, train, _ = data
    it0 = pipeline.make_train_loader(config.data, train, 16, seed=1)
    reference = [next(it0) for _ in range(6)]
    config.data.worker_count = 2
    it2 = pipeline.make_train_loader(config.data, train, 16, seed=1)
    for expected in reference[:2]:
        _same(next(it2), expected)
    # The position is the step: a loader started at step 2 continues the stream exactly, across
    # the pass boundary (4 batches per pass), as a resumed run's does.
    config.data.worker_count = 0
    resumed = pipeline.make_train_loader(config.data, train, 16, seed=1, start_step=2)
    for expected in reference[2:]:
        _same(next(resumed), expected)


@pytest.mark.parametrize("process_count", [2, 4])
def test_process_slices_of_each_global_batch_are_the_one_process_batch(data, process_count):
    """One global order: process p's batch s is rows [p*b, (p+1)*b) of the single-process global
    batch s, images and augmentation included, so every process layout trains on the same global
    batches (and resumes at any step under another layout)."""
    config, train, _ = data
    single = pipeline.make_train_loader(config.data, train, 16, seed=3, process_index=0,
                                        process_count=1)  # fmt: skip
    reference = [next(single) for _ in range(6)]
    for start in (0, 3):
        loaders = [
            pipeline.make_train_loader(config.data, train, 16, seed=3, start_step=start,
                                       process_index=p, process_count=process_count)
            for p in range(process_count)
        ]  # fmt: skip
        for expected in reference[start:]:
            parts = [next(loader) for loader in loaders]
            _same({k: np.concatenate([part[k] for part in parts]) for k in expected}, expected)


@pytest.mark.parametrize("process_count", [1, 3])
def test_eval_batches_cover_every_example_once_across_processes(data, process_count):
    config, _, test = data
    seen, num_batches = [], set()
    for pid in range(process_count):
        batches = list(pipeline.eval_batches(config.data, test, 5, pid, process_count))
        num_batches.add(len(batches))
        for b in batches:
            assert b["image"].shape == (5, 32, 32, 3)
            seen.append(b["targets"][b["valid"]])
    assert len(num_batches) == 1  # every process runs the same number of steps
    np.testing.assert_array_equal(np.concatenate(seen), test.labels_matrix())


def test_partial_labels_file_with_a_bad_value_names_file_and_index(data, tmp_path):
    config, train, _ = data
    labels = np.zeros((64, 5), np.int8)
    labels[7, 3] = 2
    path = tmp_path / "labels.txt"
    np.savetxt(path, labels, fmt="%d", delimiter=",")
    config.data.partial_labels_file = str(path)
    with pytest.raises(
        ValueError, match=r"labels.txt: invalid partial label 2 at \(row 7, col 3\)"
    ):
        pipeline.make_train_loader(config.data, train, 16, seed=0)
    config.data.partial_labels_file = None


def test_full_labels_outside_0_1_name_the_example():
    mask = transforms.MaskLabels(
        dataset="toy[train]", num_examples=3, num_classes=2, setting="pal", proportion=0.5,
        seed=0, mode="hash",
    )  # fmt: skip
    record = {"image": np.zeros((4, 4, 3), np.uint8), "labels": np.array([1, 3]), "example_id": 2}
    with pytest.raises(ValueError, match=r"toy\[train\]: example 2 has label value 3 at class 1"):
        mask.map(record)


def test_reference_mask_mode_in_the_pipeline(data):
    config, train, _ = data
    config.data.mask_mode = "reference"
    mask = pipeline.make_mask_transform(config.data, train)
    config.data.mask_mode = "hash"
    full = train.labels_matrix()
    np.random.seed(0)  # the reference: one uniform draw per entry over the whole (N, C) matrix
    keep = np.random.random(full.shape) < 0.5
    expected = np.where(keep, 2 * full.astype(np.int8) - 1, 0)
    for i in (0, 5, 63):
        np.testing.assert_array_equal(mask.map(train[i])["labels"], expected[i])


def test_asl_augmentation_resizes_cuts_out_and_rand_augments():
    """data.augment='asl': square resize, one random-colour Cutout rectangle of half the side,
    RandAugment ops; deterministic per (seed, example), and every op keeps shape and dtype."""
    from PIL import Image

    from mlrpl_jax.data import transforms

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    aug = transforms.AslAugment(32, cutout_factor=0.5, num_ops=0)
    out = aug.random_map({"image": image}, np.random.default_rng(1))["image"]
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    resized = np.asarray(Image.fromarray(image).resize((32, 32), Image.BICUBIC))
    changed = np.any(out != resized, axis=-1)
    ys, xs = np.nonzero(changed)
    assert 0 < changed.sum() <= 17 * 17  # one rectangle of at most (16 + 1)^2 pixels
    box = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    assert (box == box[0, 0]).all()  # a single fill colour
    again = aug.random_map({"image": image}, np.random.default_rng(1))["image"]
    np.testing.assert_array_equal(out, again)
    img = Image.fromarray(resized)
    for name in transforms._RAND_AUGMENT_OPS:
        for sign in (-1.0, 1.0):
            result = np.asarray(transforms.rand_augment_op(img, name, 0.3, sign))
            assert result.shape == (32, 32, 3) and result.dtype == np.uint8, name
    assert not np.array_equal(np.asarray(transforms.rand_augment_op(img, "rotate", 0.5, 1.0)),
                              resized)  # fmt: skip


def test_drop_unlabeled_removes_images_without_positives_from_every_split(monkeypatch):
    from configs import base as base_config
    from mlrpl_jax.data import sources

    rng = np.random.default_rng(0)
    labels = {
        split: (rng.random((n, 5)) < 0.2).astype(np.uint8)
        for split, n in (("train", 60), ("test", 30))
    }

    def fake_source(data, split):
        records = [{"labels": y, "image": np.zeros((2, 2, 3), np.uint8)} for y in labels[split]]
        return sources.Source(name="synthetic_scenes", split=split, data=records,
                              class_names=tuple("abcde"), labels_fn=sources._stored_labels,
                              filename_key=None)  # fmt: skip

    monkeypatch.setattr(pipeline, "make_source", fake_source)
    data = base_config.get_config("plain").data
    data.val_fraction, data.drop_unlabeled = 0.25, True
    splits = pipeline.make_splits(data)
    n_train = int(labels["train"].any(1).sum())
    assert n_train < 60 and len(splits.train) + len(splits.val) == n_train
    assert len(splits.test) == int(labels["test"].any(1).sum()) < 30
    for split in splits:
        assert split.labels_matrix().any(axis=1).all()
        assert split[len(split) - 1]["example_id"] == len(split) - 1
    data.drop_unlabeled = False
    assert len(pipeline.make_splits(data).test) == 30


def cole_observed_labels(full, seed=1200):
    """Cole et al.'s preproc/generate_observed_labels.py (num_pos 1, num_neg 0) written out: labels
    to -1/+1; RandomState(seed); per image shuffle its positives and keep the first, then shuffle
    its negatives and keep none (the shuffle still draws from the generator)."""
    signed = np.where(full == 1, 1.0, -1.0)
    rng = np.random.RandomState(seed)
    observed = np.zeros_like(signed)
    for i in range(len(signed)):
        positives = np.nonzero(signed[i] == 1.0)[0]
        rng.shuffle(positives)
        observed[i, positives[:1]] = 1.0
        negatives = np.nonzero(signed[i] == -1.0)[0]
        rng.shuffle(negatives)
    return observed


def cole_split(num_images, fraction, seed):
    """Cole et al.'s datasets.generate_split written out: (train rows, val rows), sorted."""
    num_val = int(np.round(fraction * num_images))
    perm = np.random.RandomState(seed).permutation(num_images)
    return np.sort(perm[: num_images - num_val]), np.sort(perm[-num_val:])


def test_cole_et_al_files_give_their_labels_and_their_carve_out(tmp_path):
    """Cole et al.'s formatted_train_labels_obs.npy + formatted_train_images.npy as
    data.partial_labels_file, in the LargeLoss setup's 80/20 carve-out: the train and validation
    images are the ones their generate_split gives on their list, and each example carries the
    observed labels of its row in their file, wherever TFDS stores it."""
    config = tiny_run_config(tmp_path / "tfds")
    data = config.data
    whole = pipeline.make_source(data, "train")
    full = whole.labels_matrix()
    names = np.asarray(whole.image_names())[(full == 1).any(axis=1)]
    order = np.random.default_rng(5).permutation(names)  # their order is not ours
    theirs = np.stack([full[int(n)] for n in order])
    observed = cole_observed_labels(theirs)
    np.save(tmp_path / "formatted_train_images.npy", np.asarray([f"{n}.jpg" for n in order]))
    np.save(tmp_path / "formatted_train_labels_obs.npy", observed)
    data.partial_labels_file = str(tmp_path / "formatted_train_labels_obs.npy")
    data.val_split, data.val_fraction, data.val_seed = None, 0.2, 1200
    data.drop_unlabeled, data.val_labels = True, "partial"
    config_validation.validate(config)
    splits = pipeline.make_splits(data)
    train_rows, val_rows = cole_split(len(order), 0.2, 1200)
    assert sorted(splits.train.image_names()) == sorted(order[train_rows])
    assert sorted(splits.val.image_names()) == sorted(order[val_rows])
    row_of = {n: r for r, n in enumerate(order)}
    for split, validation in ((splits.train, False), (splits.val, True)):
        mask = pipeline.make_mask_transform(data, split, validation=validation)
        for k, name in enumerate(split.image_names()):
            got = mask.map(split[k])["labels"]
            np.testing.assert_array_equal(got, observed[row_of[name]], err_msg=name)
    # Their images file must sit beside the labels; our images must be exactly theirs. It names
    # the rows, so the label-semantics cache (co-occurrence of these labels) is keyed on it.
    key = label_semantics.cache_key(data, splits.train)
    np.save(tmp_path / "formatted_train_images.npy", np.asarray([f"{n}.jpg" for n in order[1:]]))
    assert label_semantics.cache_key(data, splits.train) != key
    with pytest.raises(ValueError, match="must come from the same run"):
        pipeline.make_splits(data)
    (tmp_path / "formatted_train_images.npy").unlink()
    with pytest.raises(FileNotFoundError, match="formatted_train_images.npy, which does not exist"):
        pipeline.make_splits(data)
    # Any other .npy file is in example id order and cannot be carved.
    np.save(tmp_path / "labels.npy", observed)
    data.partial_labels_file = str(tmp_path / "labels.npy")
    with pytest.raises(ValueError, match="only Cole et al.'s"):
        config_validation.validate(config)


def test_validation_masks_are_independent_of_the_train_masks(data):
    """The validation split's partial labels use their own seed, derived from data.label_seed, so
    the known entries of validation example i are not those of train example i (a mask drawn with
    the train seed would repeat them entry for entry), and they follow the label seed."""
    config, train, _ = data
    full = train.labels_matrix()
    ids = np.arange(len(train))

    def known(validation, label_seed):
        data_config = config.data.copy_and_resolve_references()
        data_config.label_seed = label_seed
        mask = pipeline.make_mask_transform(data_config, train, validation=validation)
        return mask.partial(full, ids) != 0

    train_known, val_known = known(False, 0), known(True, 0)
    assert 0.4 < train_known.mean() < 0.6 and 0.4 < val_known.mean() < 0.6  # both 50 % known
    agreement = (train_known == val_known).mean()
    assert 0.35 < agreement < 0.65, agreement  # independent draws agree on ~50 % of entries
    np.testing.assert_array_equal(known(True, 0), val_known)  # deterministic
    assert (known(True, 1) != val_known).any()  # and a function of the label seed
