"""Tests of `mlrpl_jax.data.sources`, offline.

VOC and COCO are exercised two ways:

* fast: `tfds.testing.mock_data(as_data_source_fn=...)` serves hand-made records (objects under
  our control: difficult-only classes, crowd annotations, images without objects, grayscale
  images) through the real `tfds.builder(...).as_data_source` route. (The default random mock is
  unusable here: its random ``objects`` fields get different lengths per field, and its encoded
  generator fails on these Sequence features.)
* slow: the real TFDS builders prepare tiny fake raw VOC/COCO trees (XML/JSON + images) into
  ``array_record`` (and ``tfrecord``) files with the download patched out, which also checks the
  prepare route given in the error message.
"""

import importlib.resources
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import types
from unittest import mock

import numpy as np
import pytest
from PIL import Image

tfds = pytest.importorskip("tensorflow_datasets")

from mlrpl_jax.data import sources

# fmt: off
REFERENCE_VOC_CLASSES = (  # hcp_mlr_pl_notes.md §4.4, written out independently.
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
# fmt: on


@pytest.fixture
def tfds_prepare_shim(monkeypatch):
    """tensorflow-datasets 4.9.10 imports the undeclared `importlib_resources` when preparing."""
    if importlib.util.find_spec("importlib_resources") is None:
        monkeypatch.setitem(sys.modules, "importlib_resources", importlib.resources)


@pytest.fixture
def coco_code_without_tf(monkeypatch):
    """Lets TFDS build the coco builder from code without importing TensorFlow (~10 s).

    Its `_info` only uses `tf.int64` (for ``image/id``), which gives the same feature as np.int64.
    Needed under `mock_data` and for unprepared data_dirs, where TFDS falls back to the code.
    """
    from tensorflow_datasets.object_detection import coco

    monkeypatch.setattr(coco, "tf", types.SimpleNamespace(int64=np.int64))


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    """Lossless PNG bytes of ``array`` (optionally converted to pillow ``mode``)."""
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _rgb(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------------
# Hand-made records, shaped like those of a real array_record source read with SkipDecoding.
# ------------------------------------------------------------------------------------------------

# (label, is_difficult) per object. Class ids: 2 bird, 6 car, 7 cat, 11 dog, 14 person, 19 tv.
VOC_OBJECTS = {
    "train": [
        [(11, False), (14, True)],  # person only difficult -> negative
        [(7, True)],  # only a difficult object -> all zeros
        [],  # no objects at all
        [(6, False), (6, True), (2, False)],  # car: one difficult, one not -> positive
    ],
    "validation": [
        [(19, False), (0, True), (0, True)],  # aeroplane: two difficult -> negative
        [(14, False), (14, False), (11, True)],
    ],
    "test": [[(3, False)]],
}


def _voc_record(objects, seed: int, gray: bool) -> dict:
    image = _rgb(seed, 9 + seed, 7)
    n = len(objects)
    labels = sorted({c for c, _ in objects})
    return {
        "image": _png(image, "L" if gray else None),
        "image/filename": f"{seed:06d}.jpg".encode(),
        "objects": {  # real sources give lists of numpy scalars
            "label": [np.int64(c) for c, _ in objects],
            "is_difficult": [np.bool_(d) for _, d in objects],
            "is_truncated": [np.bool_(False)] * n,
            "pose": [np.int64(4)] * n,
            "bbox": [np.zeros(4, np.float32)] * n,
        },
        "labels": [np.int64(c) for c in labels],
        "labels_no_difficult": [np.int64(c) for c in sorted({c for c, d in objects if not d})],
    }


def _voc_records() -> dict[str, list[dict]]:
    out, seed = {}, 0
    for split, per_image in VOC_OBJECTS.items():
        out[split] = []
        for objects in per_image:
            seed += 1
            out[split].append(_voc_record(objects, seed, gray=seed == 2))
    return out


# (label, is_crowd) per annotation.
COCO_OBJECTS = {
    "train": [
        [(0, False), (0, True), (56, False)],
        [(79, True)],  # crowd only -> still positive
        [],  # image without annotations -> all zeros
        [(3, False), (3, False)],
    ],
    "validation": [[(45, True), (12, False)], []],
}


def _coco_records() -> dict[str, list[dict]]:
    out, seed = {}, 100
    for split, per_image in COCO_OBJECTS.items():
        out[split] = []
        for objects in per_image:
            seed += 1
            image = _rgb(seed, 5, 6 + seed % 3)
            gray = seed == 102
            out[split].append(
                {
                    "image": _png(image, "L" if gray else None),
                    "image/filename": f"COCO_{split}2014_{seed:012d}.jpg".encode(),
                    "image/id": np.int64(seed),
                    "objects": {
                        "label": np.asarray([c for c, _ in objects], np.int64),
                        "is_crowd": np.asarray([k for _, k in objects], bool),
                        "id": np.arange(len(objects), dtype=np.int64),
                        "area": np.ones(len(objects), np.int64),
                        "bbox": np.zeros((len(objects), 4), np.float32),
                    },
                }
            )
    return out


def _decoded(record: dict) -> dict:
    """What TFDS returns without decoders: the image as an array (pillow, no mode conversion)."""
    out = dict(record)
    out["image"] = np.asarray(Image.open(io.BytesIO(record["image"])))
    return out


def _mock(records_by_split: dict[str, list[dict]]):
    """`tfds.testing.mock_data` serving ``records_by_split`` through `as_data_source`."""
    calls = []

    def as_data_source(self, split=None, *, decoders=None, deserialize_method=None, **kwargs):
        del deserialize_method, kwargs
        calls.append((self.name, split, decoders))
        records = [r for part in split.split("+") for r in records_by_split[part]]
        skip = decoders and isinstance(decoders.get("image"), tfds.decode.SkipDecoding)
        return records if skip else [_decoded(r) for r in records]

    context = tfds.testing.mock_data(
        policy=tfds.testing.MockPolicy.USE_CODE, as_data_source_fn=as_data_source
    )
    return context, calls


def _expected_voc(objects) -> np.ndarray:
    y = np.zeros(20, np.uint8)
    for c, difficult in objects:
        if not difficult:
            y[c] = 1
    return y


def _expected_coco(objects) -> np.ndarray:
    y = np.zeros(80, np.uint8)
    for c, _ in objects:
        y[c] = 1
    return y


def _check_records(source, expected_labels, raw_records):
    assert len(source) == len(expected_labels)
    for i, (want, raw) in enumerate(zip(expected_labels, raw_records)):
        record = source[i]
        assert set(record) == {"image", "labels", "example_id"}
        image = record["image"]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        decoded = np.asarray(Image.open(io.BytesIO(raw["image"])))
        if decoded.ndim == 2:  # grayscale -> replicated to 3 channels
            decoded = np.repeat(decoded[..., None], 3, axis=-1)
        np.testing.assert_array_equal(image, decoded)
        assert record["labels"].dtype == np.uint8 and record["labels"].shape == want.shape
        np.testing.assert_array_equal(record["labels"], want)
        assert isinstance(record["example_id"], np.int64) and record["example_id"] == i
    matrix = source.labels_matrix()
    assert matrix.dtype == np.uint8 and matrix.shape == (len(source), source.num_classes)
    np.testing.assert_array_equal(
        matrix, np.stack([source[i]["labels"] for i in range(len(source))])
    )
    assert source.labels_matrix() is matrix  # cached


# ------------------------------------------------------------------------------------------------
# VOC 2007
# ------------------------------------------------------------------------------------------------


def test_voc_class_order_matches_reference():
    names = tfds.builder("voc/2007").info.features["objects"]["label"].names
    assert tuple(names) == REFERENCE_VOC_CLASSES
    assert sources.VOC_CLASS_NAMES == REFERENCE_VOC_CLASSES


@pytest.mark.parametrize("split", ["train", "validation", "train+validation", "test"])
def test_voc_records_and_difficult_rule(split):
    records = _voc_records()
    context, calls = _mock(records)
    with context:
        source = sources.make_source("voc/2007", split, data_dir="/unused")
    objects = [o for part in split.split("+") for o in VOC_OBJECTS[part]]
    raw = [r for part in split.split("+") for r in records[part]]
    assert calls[0][:2] == ("voc", split)
    assert isinstance(calls[0][2]["image"], tfds.decode.SkipDecoding)
    assert (source.name, source.split, source.num_classes) == ("voc/2007", split, 20)
    assert source.class_names == REFERENCE_VOC_CLASSES
    expected = [_expected_voc(o) for o in objects]
    _check_records(source, expected, raw)
    # The rule equals TFDS's own `labels_no_difficult` feature.
    for want, r in zip(expected, raw):
        assert set(np.flatnonzero(want)) == {int(c) for c in r["labels_no_difficult"]}
    assert source.image_names() == tuple(r["image/filename"].decode() for r in raw)


def test_voc_hand_checked_labels():
    context, _ = _mock(_voc_records())
    with context:
        source = sources.make_source("voc/2007", "train")
    labels = source.labels_matrix()
    assert [list(np.flatnonzero(row)) for row in labels] == [[11], [], [], [2, 6]]
    assert labels[0, 14] == 0  # person present only as difficult -> negative (not unknown)


def test_source_is_picklable_and_supports_negative_indices():
    context, _ = _mock(_voc_records())
    with context:
        source = sources.make_source("voc/2007", "train+validation")
    clone = pickle.loads(pickle.dumps(source))
    assert len(clone) == len(source) == 6
    for i in range(len(source)):
        np.testing.assert_array_equal(clone[i]["image"], source[i]["image"])
        np.testing.assert_array_equal(clone[i]["labels"], source[i]["labels"])
    assert source[-1]["example_id"] == 5
    with pytest.raises(IndexError):
        source[6]


# ------------------------------------------------------------------------------------------------
# COCO 2014
# ------------------------------------------------------------------------------------------------


def test_coco_category_tables():
    ids = sources.COCO_CATEGORY_IDS
    assert len(ids) == len(set(ids)) == 80 and list(ids) == sorted(ids)
    assert set(range(1, 91)) - set(ids) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert len(set(sources.COCO_CLASS_NAMES)) == 80
    by_id = dict(zip(ids, sources.COCO_CLASS_NAMES))
    assert (by_id[1], by_id[13], by_id[90]) == ("person", "stop sign", "toothbrush")


@pytest.mark.parametrize("split", ["train", "validation"])
def test_coco_records_crowd_and_empty_images(split, coco_code_without_tf):
    records = _coco_records()
    context, calls = _mock(records)
    with context:
        source = sources.make_source("coco/2014", split)
    assert calls[0][:2] == ("coco", split)
    assert (source.name, source.num_classes) == ("coco/2014", 80)
    assert source.class_names == sources.COCO_CLASS_NAMES
    expected = [_expected_coco(o) for o in COCO_OBJECTS[split]]
    _check_records(source, expected, records[split])
    if split == "train":
        labels = source.labels_matrix()
        assert list(np.flatnonzero(labels[1])) == [79]  # crowd-only annotation counts
        assert not labels[2].any()  # image without annotations kept, all zeros
        assert source[1]["image"].shape == (5, 6, 3)  # grayscale image -> 3 channels


# ------------------------------------------------------------------------------------------------
# Errors and helpers
# ------------------------------------------------------------------------------------------------


def test_unknown_dataset():
    with pytest.raises(ValueError, match="synthetic_scenes, voc/2007, voc/2012, coco/2014"):
        sources.make_source("open_images/v6", "train")


def test_synthetic_requires_parameters():
    with pytest.raises(ValueError, match="num_classes"):
        sources.make_source("synthetic_scenes", "train", synthetic=None)


@pytest.mark.parametrize("name", ["voc/2007", "coco/2014"])
def test_not_prepared_error_says_how_to_prepare(name, tmp_path, coco_code_without_tf):
    with pytest.raises(sources.DatasetNotPreparedError) as info:
        sources.make_source(name, "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    versioned = f"{name}:{sources.TFDS_VERSIONS[name]}"
    assert versioned in message and "not prepared" in message and str(tmp_path) in message
    assert (
        f"tfds.builder('{versioned}', data_dir='{tmp_path}', file_format='array_record')"
        ".download_and_prepare()"
    ) in message
    assert f"tfds build {versioned} --data_dir={tmp_path} --file_format=array_record" in message
    assert "mlrpl_jax[tfds-prepare]" in message


def test_to_rgb_handles_modes_and_arrays():
    rgb = _rgb(0, 4, 5)
    np.testing.assert_array_equal(sources._to_rgb(_png(rgb)), rgb)
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, format="JPEG")
    assert sources._to_rgb(cmyk.getvalue()).shape == (4, 5, 3)
    palette = sources._to_rgb(_png(rgb, "P"))
    assert palette.shape == (4, 5, 3) and palette.dtype == np.uint8
    gray = rgb[..., 0]
    np.testing.assert_array_equal(sources._to_rgb(gray), np.stack([gray] * 3, -1))
    np.testing.assert_array_equal(sources._to_rgb(gray[..., None]), np.stack([gray] * 3, -1))


# ------------------------------------------------------------------------------------------------
# synthetic_scenes (built by the sibling builder package; skipped if it is not importable)
# ------------------------------------------------------------------------------------------------


def test_synthetic_source(tmp_path, tfds_prepare_shim):
    try:
        import mlrpl_jax.data.tfds_builders.synthetic_scenes  # noqa: F401
    except ImportError as err:
        pytest.skip(f"synthetic_scenes builder not importable: {err}")
    params = {"image_size": 16, "num_classes": 4, "num_train": 6, "num_test": 3, "seed": 0}
    source = sources.make_source(
        "synthetic_scenes", "train", data_dir=str(tmp_path), synthetic=params
    )
    assert (len(source), source.num_classes, len(source.class_names)) == (6, 4, 4)
    for i in range(len(source)):
        record = source[i]
        assert record["image"].shape == (16, 16, 3) and record["image"].dtype == np.uint8
        assert record["labels"].shape == (4,) and record["labels"].dtype == np.uint8
        assert record["example_id"] == i
    np.testing.assert_array_equal(
        source.labels_matrix(), np.stack([source[i]["labels"] for i in range(6)])
    )
    assert len(pickle.loads(pickle.dumps(source))) == 6


# ------------------------------------------------------------------------------------------------
# Slow: real TFDS preparation of tiny fake raw trees (download patched out).
# ------------------------------------------------------------------------------------------------

FAKE_VOC = {  # split file -> {image id: [(class name, difficult)]}
    "train": {"000012": [("dog", 0), ("person", 1)], "000017": [("cat", 1)]},
    "val": {"000005": [], "000009": [("car", 0), ("car", 1), ("bird", 0)]},
    "test": {"000001": [("tvmonitor", 0), ("aeroplane", 1)]},
}

FAKE_COCO = {  # image set -> {image id: [(category id, iscrowd)]}
    "train2014": {9: [(1, 0), (1, 1), (62, 0)], 25: [(90, 1)], 30: [], 34: [(13, 0)]},
    "val2014": {42: [(4, 0)], 73: []},
    "test2014": {1: []},
    "test2015": {2: []},
}


def _write_fake_voc(root: str) -> None:
    voc = os.path.join(root, "VOCdevkit", "VOC2007")
    for sub in ("ImageSets/Main", "JPEGImages", "Annotations"):
        os.makedirs(os.path.join(voc, sub), exist_ok=True)
    for set_name, images in FAKE_VOC.items():
        with open(os.path.join(voc, "ImageSets/Main", f"{set_name}.txt"), "w") as f:
            f.write("".join(f"{image_id}\n" for image_id in images))
        for image_id, objects in images.items():
            height = 8 + int(image_id) % 5
            image = Image.fromarray(_rgb(int(image_id), height, 10))
            if image_id == "000017":
                image = image.convert("L")
            image.save(os.path.join(voc, "JPEGImages", f"{image_id}.jpg"))
            xml = [f"<annotation><size><width>10</width><height>{height}</height></size>"]
            for name, difficult in objects:
                xml.append(
                    f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                    f"<difficult>{difficult}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin>"
                    "<xmax>4</xmax><ymax>4</ymax></bndbox></object>"
                )
            xml.append("</annotation>")
            with open(os.path.join(voc, "Annotations", f"{image_id}.xml"), "w") as f:
                f.write("".join(xml))


def _write_fake_coco(root: str) -> None:
    categories = [
        {"id": i, "name": n, "supercategory": "x"}
        for i, n in zip(sources.COCO_CATEGORY_IDS, sources.COCO_CLASS_NAMES)
    ]
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    ann_id = 0
    for image_set, images in FAKE_COCO.items():
        os.makedirs(os.path.join(root, image_set), exist_ok=True)
        infos, annotations = [], []
        for image_id, objects in images.items():
            name = f"COCO_{image_set}_{image_id:012d}.jpg"
            image = Image.fromarray(_rgb(image_id, 6, 9))
            if image_id == 25:
                image = image.convert("L")
            image.save(os.path.join(root, image_set, name))
            infos.append({"id": image_id, "file_name": name, "height": 6, "width": 9})
            for category, crowd in objects:
                ann_id += 1
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": category,
                        "iscrowd": crowd,
                        "bbox": [1, 1, 2, 2],
                        "area": 4,
                    }
                )
        if image_set.startswith("test"):
            filename, data = f"image_info_{image_set}.json", {}
        else:
            filename, data = f"instances_{image_set}.json", {"annotations": annotations}
        data.update(images=infos, categories=categories)
        with open(os.path.join(root, "annotations", filename), "w") as f:
            json.dump(data, f)


