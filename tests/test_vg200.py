"""Tests of the `vg200` TFDS builder and `make_source('vg200', ...)`, on tiny fake raw files.

The fake manual directory has the real formats (notes §4.5): JPEGs in ``VG_100K/``, the two split
lists (one file name per line) and the labels JSON (file name -> positive class indices).
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import NO_TENSORFLOW
from PIL import Image

pytest.importorskip("tensorflow_datasets")

from configs import base
from mlrpl_jax import config_validation
from mlrpl_jax.data import sources
from mlrpl_jax.data.tfds_builders import vg200

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN = ["10.jpg", "2.jpg", "7.jpg", "5.jpg"]
TEST = ["3.jpg", "11.jpg"]
INDEX = {  # file name -> positive class indices; "99.jpg" is in no split list.
    "10.jpg": [0, 199, 5],
    "2.jpg": [],
    "7.jpg": [42],
    "5.jpg": [3, 3, 150],
    "3.jpg": [1],
    "11.jpg": [100, 7],
    "99.jpg": [4],
}
NAMES = [f"thing {c}" for c in range(200)]


def _write_manual(root, index=None, train_text=None, skip_image=None):
    """A fake VG-200 manual directory; lists with CRLF, padding, a blank line, no final newline."""
    os.makedirs(os.path.join(root, "VG_100K"), exist_ok=True)
    for k, name in enumerate(TRAIN + TEST):
        if name == skip_image:
            continue
        rng = np.random.default_rng(k)
        image = Image.fromarray(rng.integers(0, 256, (6 + k, 9, 3), dtype=np.uint8))
        if name == "7.jpg":
            image = image.convert("L")  # grayscale JPEG -> 3 channels on reading
        image.save(os.path.join(root, "VG_100K", name), format="JPEG", quality=90)
    if train_text is None:
        train_text = "10.jpg\r\n 2.jpg \n\n7.jpg\n5.jpg"
    with open(os.path.join(root, vg200.TRAIN_LIST), "w", newline="") as f:
        f.write(train_text)
    with open(os.path.join(root, vg200.TEST_LIST), "w") as f:
        f.write("".join(f"{n}\n" for n in TEST))
    with open(os.path.join(root, vg200.LABELS_JSON), "w") as f:
        json.dump(INDEX if index is None else index, f)
    return root


def _expected(name):
    want = np.zeros(200, np.uint8)
    want[INDEX[name]] = 1
    return want


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("vg200")
    manual = _write_manual(str(base_dir / "manual"))
    data_dir = str(base_dir / "data")
    vg200.prepare(data_dir, manual)
    return {"manual": manual, "data_dir": data_dir}


@pytest.mark.parametrize("split,names", [("train", TRAIN), ("test", TEST)])
def test_prepared_vg200_reads_back(prepared, split, names):
    source = sources.make_source("vg200", split, data_dir=prepared["data_dir"])
    assert (source.name, source.split, len(source), source.num_classes) == (
        "vg200",
        split,
        len(names),
        200,
    )
    assert source.class_names == tuple(f"class_{c:03d}" for c in range(200))
    assert source.image_names() == tuple(names)  # list order = reference order
    for i, name in enumerate(names):
        record = source[i]
        assert set(record) == {"image", "labels", "example_id"}
        with Image.open(os.path.join(prepared["manual"], "VG_100K", name)) as image:
            want_image = np.asarray(image.convert("RGB"))
        np.testing.assert_array_equal(record["image"], want_image)
        assert record["image"].dtype == np.uint8 and record["image"].shape[2] == 3
        assert record["labels"].dtype == np.uint8
        np.testing.assert_array_equal(record["labels"], _expected(name))
        assert record["example_id"] == i
    np.testing.assert_array_equal(source.labels_matrix(), np.stack([_expected(n) for n in names]))
    clone = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(clone[len(names) - 1]["image"], source[-1]["image"])


def test_stored_image_is_the_file_bytes(prepared):
    builder = vg200.make_builder(prepared["data_dir"])
    data = builder.as_data_source(split="train")
    with open(os.path.join(prepared["manual"], "VG_100K", TRAIN[0]), "rb") as f:
        assert data[0]["image"] == f.read()
    assert data[0]["image/filename"] == TRAIN[0].encode()


def test_through_the_config_pipeline(prepared):
    config = base.get_config()
    config.data.name = "vg200"
    config.data.data_dir = prepared["data_dir"]
    config_validation.validate(config)
    from mlrpl_jax.data import pipeline

    source = pipeline.make_source(config.data, "train")
    assert len(source) == len(TRAIN) and "vg200" in sources.SUPPORTED_DATASETS
    # mask_mode='reference': the authors' draw over train_list_500.txt's order, which is ours.
    config.data.mask_mode, config.data.val_fraction, config.data.known_proportion = (
        "reference",
        0.0,
        0.3,
    )
    mask = pipeline.make_mask_transform(config.data, source)
    np.random.seed(0)
    keep = np.random.random((len(TRAIN), 200)) < 0.3
    for i, name in enumerate(TRAIN):
        want = np.where(keep[i], 2 * _expected(name).astype(np.int8) - 1, 0)
        np.testing.assert_array_equal(mask.map(source[i])["labels"], want)


# ------------------------------------------------------------------------------------------------
# Class names.
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename,content",
    [
        ("vg_category_200.json", json.dumps(NAMES)),
        ("vg_category_200.json", json.dumps({str(c): n for c, n in enumerate(NAMES)})),
        ("vg_category_200.json", json.dumps({n: c for c, n in enumerate(NAMES)})),
        ("vg_category_200.txt", "".join(f"{n}\n" for n in NAMES)),
    ],
)
def test_class_names_file(tmp_path, filename, content):
    (tmp_path / filename).write_text(content)
    names, origin = vg200.read_class_names(tmp_path)
    assert names == tuple(NAMES) and origin == str(tmp_path / filename)


def test_class_names_default_and_bad_file(tmp_path):
    assert vg200.read_class_names(tmp_path) == (vg200.PLACEHOLDER_NAMES, "placeholder")
    (tmp_path / "vg_category_200.json").write_text(json.dumps(NAMES[:199]))
    with pytest.raises(ValueError, match="vg_category_200.json.*200 distinct"):
        vg200.read_class_names(tmp_path)


def test_class_names_are_stored_with_the_data(tmp_path):
    manual = _write_manual(str(tmp_path / "manual"))
    with open(os.path.join(manual, "vg_category_200.json"), "w") as f:
        json.dump(NAMES, f)
    vg200.prepare(tmp_path / "data", manual)
    source = sources.make_source("vg200", "test", data_dir=str(tmp_path / "data"))
    assert source.class_names == tuple(NAMES)


# ------------------------------------------------------------------------------------------------
# Errors.
# ------------------------------------------------------------------------------------------------


def test_unprepared_error_names_the_files_and_the_command_works(tmp_path):
    data_dir = str(tmp_path / "data")
    with pytest.raises(sources.DatasetNotPreparedError) as info:
        sources.make_source("vg200", "train", data_dir=data_dir)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "'vg200' is not prepared" in message and data_dir in message
    for required in ("train_list_500.txt", "test_list_500.txt", "VG_100K/", "data.zip"):
        assert required in message
    assert "vg_category_200_labels_index.json" in message
    manual = os.path.join(data_dir, "downloads", "manual")
    assert f"by default {manual}" in message
    # Put the files where the message says and run its command verbatim.
    _write_manual(manual)
    (command,) = [
        line.strip() for line in message.splitlines() if line.strip().startswith("python -c")
    ]
    exec(command.removeprefix('python -c "').removesuffix('"'), {})  # noqa: S102
    source = sources.make_source("vg200", "train", data_dir=data_dir)
    assert source.image_names() == tuple(TRAIN)


@pytest.mark.parametrize("bad", [200, -1, "3", 1.5, True])
def test_class_index_out_of_range_names_file_and_entry(tmp_path, bad):
    index = dict(INDEX, **{"7.jpg": [2, bad]})
    manual = _write_manual(str(tmp_path / "manual"), index=index)
    with pytest.raises(ValueError) as info:
        vg200.prepare(tmp_path / "data", manual)
    message = str(info.value)
    assert os.path.join(manual, vg200.LABELS_JSON) in message
    assert "'7.jpg'" in message and repr(bad) in message and "[0, 200)" in message
    assert not vg200.is_prepared(vg200.make_builder(tmp_path / "data"))


def test_listed_file_missing_from_json_names_file_and_entry(tmp_path):
    index = {k: v for k, v in INDEX.items() if k != "5.jpg"}
    manual = _write_manual(str(tmp_path / "manual"), index=index)
    with pytest.raises(ValueError) as info:
        vg200.prepare(tmp_path / "data", manual)
    message = str(info.value)
    assert os.path.join(manual, vg200.LABELS_JSON) in message
    assert "'5.jpg'" in message and os.path.join(manual, vg200.TRAIN_LIST) in message
    assert "(line 5)" in message  # physical line: a blank line precedes it


@pytest.mark.parametrize(
    "content,match", [("[1, 2]", "expected a JSON object"), ("{", "not valid JSON")]
)
def test_malformed_json(tmp_path, content, match):
    path = tmp_path / vg200.LABELS_JSON
    path.write_text(content)
    with pytest.raises(ValueError, match=match):
        vg200.read_labels_index(path)


def test_missing_image_and_missing_files(tmp_path):
    manual = _write_manual(str(tmp_path / "manual"), skip_image="11.jpg")
    with pytest.raises(FileNotFoundError, match=r"test_list_500.txt.*VG_100K: '11.jpg'"):
        vg200.prepare(tmp_path / "data", manual)
    os.remove(os.path.join(manual, vg200.TEST_LIST))
    os.remove(os.path.join(manual, vg200.LABELS_JSON))
    with pytest.raises(FileNotFoundError) as info:
        vg200.read_manual_dir(manual)
    assert "test_list_500.txt, vg_category_200_labels_index.json" in str(info.value)
    assert "train_list_500.txt," not in str(info.value)


def test_builds_and_reads_without_tensorflow(tmp_path):
    manual = _write_manual(str(tmp_path / "manual"))
    script = NO_TENSORFLOW + textwrap.dedent(f"""
        from mlrpl_jax.data import sources
        from mlrpl_jax.data.tfds_builders import vg200

        vg200.prepare({str(tmp_path / "data")!r}, {manual!r})
        source = sources.make_source("vg200", "train", data_dir={str(tmp_path / "data")!r})
        assert len(source) == 4 and source[2]["image"].shape == (8, 9, 3)
        assert "tensorflow" not in sys.modules
        print("OK")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": REPO_ROOT},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "OK" in result.stdout


@pytest.mark.slow
def test_prepared_as_tfrecord_is_reported(tmp_path):
    """Writing tfrecord imports TensorFlow (~10 s); reading it as array_record must say why not."""
    pytest.importorskip("tensorflow")
    import tensorflow_datasets as tfds

    manual = _write_manual(str(tmp_path / "manual"))
    builder = vg200.Vg200(data_dir=str(tmp_path / "data"), file_format="tfrecord")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual))
    with pytest.raises(sources.DatasetNotPreparedError, match="TFRECORD") as info:
        sources.make_source("vg200", "train", data_dir=str(tmp_path / "data"))
    message = str(info.value)
    assert "prepare it again as array_record" in message and "vg200.prepare(" in message
