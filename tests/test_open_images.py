"""Open Images (natively partial labels): the streaming builder on tiny fake raw files in the real
CSV formats (verified negatives, classes outside the label set, conflicts, images without a known
label or absent from the copy), resumption after an interruption, clear errors, and the native
labels' path through the masking, the evaluation on known entries and a training run."""

import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_datasets")

from helpers import NO_TENSORFLOW, tiny_run_config

from mlrpl_jax import checkpointing, config_validation, metrics, trainer
from mlrpl_jax.data import label_semantics, pipeline, sources
from mlrpl_jax.data.tfds_builders import open_images

NUM_CLASSES = 5
MIDS = [f"/m/0c{i:02d}" for i in range(NUM_CLASSES)]
FILES = {"train": "oidv6-train-annotations-human-imagelabels.csv",
         "validation": "validation-annotations-human-imagelabels.csv",
         "test": "test-annotations-human-imagelabels.csv"}  # fmt: skip
SIZES = {"train": 14, "validation": 6, "test": 8}


def fake_open_images(root, seed=0):
    """The V6 files in `root`; returns {split: [(ImageID, labels (C,) int8, image written)]} in
    file order. Every image's rows are consecutive (ImageIDs ascending); each has a row of a class
    outside the label set; image 1 of a split has no verified label in the set, image 3 has no
    file, image 2 has class 0 verified both absent and present."""
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "oidv6-class-descriptions-boxable.csv"), "w") as f:
        f.write("LabelName,DisplayName\n")
        f.writelines(f'{m},"Thing, {i}"\n' for i, m in enumerate(MIDS))
    truth = {}
    for split, n in SIZES.items():
        os.makedirs(os.path.join(root, split))
        rows, items = ["ImageID,Source,LabelName,Confidence\n"], []
        for i in range(n):
            image_id = f"{split[0]}{i:03x}abcdef"
            y = rng.choice(np.array([-1, 0, 1], np.int8), size=NUM_CLASSES)
            if i == 1:
                y[:] = 0
            if i == 2:
                y[0] = 1
                rows.append(f"{image_id},verification,{MIDS[0]},0\n")
            for c in rng.permutation(NUM_CLASSES):
                if y[c]:
                    rows.append(f"{image_id},crowdsource-verification,{MIDS[c]},{int(y[c] == 1)}\n")
            rows.append(f"{image_id},verification,/m/unused{i},1\n")
            written = i != 3
            if written:
                pixels = rng.integers(0, 256, (7 + i % 3, 6, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(os.path.join(root, split, f"{image_id}.jpg"))
            items.append((image_id, y, written))
        with open(os.path.join(root, FILES[split]), "w") as f:
            f.writelines(rows)
        truth[split] = items
    return truth


def _kept(items):
    return [(i, y) for i, y, written in items if written and y.any()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("oi")
    truth = fake_open_images(str(root / "raw"))
    data_dir = str(root / "tfds")
    open_images.prepare("boxable", data_dir, str(root / "raw"), shard_size=3)
    return {"truth": truth, "data_dir": data_dir, "raw": str(root / "raw")}


@pytest.mark.parametrize("split", list(SIZES))
def test_round_trip_native_labels(prepared, split):
    source = sources.make_source("open_images/boxable", split, data_dir=prepared["data_dir"])
    kept = _kept(prepared["truth"][split])
    assert source.native_partial and source.num_classes == NUM_CLASSES
    assert source.class_names == tuple(f"Thing, {i}" for i in range(NUM_CLASSES))
    assert source.image_names() == tuple(f"{split}/{i}.jpg" for i, _ in kept)
    labels = source.labels_matrix()
    assert labels.dtype == np.int8 and (labels == -1).any()  # verified negatives kept as -1
    np.testing.assert_array_equal(labels, np.stack([y for _, y in kept]))
    with open(os.path.join(prepared["raw"], split, f"{kept[-1][0]}.jpg"), "rb") as f:
        want = np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))
    np.testing.assert_array_equal(source[len(kept) - 1]["image"], want)
    np.testing.assert_array_equal(source[len(kept) - 1]["labels"], kept[-1][1])


def test_counts_in_metadata(prepared):
    builder = open_images.open_builder("boxable", prepared["data_dir"])
    counts = builder.info.metadata["counts"]
    items = prepared["truth"]["train"]
    kept = _kept(items)
    assert counts["train/listed"] == SIZES["train"]
    assert counts["train/images"] == len(kept) == builder.info.splits["train"].num_examples
    assert counts["train/without_known_labels"] == 1 and counts["train/missing_images"] == 1
    assert counts["train/conflicts"] == 1
    assert counts["train/negatives"] == sum(int((y == -1).sum()) for _, y in kept)
    assert builder.info.splits["train"].num_shards == -(-len(kept) // 3)
    assert builder.info.metadata["class_ids"] == MIDS


def test_interrupted_preparation_resumes_to_identical_files(prepared, tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(KeyboardInterrupt):
        open_images.prepare("boxable", data_dir, prepared["raw"], shard_size=3, stop_after_shards=2)
    assert not open_images.is_prepared("boxable", data_dir)
    with pytest.raises(sources.DatasetNotPreparedError, match="resumes when run again"):
        sources.make_source("open_images/boxable", "train", data_dir=data_dir)
    work = os.path.join(open_images.dataset_dir("boxable", data_dir), "_incomplete")
    with open(os.path.join(work, "train.json")) as f:
        assert len(json.load(f)["shards"]) == 2
    with open(os.path.join(work, "train-00002.array_record.tmp"), "wb") as f:
        f.write(b"half a shard, as a kill leaves it")
    open_images.prepare("boxable", data_dir, prepared["raw"], shard_size=3)
    done = open_images.dataset_dir("boxable", data_dir)
    reference = open_images.dataset_dir("boxable", prepared["data_dir"])
    shards = sorted(f for f in os.listdir(reference) if ".array_record-" in f)
    assert shards == sorted(f for f in os.listdir(done) if ".array_record-" in f)
    for name in shards:
        with (
            open(os.path.join(reference, name), "rb") as a,
            open(os.path.join(done, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    assert not os.path.exists(work)


def test_changed_files_refuse_to_resume(prepared, tmp_path):
    raw = str(tmp_path / "raw")
    fake_open_images(raw)
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(KeyboardInterrupt):
        open_images.prepare("boxable", data_dir, raw, shard_size=3, stop_after_shards=1)
    with pytest.raises(RuntimeError, match="started from other files or settings"):
        open_images.prepare("boxable", data_dir, raw, shard_size=2)


def test_errors_name_the_problem(tmp_path):
    raw = str(tmp_path / "raw")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_images.prepare("boxable", str(tmp_path / "tfds"), raw)
    os.makedirs(raw)
    with pytest.raises(FileNotFoundError, match="lacks the boxable class list"):
        open_images.prepare("boxable", str(tmp_path / "tfds"), raw)
    fake_open_images(raw)
    with pytest.raises(FileNotFoundError, match="lacks the trainable class list"):
        open_images.prepare("trainable", str(tmp_path / "tfds"), raw)
    path = os.path.join(raw, FILES["test"])
    with open(path) as f:
        lines = f.read().splitlines(keepends=True)
    with open(path, "w") as f:
        f.writelines([lines[0], *lines[1:][::-1]])
    with pytest.raises(ValueError, match=r"test-annotations-human-imagelabels.csv:\d+: ImageID \w+ follows \w+; "
                                         r"the file must be sorted by ImageID.*sort -t, -k1,1"):  # fmt: skip
        open_images.prepare("boxable", str(tmp_path / "tfds2"), raw)
    with open(path, "w") as f:
        f.writelines([lines[0], lines[1].replace(",0\n", ",0.8\n").replace(",1\n", ",0.8\n")])
    with pytest.raises(ValueError, match=r":2: Confidence must be 0 or 1"):
        open_images.prepare("boxable", str(tmp_path / "tfds3"), raw)
    with pytest.raises(ValueError, match="Unknown Open Images label set 'all'"):
        open_images.read_label_set(raw, "all")


def test_trainable_label_set(tmp_path):
    raw = str(tmp_path / "raw")
    truth = fake_open_images(raw)
    order = [3, 0, 4]  # a trainable list in its own order, a subset of the described classes
    with open(os.path.join(raw, "oidv6-classes-trainable.txt"), "w") as f:
        f.writelines(f"{MIDS[c]}\n" for c in order)
    with open(os.path.join(raw, "oidv6-class-descriptions.csv"), "w") as f:
        f.write("LabelName,DisplayName\n")
        f.writelines(f"{m},Name {i}\n" for i, m in enumerate(MIDS))
    open_images.prepare("trainable", str(tmp_path / "tfds"), raw)
    source = sources.make_source("open_images/trainable", "test", data_dir=str(tmp_path / "tfds"))
    kept = [(i, y[order]) for i, y, written in truth["test"] if written and y[order].any()]
    assert source.class_names == ("Name 3", "Name 0", "Name 4")
    np.testing.assert_array_equal(source.labels_matrix(), np.stack([y for _, y in kept]))


def test_prepare_data_script_without_tensorflow(tmp_path):
    """`scripts/prepare_data.py openimages` prepares and indexes with TensorFlow absent."""
    raw, data_dir = str(tmp_path / "raw"), str(tmp_path / "tfds")
    truth = fake_open_images(raw)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = NO_TENSORFLOW + textwrap.dedent(f"""
        sys.argv = ["prepare_data.py", "openimages", "--manual_dir", {raw!r},
                    "--data_dir", {data_dir!r}]
        sys.path.insert(0, "scripts")
        import prepare_data
        prepare_data.main()
        assert "tensorflow" not in sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", script], check=False, cwd=root,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": root})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    n = len(_kept(truth["validation"]))
    assert f"open_images/boxable[validation]: {n} images x {NUM_CLASSES} classes" in result.stdout
    source = sources.make_source("open_images/boxable", "test", data_dir=data_dir)
    assert len(os.listdir(os.path.join(source._index_dir, "mlrpl_index"))) == 3


def _config(prepared, **overrides):
    config = tiny_run_config(
        prepared["data_dir"], **{"data.name": "open_images/boxable", "data.setting": "fal",
                                 "data.test_split": "test", "data.val_split": "validation", "data.val_labels": "full",
                                 **overrides})  # fmt: skip
    config_validation.validate(config)
    return config


@pytest.mark.parametrize("setting", ["fal", "pal", "spl"])
def test_settings_apply_to_the_known_entries_only(prepared, setting):
    config = _config(prepared, **{"data.setting": setting, "data.known_proportion": 0.5})
    source = pipeline.make_source(config.data, "train")
    native = source.labels_matrix()
    mask = pipeline.make_mask_transform(config.data, source)
    labels = label_semantics.train_partial_labels(config.data, source)
    for i in range(len(source)):
        record = mask.map(source[i])
        assert "full_labels" not in record  # no hidden ground truth to carry
        np.testing.assert_array_equal(record["labels"], labels[i])
    assert not (labels[native == 0]).any()  # unverified entries stay unknown
    known = labels != 0
    np.testing.assert_array_equal(labels[known], native[known])  # never flips a verified label
    if setting == "fal":
        np.testing.assert_array_equal(labels, native)
    if setting == "pal":
        assert 0 < known.sum() < (native != 0).sum()
    if setting == "spl":
        has_positive = (native == 1).any(axis=1)
        np.testing.assert_array_equal((labels == 1).sum(axis=1), has_positive.astype(int))
        assert not (labels == -1).any()


def test_reference_masks_are_refused(prepared):
    config = tiny_run_config(prepared["data_dir"], **{"data.name": "open_images/boxable",
                                                      "data.mask_mode": "reference"})  # fmt: skip
    with pytest.raises(ValueError, match="natively partially labelled; no reference masks"):
        config_validation.validate(config)


@pytest.mark.slow
def test_training_run_scores_known_entries_only(prepared, tmp_path):
    config = _config(prepared, **{"train.num_epochs": 1, "train.batch_size": 8,
                                  "train.eval_batch_size": 8})  # fmt: skip
    final = trainer.run(config, str(tmp_path / "work"))
    assert set(final) == {"mAP", "known_fraction"} and np.isfinite(final["mAP"])
    exp = trainer.setup(config, pretrained=False)
    test = exp.test_source.labels_matrix()
    assert final["known_fraction"] == pytest.approx(100 * np.mean(test != 0))
    ckpt = checkpointing.Checkpointer(str(tmp_path / "work"), max_to_keep=2, keep_best=True)
    state, _ = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    values, logits, targets = trainer.evaluate(exp, state, "test")
    np.testing.assert_array_equal(targets, test)
    # Per class, scikit-learn's AP over the examples whose label is verified; the mean over the
    # classes with a verified positive.
    from sklearn.metrics import average_precision_score

    aps = [average_precision_score(test[test[:, c] != 0, c] == 1, logits[test[:, c] != 0, c])
           for c in range(NUM_CLASSES) if (test[:, c] == 1).any()]  # fmt: skip
    want = 100 * float(np.mean(aps))
    assert values["mAP"] == pytest.approx(want, abs=1e-4) == pytest.approx(final["mAP"], abs=1e-4)
    # Leaving the unknown entries out is not the same as scoring them as negatives.
    assert want != pytest.approx(
        metrics.compute_metrics(logits, test == 1, from_logits=True)["mAP"]
    )


def test_progress_lines(prepared, tmp_path):
    out = io.StringIO()
    open_images.prepare(
        "boxable", str(tmp_path / "tfds"), prepared["raw"], out=out, progress_every=0.0
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == sum(len(_kept(items)) for items in prepared["truth"].values())
    assert lines[0].startswith("open_images[train]: ") and "% of the labels file" in lines[0]
    assert "images written this run" in lines[-1] and "min left" in lines[-1]