def _prepare(name: str, raw: str, data_dir: str, file_format: str) -> None:
    """Prepares ``name`` from the fake ``raw`` tree with the downloads patched out.

    For array_record this runs the exact Python command printed by `prepare_instructions`.
    """

    def download_and_extract(self, url_or_urls):
        return {key: raw for key in url_or_urls}

    with mock.patch.object(
        tfds.download.DownloadManager, "download_and_extract", download_and_extract
    ):
        if file_format == "array_record":
            lines = sources.prepare_instructions(name, data_dir).splitlines()
            (command,) = [line.strip() for line in lines if line.strip().startswith("python -c")]
            exec(command.removeprefix('python -c "').removesuffix('"'), {})  # noqa: S102
        else:
            builder = tfds.builder(
                f"{name}:{sources.TFDS_VERSIONS[name]}", data_dir=data_dir, file_format=file_format
            )
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False)
            )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Fake VOC (array_record, tfrecord) and COCO (array_record) prepared by the real builders."""
    pytest.importorskip("tensorflow")  # the VOC builder reads files with tf.io.gfile
    with pytest.MonkeyPatch.context() as patch:
        if importlib.util.find_spec("importlib_resources") is None:
            patch.setitem(sys.modules, "importlib_resources", importlib.resources)
        base = tmp_path_factory.mktemp("prepared")
        dirs = {key: str(base / key) for key in ("voc_raw", "coco_raw", "ar", "tfrecord")}
        _write_fake_voc(dirs["voc_raw"])
        _write_fake_coco(dirs["coco_raw"])
        _prepare("voc/2007", dirs["voc_raw"], dirs["ar"], "array_record")
        _prepare("coco/2014", dirs["coco_raw"], dirs["ar"], "array_record")
        _prepare("voc/2007", dirs["voc_raw"], dirs["tfrecord"], "tfrecord")
    return dirs


def _by_name(source) -> dict[str, np.ndarray]:
    return dict(zip(source.image_names(), source.labels_matrix()))


@pytest.mark.slow
def test_prepared_voc(prepared):
    source = sources.make_source("voc/2007", "train+validation", data_dir=prepared["ar"])
    assert len(source) == 4
    got = _by_name(source)
    for image_id, objects in {**FAKE_VOC["train"], **FAKE_VOC["val"]}.items():
        want = np.zeros(20, np.uint8)
        for name, difficult in objects:
            if not difficult:
                want[REFERENCE_VOC_CLASSES.index(name)] = 1
        np.testing.assert_array_equal(got[f"{image_id}.jpg"], want)
    for i in range(len(source)):
        record = source[i]
        assert record["image"].ndim == 3 and record["image"].shape[2] == 3
        np.testing.assert_array_equal(record["labels"], source.labels_matrix()[i])
    test = sources.make_source("voc/2007", "test", data_dir=prepared["ar"])
    assert list(np.flatnonzero(test.labels_matrix()[0])) == [19]  # difficult aeroplane dropped
    # Both splits' label indexes are kept beside the prepared files, and read back.
    index_dir = os.path.join(prepared["ar"], "voc", "2007", sources.TFDS_VERSIONS["voc/2007"])
    assert len(os.listdir(os.path.join(index_dir, "mlrpl_index"))) == 2
    again = sources.make_source("voc/2007", "train+validation", data_dir=prepared["ar"])
    with mock.patch.object(type(again._data), "__getitems__", side_effect=AssertionError("read")):
        np.testing.assert_array_equal(again.labels_matrix(), source.labels_matrix())


@pytest.mark.slow
def test_prepared_coco(prepared):
    source = sources.make_source("coco/2014", "train", data_dir=prepared["ar"])
    assert len(source) == 4
    got = _by_name(source)
    index = {cat: k for k, cat in enumerate(sources.COCO_CATEGORY_IDS)}
    for image_id, objects in FAKE_COCO["train2014"].items():
        want = np.zeros(80, np.uint8)
        for category, _ in objects:
            want[index[category]] = 1  # crowd annotations included
        np.testing.assert_array_equal(got[f"COCO_train2014_{image_id:012d}.jpg"], want)
    assert not got["COCO_train2014_000000000030.jpg"].any()  # no annotations: kept, all zeros
    for i in range(len(source)):
        assert source[i]["image"].shape == (6, 9, 3)  # includes the grayscale image
    assert len(sources.make_source("coco/2014", "validation", data_dir=prepared["ar"])) == 2


@pytest.mark.slow
def test_prepared_as_tfrecord_is_reported(prepared):
    with pytest.raises(sources.DatasetNotPreparedError, match="tfrecord") as info:
        sources.make_source("voc/2007", "train", data_dir=prepared["tfrecord"])
    assert "file_format='array_record'" in str(info.value)


_READ_WITHOUT_TF = """
import importlib.abc, importlib.util, sys
class _NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}")
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: (
    None if name.split(".")[0] == "tensorflow" else _find_spec(name, *a))
