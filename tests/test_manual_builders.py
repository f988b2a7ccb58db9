"""The CUB-200-2011 attribute and NUS-WIDE builders on tiny fake raw files in the real formats:
round trip to examples with the right labels, edge cases (NUS images without tags or absent from
the re-crawl, CUB rows with extra fields), clear errors, and the unprepared-dataset message."""

import io
import os

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("tensorflow_datasets")

from mlrpl_jax.data import sources
from mlrpl_jax.data.tfds_builders import cub_attributes, manual, nus_wide


def _jpeg(path, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


# --- CUB ----------------------------------------------------------------------------------------


def fake_cub(root, num_images=6, extra_fields_row=True):
    """CUB_200_2011.tgz's layout; returns {relative path: (is_train, attribute vector)}."""
    rng = np.random.default_rng(0)
    cub = os.path.join(root, "CUB_200_2011")
    os.makedirs(os.path.join(cub, "attributes"))
    with open(os.path.join(root, "attributes.txt"), "w") as f:
        f.writelines(f"{a} has_part_{a % 7}::value_{a}\n" for a in range(1, 313))
    truth, images, split, rows = {}, [], [], []
    for i in range(1, num_images + 1):
        path = f"{i % 2 + 1:03d}.Bird_{i % 2}/Bird_{i:04d}.jpg"
        _jpeg(os.path.join(cub, "images", path), i)
        present = (rng.random(312) < 0.1).astype(np.uint8)
        train = int(i % 3 != 0)
        truth[path] = (train, present)
        images.append(f"{i} {path}\n")
        split.append(f"{i} {train}\n")
        for a in range(1, 313):
            extra = " 0 0" if extra_fields_row and (i, a) == (2, 5) else ""
            rows.append(f"{i} {a} {present[a - 1]} {rng.integers(1, 5)} 3.5{extra}\n")
    for name, lines in (("images.txt", images), ("train_test_split.txt", split),
                        ("attributes/image_attribute_labels.txt", rows)):  # fmt: skip
        with open(os.path.join(cub, name), "w") as f:
            f.writelines(lines)
    return truth


def test_cub_round_trip(tmp_path):
    truth = fake_cub(str(tmp_path / "raw"))
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(sources.DatasetNotPreparedError, match="prepare_data.py cub --manual_dir"):
        sources.make_source("cub", "train", data_dir=data_dir)
    manual.prepare(cub_attributes.CubAttributes, data_dir, str(tmp_path / "raw"))
    for split, flag in (("train", 1), ("test", 0)):
        source = sources.make_source("cub", split, data_dir=data_dir)
        want = [(p, y) for p, (t, y) in truth.items() if t == flag]  # images.txt order
        assert source.image_names() == tuple(p for p, _ in want)
        np.testing.assert_array_equal(source.labels_matrix(), np.stack([y for _, y in want]))
        record = source[0]
        with open(os.path.join(tmp_path, "raw", "CUB_200_2011", "images", want[0][0]), "rb") as f:
            np.testing.assert_array_equal(
                record["image"], np.asarray(Image.open(io.BytesIO(f.read())))
            )
    assert source.num_classes == 312 and source.class_names[4] == "part 5 value 5"


def test_cub_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks CUB_200_2011/images.txt"):
        cub_attributes.CubAttributes.read_manual_dir(str(tmp_path))
    fake_cub(str(tmp_path))
    labels = tmp_path / "CUB_200_2011" / "attributes" / "image_attribute_labels.txt"
    lines = labels.read_text().splitlines(keepends=True)
    labels.write_text("".join(lines[:-1]))
    with pytest.raises(ValueError, match="image 6 has no row for attribute 312"):
        cub_attributes.CubAttributes.read_manual_dir(str(tmp_path))
    labels.write_text("".join(lines[:-1]) + "6 312 2 1 1.0\n")
    with pytest.raises(ValueError, match="bad row '6 312 2 1 1.0'"):
        cub_attributes.CubAttributes.read_manual_dir(str(tmp_path))


# --- NUS-WIDE -----------------------------------------------------------------------------------


def fake_nus(root):
    """The official NUS-WIDE lists and labels; a re-crawl missing some images. Returns
    {split: [(path, labels, present)]} in list order."""
    rng = np.random.default_rng(1)
    concepts = [f"concept{c}" for c in range(81)]
    os.makedirs(os.path.join(root, "ImageList"))
    os.makedirs(os.path.join(root, "Groundtruth", "TrainTestLabels"))
    with open(os.path.join(root, "Concepts81.txt"), "w") as f:
        f.writelines(f"{c}\n" for c in concepts)
    truth = {}
    for split, tag, n in (("train", "Train", 9), ("test", "Test", 5)):
        paths = [f"folder{i % 3}\\{i:04d}_{1000 + i}.jpg" for i in range(n)]
        labels = (rng.random((n, 81)) < 0.05).astype(np.uint8)
        labels[1] = 0  # an image without any tag
        present = [i != 2 for i in range(n)]  # the re-crawl lacks image 2
        with open(os.path.join(root, "ImageList", f"{tag}Imagelist.txt"), "w") as f:
            f.writelines(f"{p}\n" for p in paths)
        for c, concept in enumerate(concepts):
            path = os.path.join(
                root, "Groundtruth", "TrainTestLabels", f"Labels_{concept}_{tag}.txt"
            )
            with open(path, "w") as f:
                f.writelines(f"{v}\n" for v in labels[:, c])
        for i, p in enumerate(paths):
            if present[i]:
                _jpeg(os.path.join(root, "Flickr", *p.split("\\")), i)
        truth[split] = list(zip([p.replace("\\", "/") for p in paths], labels, present))
    return truth


def test_nus_wide_round_trip_skips_absent_images_and_counts_untagged(tmp_path):
    truth = fake_nus(str(tmp_path / "raw"))
    data_dir = str(tmp_path / "tfds")
    builder = manual.prepare(nus_wide.NusWide, data_dir, str(tmp_path / "raw"))
    counts = builder.info.metadata["counts"]
    assert counts["train/listed"] == 9 and counts["train/missing_images"] == 1
    kept_train = [y for _, y, present in truth["train"] if present]
    assert counts["train/without_labels"] == sum(not y.any() for y in kept_train) >= 1
    for split in ("train", "test"):
        source = sources.make_source("nus_wide", split, data_dir=data_dir)
        kept = [(p, y) for p, y, present in truth[split] if present]
        assert source.image_names() == tuple(p for p, _ in kept)
        np.testing.assert_array_equal(source.labels_matrix(), np.stack([y for _, y in kept]))
        assert source[0]["image"].shape == (6, 5, 3)
    assert source.class_names[3] == "concept3"


def test_nus_wide_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks Concepts81.txt"):
        nus_wide.NusWide.read_manual_dir(str(tmp_path))
    fake_nus(str(tmp_path))
    bad = tmp_path / "Groundtruth" / "TrainTestLabels" / "Labels_concept7_Test.txt"
    bad.write_text("0\n2\n0\n0\n0\n")
    with pytest.raises(ValueError, match=r"Labels_concept7_Test.txt: expected 5 lines of 0 or 1"):
        nus_wide.NusWide.read_manual_dir(str(tmp_path))


def test_prepare_data_script_prepares_and_indexes(tmp_path, capsys):
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts", "prepare_data.py")
    spec = importlib.util.spec_from_file_location("prepare_data", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit):
        script.main(["nus", "--data_dir", str(tmp_path / "tfds")])
    assert "Concepts81.txt" in capsys.readouterr().out  # the layout, then the error
    fake_nus(str(tmp_path / "raw"))
    script.main(
        ["nus", "--manual_dir", str(tmp_path / "raw"), "--data_dir", str(tmp_path / "tfds")]
    )
    out = capsys.readouterr().out
    assert "nus_wide[train]: 8 images x 81 classes" in out and "nus_wide[test]: 4 images" in out
    source = sources.make_source("nus_wide", "train", data_dir=str(tmp_path / "tfds"))
    index_dir = os.path.join(source._index_dir, "mlrpl_index")
    assert len(os.listdir(index_dir)) == 2