sys.meta_path.insert(0, _NoTensorFlow())
from mlrpl_jax.data import sources
for name, split in (("coco/2014", "train"), ("voc/2007", "train+validation")):
    source = sources.make_source(name, split, data_dir=sys.argv[1])
    print(name, len(source), source[0]["image"].shape, int(source.labels_matrix().sum()))
"""


@pytest.mark.slow
def test_prepared_data_reads_without_tensorflow(prepared):
    """Reading needs no TensorFlow (tfds.builder('coco/2014') from code would import it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    result = subprocess.run(
        [sys.executable, "-c", _READ_WITHOUT_TF, prepared["ar"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "coco/2014 4 (6, 9, 3) 4" in result.stdout
    assert "voc/2007 4 " in result.stdout


# ------------------------------------------------------------------------------------------------
# The label index
# ------------------------------------------------------------------------------------------------


class _CountingRecords(list):
    """Records that count how many are read."""

    reads = 0

    def __getitem__(self, i):
        type(self).reads += 1
        return super().__getitem__(i)


def _indexed_source(records, index_dir, prepared=1):
    return sources.Source(
        name="voc/2007", split="train", data=records, class_names=sources.VOC_CLASS_NAMES,
        labels_fn=sources._voc_labels, filename_key="image/filename", index_dir=index_dir,
        fingerprint={"prepared": prepared},
    )  # fmt: skip


def test_label_index_is_written_once_and_read_without_the_records(tmp_path, monkeypatch):
    monkeypatch.setenv("MLRPL_JAX_CACHE", str(tmp_path / "user_cache"))
    rng = np.random.default_rng(0)
    records = _CountingRecords(
        {"image/filename": f"{i:06d}.jpg",
         "objects": {"label": rng.integers(0, 20, 3), "is_difficult": rng.random(3) < 0.3}}
        for i in range(50)
    )  # fmt: skip
    want = np.stack([sources._voc_labels(r, 20) for r in list.__iter__(records)])
    first = _indexed_source(records, tmp_path / "prepared")
    np.testing.assert_array_equal(first.labels_matrix(), want)
    assert _CountingRecords.reads == 50
    (written,) = (tmp_path / "prepared" / "mlrpl_index").iterdir()
    second = _indexed_source(records, tmp_path / "prepared")
    np.testing.assert_array_equal(second.labels_matrix(), want)
    assert second.image_names() == first.image_names() and _CountingRecords.reads == 50
    # A re-preparation (another fingerprint) is scanned again; so is a damaged index.
    np.testing.assert_array_equal(
        _indexed_source(records, tmp_path / "prepared", 2).labels_matrix(), want
    )
    assert _CountingRecords.reads == 100
    written.write_bytes(b"not an npz")
    np.testing.assert_array_equal(
        _indexed_source(records, tmp_path / "prepared").labels_matrix(), want
    )
    assert _CountingRecords.reads == 150
    # Where the dataset's directory cannot take the index, the user cache does.
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    path = _indexed_source(records, blocked).build_index()
    assert path.startswith(str(tmp_path / "user_cache"))
    _indexed_source(records, blocked).labels_matrix()
    assert _CountingRecords.reads == 200


@pytest.mark.parametrize("split", ["train", "validation"])
def test_voc2012_records_follow_the_voc_rule(split):
    """voc/2012 (the single-positive protocols' VOC): the same features and label rule as 2007."""
    records = _voc_records()
    context, calls = _mock(records)
    with context:
        source = sources.make_source("voc/2012", split, data_dir="/unused")
    assert calls[0][:2] == ("voc", split) and source.name == "voc/2012"
    assert source.class_names == REFERENCE_VOC_CLASSES
    _check_records(source, [_expected_voc(o) for o in VOC_OBJECTS[split]], records[split])
