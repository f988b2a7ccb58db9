"""Random-access data sources: one uniform `Source` per dataset split, read by the grain pipeline.

`make_source(name, split)` returns a `Source` for

* ``'synthetic_scenes'``: the built-in procedurally generated scenes
  (`mlrpl_jax.data.tfds_builders.synthetic_scenes`, prepared on first use); class names describe
  each class's look, e.g. "red striped disc" (`synthetic_scenes.class_names`);
* ``'voc/2007'``: the TFDS catalogue dataset ``voc/2007`` (splits ``'train'`` 2,501,
  ``'validation'`` 2,510, ``'test'`` 4,952); the reference trains on trainval =
  ``'train+validation'`` (5,011). Any TFDS split string works (``'test[:100]'``, ...);
* ``'voc/2012'``: the TFDS catalogue dataset ``voc/2012`` (``'train'`` 5,717, ``'validation'``
  5,823; its ``'test'`` has no labels); the single-positive protocols train on ``'train'`` (80/20
  carve-out) and test on ``'validation'``, as Cole et al.'s ``format_pascal.py``; labels as VOC 2007;
* ``'coco/2014'``: the TFDS catalogue dataset ``coco/2014`` (``'train'`` 82,783 = train2014,
  ``'validation'`` 40,504 = val2014, as in the reference);
* ``'vg200'``: VG-200 (Visual Genome, 200 categories; splits ``'train'`` and ``'test'`` from the
  authors' ``train_list_500.txt`` / ``test_list_500.txt``), built by our own TFDS builder
  `mlrpl_jax.data.tfds_builders.vg200` from files the user places in a manual directory;
* ``'cub'``: CUB-200-2011's 312 attributes (`tfds_builders.cub_attributes`; ``'train'`` 5,994,
  ``'test'`` 5,794), class names as words ("bill shape curved (up or down)");
* ``'nus_wide'``: NUS-WIDE's 81 concepts (`tfds_builders.nus_wide`; ``'train'``, ``'test'``: the
  listed images present in the user's re-crawl), both from manual directories
  (`scripts/prepare_data.py`);
* ``'open_images/boxable'``, ``'open_images/trainable'``: Open Images V6's human-verified
  image-level labels on the boxable / trainable classes (`tfds_builders.open_images`; ``'train'``,
  ``'validation'``, ``'test'``), **natively partial**: their ``labels`` are int8 {-1, 0, 1}
  (verified absent, unverified, verified present), ``Source.native_partial`` is True, the setting
  applies to the known entries (`transforms.MaskLabels`) and every split is scored on its known
  entries only.

Every record is ``{'image': uint8 (H, W, 3), 'labels': uint8 (C,) in {0, 1}, 'example_id': int64}``.
``example_id`` is the index of the record within the split (``source[i]['example_id'] == i``); the
partial-label masks are keyed by it. ``labels`` is the full ground truth. Image sizes vary per
image for VOC, COCO and VG-200. Images are decoded here with pillow and converted with ``.convert('RGB')``,
as the reference does (``Image.open(path).convert('RGB')``), so grayscale (COCO has some), palette
and CMYK JPEGs all come out as 3 channels.

Label rules (they reproduce the reference's ``datasets/voc2007.py`` and ``datasets/coco2014.py``):

* VOC 2007 and 2012: class ``c`` is positive iff the image has at least one object of class ``c`` whose
  ``objects/is_difficult`` flag is False. Difficult objects are ignored, so a class whose only
  objects in the image are difficult is **negative** (0), not unknown. (This equals TFDS's own
  ``labels_no_difficult`` feature.) Class order is TFDS's ``objects/label`` order, which is the
  reference order: aeroplane, bicycle, ..., tvmonitor (`VOC_CLASS_NAMES`; checked at load time).
* COCO 2014: class ``c`` is positive iff the image has any annotation of category ``c``; crowd
  annotations (``objects/is_crowd``) count like any other. Images without annotations are kept
  with all-zero labels (the reference keeps every image of ``coco.imgs``). TFDS's contiguous label
  ``k`` is the ``k``-th entry of the ``categories`` array of ``instances_{train,val}2014.json``,
  which lists the 80 categories in ascending COCO category id; the reference's ``category.json``
  maps category id -> (1-based) rank in ascending id order (``"1": 1, ..., "11": 11, "13": 12, ...,
  "90": 80``), so both give label ``k`` = ``k``-th smallest category id (`COCO_CATEGORY_IDS`,
  names in `COCO_CLASS_NAMES`; checked against the prepared dataset's names at load time).
* VG-200: class ``c`` is positive iff ``c`` is listed for the image in the authors'
  ``vg_category_200_labels_index.json`` (stored as multi-hot labels at preparation). Class names
  come from an optional names file, else ``class_000`` .. ``class_199`` (see the builder).

Example order: TFDS stores VOC and COCO examples in its own (hash-shuffled) order, not in the
reference's order (VOC ``trainval.txt``, COCO annotation-file order), so ``example_id`` ``i`` is not
the reference's ``i``-th image. `Source.image_names` gives each record's file name, by which
`reference_order` maps our examples to the authors' order (``mask_mode='reference'`` with
``data.reference_order_file``).
VG-200 is stored in the reference's order (the split-list order), so there ``example_id`` ``i`` is
the reference's ``i``-th image.

VOC, COCO and VG-200 must be prepared once in TFDS's ``array_record`` format (see
`prepare_instructions`); reading them needs neither TensorFlow nor network access. An unprepared dataset, or one prepared
in the ``tfrecord`` format, raises `DatasetNotPreparedError` with the exact commands to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import operator
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from etils import epath
from PIL import Image

from mlrpl_jax import paths
from mlrpl_jax.data import reference_order
from mlrpl_jax.errors import ConfigError, DatasetError, UserError

# Natively partially labelled datasets (`tfds_builders.open_images`; labels int8 {-1, 0, 1}).
NATIVE_PARTIAL_DATASETS: tuple[str, ...] = ("open_images/boxable", "open_images/trainable")

SUPPORTED_DATASETS: tuple[str, ...] = (
    "synthetic_scenes", "voc/2007", "voc/2012", "coco/2014", "vg200", "cub", "nus_wide",
    *NATIVE_PARTIAL_DATASETS,
)  # fmt: skip

# Datasets built by our manual-directory builders: name -> (module, builder class).
MANUAL_BUILDERS: dict[str, tuple[str, str]] = {
    "cub": ("mlrpl_jax.data.tfds_builders.cub_attributes", "CubAttributes"),
    "nus_wide": ("mlrpl_jax.data.tfds_builders.nus_wide", "NusWide"),
}

# fmt: off
VOC_CLASS_NAMES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)

# The 80 COCO category ids in ascending order (1..90 minus the 10 unused ones); label k <->
# COCO_CATEGORY_IDS[k] <-> COCO_CLASS_NAMES[k].
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    sorted(set(range(1, 91)) - {12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
)

COCO_CLASS_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)
# fmt: on

# TFDS versions read (and prepared) here: tensorflow-datasets 4.9.x generates exactly these.
TFDS_VERSIONS: dict[str, str] = {"voc/2007": "5.0.0", "voc/2012": "5.0.0", "coco/2014": "1.1.0"}

LabelFn = Callable[[Mapping[str, Any], int], np.ndarray]

_INDEX_FORMAT = 1  # Bump when the label index's content or the label rules change.


class DatasetNotPreparedError(UserError, FileNotFoundError):
    """A TFDS dataset is not prepared (or not in the ``array_record`` format) in its data_dir."""


def _voc_labels(record: Mapping[str, Any], num_classes: int) -> np.ndarray:
    """Multi-hot uint8 (C,): classes with at least one non-difficult object (reference rule)."""
    objects = record["objects"]
    label = np.asarray(objects["label"], dtype=np.int64).reshape(-1)
    difficult = np.asarray(objects["is_difficult"], dtype=bool).reshape(-1)
    if label.shape != difficult.shape:
        raise ValueError(
            f"VOC record has {label.size} object labels but {difficult.size} difficult flags."
        )
    return _multi_hot(label[~difficult], num_classes, "VOC")


def _coco_labels(record: Mapping[str, Any], num_classes: int) -> np.ndarray:
    """Multi-hot uint8 (C,): classes with any annotation, crowd ones included (reference rule)."""
    label = np.asarray(record["objects"]["label"], dtype=np.int64).reshape(-1)
    return _multi_hot(label, num_classes, "coco/2014")


def _stored_labels(record: Mapping[str, Any], num_classes: int) -> np.ndarray:
    """The stored multi-hot ``labels`` (C,) of a record of our builders (synthetic scenes, VG-200,
    CUB, NUS-WIDE), as uint8."""
    labels = np.asarray(record["labels"])
    if labels.shape != (num_classes,) or not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"record labels must be (C,)={num_classes} values in {{0, 1}}, got shape "
            f"{labels.shape}."
        )
    return labels.astype(np.uint8)


def _native_labels(record: Mapping[str, Any], num_classes: int) -> np.ndarray:
    """The stored natively partial labels (C,) of an Open Images record, as int8 {-1, 0, 1}."""
    labels = np.asarray(record["labels"])
    if labels.shape != (num_classes,) or not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError(
            f"record labels must be (C,)={num_classes} values in {{-1, 0, 1}}, got shape "
            f"{labels.shape} with values {np.unique(labels)[:5]}."
        )
    return labels.astype(np.int8)


def _label_dtype(native: bool) -> type:
    """int8 for natively partial labels {-1, 0, 1}, uint8 for full multi-hot ones."""
    return np.int8 if native else np.uint8


def native_partial(source: Any) -> bool:
    """Whether ``source``'s labels are natively partial {-1, 0, 1} (Open Images), not full."""
    return bool(getattr(source, "native_partial", False))


def _multi_hot(label: np.ndarray, num_classes: int, dataset: str) -> np.ndarray:
    """uint8 (C,) with ones at the class indices ``label`` (repeats allowed)."""
    if label.size and (label.min() < 0 or label.max() >= num_classes):
        raise ValueError(f"{dataset}: object label out of range [0, {num_classes}): {label}.")
    out = np.zeros((num_classes,), dtype=np.uint8)
    out[label] = 1
    return out


def _to_rgb(image: Any) -> np.ndarray:
    """Decodes encoded image bytes with pillow (``.convert('RGB')``); arrays get 3 channels."""
    if isinstance(image, (bytes, bytearray, memoryview, np.bytes_)):
        with Image.open(io.BytesIO(bytes(image))) as pil_image:
            return np.asarray(pil_image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(f"Expected an (H, W, 3) or (H, W, 1) image, got shape {array.shape}.")
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array.astype(np.uint8, copy=False)


def _as_str(value: Any) -> str:
    """A text feature value (bytes or str) as str."""
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


class Source:
    """A random-access split of one dataset (grain ``RandomAccessDataSource``).

    ``source[i]`` is ``{'image': uint8 (H, W, 3), 'labels': uint8 (C,) in {0, 1} (full ground
    truth), 'example_id': np.int64 (= i)}``. Instances hold only picklable state (the TFDS data
    source, which re-opens its files in each grain worker, and numpy caches).

    Attributes:
        name: Dataset name, one of `SUPPORTED_DATASETS`.
        split: The split string the source was opened with.
        num_classes: Number of classes ``C``.
        class_names: ``C`` class names, in label order.
    """

    def __init__(
        self,
        *,
        name: str,
        split: str,
        data: Sequence[Mapping[str, Any]],
        class_names: Sequence[str],
        labels_fn: LabelFn,
        filename_key: str | None,
        index_dir: str | os.PathLike[str] | None = None,
        fingerprint: Mapping[str, Any] | None = None,
        native_partial: bool = False,
    ) -> None:
        """Wraps an underlying random-access source; use `make_source` instead.

        Args:
            name: Dataset name.
            split: Split string.
            data: Underlying source (``__len__``, ``__getitem__``) of raw records.
            class_names: Class names in label order.
            labels_fn: Maps (raw record, C) to the uint8 (C,) multi-hot labels; must be a
                module-level function (picklable).
            filename_key: Record key of the image file name, or None (names are the indices).
            index_dir: Where the label index of the split (labels and file names, `labels_matrix`)
                is kept, e.g. the prepared dataset's directory; None: no index, every process
                scans the records. A read-only directory falls back to ``$MLRPL_JAX_CACHE`` or
                ``~/.cache/mlrpl_jax``.
            fingerprint: What the index must match (e.g. the preparation's dataset_info.json
                modification time); the split, N and C are always checked.
            native_partial: The labels are natively partial, int8 {-1, 0, 1} (Open Images), not
                full multi-hot uint8.
        """
        self.name = name
        self.split = split
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self._data = data
        self._labels_fn = labels_fn
        self._filename_key = filename_key
        self.native_partial = native_partial
        self._labels: np.ndarray | None = None
        self._names: tuple[str, ...] | None = None
        self._index_dir = None if index_dir is None else os.fspath(index_dir)
        self._fingerprint = {
            "format": _INDEX_FORMAT, "name": name, "split": split, "num_examples": len(data),
            "num_classes": len(self.class_names), "labels_fn": labels_fn.__name__,
            **(fingerprint or {}),
        }  # fmt: skip

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (
            f"Source(name={self.name!r}, split={self.split!r}, num_examples={len(self)}, "
            f"num_classes={self.num_classes})"
        )

    def _index(self, index: int) -> int:
        """Validates ``index`` (negative counts from the end) and returns it in [0, N)."""
        index = operator.index(index)
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"Index out of range for {self!r}.")
        return index

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        """Returns the decoded record ``index`` (see the class docstring)."""
        index = self._index(index)
        try:
            record = self._data[index]
        except RuntimeError as e:
            if "Corrupted" not in str(e) and "Riegeli" not in str(e):
                raise
            raise self._corrupted(index, e) from None
        return {
            "image": _to_rgb(record["image"]),
            "labels": self._labels_fn(record, self.num_classes),
            "example_id": np.int64(index),
        }

    def _corrupted(self, index: int, error: Exception) -> DatasetError:
        """The error for a record that cannot be read back: dataset, split, files, the fix."""
        info = getattr(self._data, "dataset_info", None)
        prepared = None if info is None else os.fspath(info.data_dir)
        base = self.split.split("[")[0].split("+")[0]
        files = []
        if prepared is not None and epath.Path(prepared).is_dir():
            files = sorted(f.name for f in epath.Path(prepared).iterdir()
                           if f"-{base}.array_record" in f.name)  # fmt: skip
        where = f" in {prepared} (files {', '.join(files) or '?'})" if prepared else ""
        if self.name == "synthetic_scenes":
            fix = f"delete {prepared}; the next run generates it again"
        else:
            fix = (
                f"delete {prepared} and prepare it again: python scripts/prepare_data.py "
                f"{self.name}" + (" --manual_dir DIR" if self.name not in TFDS_VERSIONS else "")
            )
        return DatasetError(
            f"dataset {self.name}, split {self.split}: record {index} cannot be read{where}: "
            f"the prepared files are damaged ({str(error).splitlines()[0][:160]}). To rebuild, "
            f"{fix}."
        )

    def _index_paths(self) -> list[str]:
        """Candidate label-index files: in `index_dir`, then in the user cache."""
        if self._index_dir is None:
            return []
        key = json.dumps(self._fingerprint, sort_keys=True)
        index_dir = paths.absolute(self._index_dir)
        digest = hashlib.sha256(f"{index_dir}\n{key}".encode()).hexdigest()
        cache = os.environ.get("MLRPL_JAX_CACHE") or os.path.expanduser("~/.cache/mlrpl_jax")
        return [
            os.fspath(epath.Path(index_dir) / "mlrpl_index" / f"{digest[:24]}.npz"),
            os.path.join(cache, "label_index", f"{digest[:24]}.npz"),
        ]

    def _load_index(self) -> bool:
        for path in self._index_paths():
            try:
                with epath.Path(path).open("rb") as fh, np.load(fh, allow_pickle=False) as f:
                    if json.loads(str(f["fingerprint"])) != self._fingerprint:
                        continue
                    labels, names = f["labels"], f["names"]
            except (OSError, KeyError, ValueError):
                continue
            if labels.shape == (len(self), self.num_classes) and len(names) == len(self):
                self._labels, self._names = (
                    labels.astype(_label_dtype(self.native_partial)),
                    tuple(names.tolist()),
                )
                return True
        return False

    def _save_index(self) -> str | None:
        """Writes the label index (atomically: a temporary file renamed); the first writable
        candidate wins. Returns its path, or None where none is writable."""
        data = io.BytesIO()
        np.savez(data, labels=self._labels, names=np.asarray(self._names, dtype=str),
                 fingerprint=json.dumps(self._fingerprint, sort_keys=True))  # fmt: skip
        for path in self._index_paths():
            try:
                epath.Path(path).parent.mkdir(parents=True, exist_ok=True)
                paths.atomic_write(path, data.getvalue())
                return path
            except OSError:
                continue
        return None

    def _scan(self) -> None:
        """Labels and file names of every record: from the label index when there is one, else
        one pass over the records (images not decoded; read in batches where the data source
        reads them in parallel), then written to the index."""
        if self._load_index():
            return
        labels = np.zeros((len(self), self.num_classes), dtype=_label_dtype(self.native_partial))
        names = []
        read_many = getattr(self._data, "__getitems__", None)
        chunk = 512
        for start in range(0, len(self), chunk):
            ids = range(start, min(start + chunk, len(self)))
            records = read_many(list(ids)) if read_many else [self._data[i] for i in ids]
            for i, record in zip(ids, records):
                labels[i] = self._labels_fn(record, self.num_classes)
                key = self._filename_key
                names.append(_as_str(record[key]) if key is not None else str(i))
        self._labels, self._names = labels, tuple(names)
        self._save_index()

    def build_index(self) -> str | None:
        """Scans the split once and writes its label index (`scripts/prepare_data.py` calls it
        after preparation, so that training loads the labels in seconds). Returns the path."""
        self._labels = self._names = None
        candidates = self._index_paths()
        for path in candidates:
            with contextlib.suppress(OSError):
                epath.Path(path).unlink(missing_ok=True)
        self._scan()
        return next((p for p in candidates if epath.Path(p).exists()), None)

    def labels_matrix(self) -> np.ndarray:
        """Full labels of the whole split, without decoding any image.

        Returns:
            uint8 (N, C) in {0, 1} (int8 in {-1, 0, 1} where `native_partial`); row ``i`` equals
            ``self[i]['labels']``. Read from the split's
            label index (`build_index`), else computed on the first call (one pass over the
            records) and written to the index; cached on the instance.
        """
        if self._labels is None:
            self._scan()
        return self._labels

    def image_names(self) -> tuple[str, ...]:
        """File name of each record (``image/filename``; the index as text for synthetic data).

        Use it to map ``example_id`` to the reference's image order. Cached like `labels_matrix`.
        """
        if self._names is None:
            self._scan()
        return self._names


def prepare_instructions(name: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """Instructions for preparing TFDS dataset ``name`` (at `TFDS_VERSIONS`) as ``array_record``.

    Args:
        name: ``'voc/2007'``, ``'voc/2012'``, ``'coco/2014'``, ``'vg200'`` or a `MANUAL_BUILDERS`
            dataset.
        data_dir: TFDS data directory root, or None for TFDS's default.

    Returns:
        A multi-line message: what is needed, and the prepare command(s) (for ``'vg200'``: where
        to put which files, and the command).
    """
    if name == "vg200":
        from mlrpl_jax.data.tfds_builders import vg200

        return vg200.prepare_instructions(data_dir)
    if name in NATIVE_PARTIAL_DATASETS:
        from mlrpl_jax.data.tfds_builders import open_images

        return open_images.prepare_instructions(name.split("/", 1)[1], data_dir)
    if name in MANUAL_BUILDERS:
        from mlrpl_jax.data.tfds_builders import manual

        return manual.prepare_instructions(_manual_class(name), name, data_dir)
    versioned = f"{name}:{TFDS_VERSIONS[name]}"
    dir_arg = f", data_dir={os.fspath(data_dir)!r}" if data_dir is not None else ""
    dir_flag = f" --data_dir={os.fspath(data_dir)}" if data_dir is not None else ""
    size_note = {
        "voc/2007": "VOC 2007 downloads ~0.9 GB",
        "voc/2012": "VOC 2012 downloads ~3.6 GB (trainval and test tars)",
        "coco/2014": (
            "COCO 2014 downloads automatically, no manual step, but coco/2014 also fetches the "
            "test2014 and test2015 images: ~40 GB of zips, as much again extracted, and ~40 GB "
            "prepared"
        ),
    }[name]
    return (
        f"Prepare it once ({size_note}; needs network access and TensorFlow to encode the "
        f"images; reading needs neither):\n"
        f"  pip install 'mlrpl_jax[tfds-prepare]' importlib_resources\n"
        f"  python -c \"import tensorflow_datasets as tfds; tfds.builder('{versioned}'{dir_arg}, "
        f"file_format='array_record').download_and_prepare()\"\n"
        f"or with the TFDS command line (in tensorflow-datasets 4.9.10 it also needs "
        f"`pip install apache-beam mlcroissant`):\n"
        f"  tfds build {versioned}{dir_flag} --file_format=array_record\n"
        f"(tensorflow-datasets 4.9.10 imports `importlib_resources` when preparing catalogue "
        f"datasets but does not declare it as a dependency.)"
    )


def _open_tfds(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> tuple[Any, Any]:
    """Opens the TFDS array_record data source of ``name``/``split``, images left encoded.

    The versioned name makes TFDS read the prepared files (a ``ReadOnlyBuilder``) instead of
    instantiating the builder code, whose ``coco`` features import TensorFlow.

    Returns:
        ``(builder, data_source)``.

    Raises:
        DatasetNotPreparedError: Not prepared in ``data_dir``, or prepared only as tfrecord.
    """
    import tensorflow_datasets as tfds  # Lazy: importing TFDS takes ~1 s.

    data_dir = None if data_dir is None else os.fspath(data_dir)
    searched = (
        data_dir
        if data_dir is not None
        else "TFDS default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    )
    versioned = f"{name}:{TFDS_VERSIONS[name]}"
    try:
        builder = tfds.builder(versioned, data_dir=data_dir)
    except ImportError as err:
        # The files were not found, so TFDS fell back to the builder code, which needs TF.
        raise DatasetNotPreparedError(
            f"TFDS dataset {versioned!r} is not prepared (no files found; TFDS then failed to "
            f"build it from code: {err}). Searched data_dir: {searched}.\n"
            f"{prepare_instructions(name, data_dir)}"
        ) from err
    try:
        data = builder.as_data_source(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    except (KeyError, ValueError, NotImplementedError, AssertionError) as err:
        problem = _preparation_problem(builder)
        if problem is None:
            raise
        raise DatasetNotPreparedError(
            f"TFDS dataset {versioned!r} {problem}. Searched data_dir: {searched} (expected "
            f"files under {builder.data_dir}).\n"
            f"{prepare_instructions(name, data_dir)}"
        ) from err
    return builder, data


def _preparation_problem(builder: Any) -> str | None:
    """Why ``builder`` cannot be read as array_record, or None if it looks readable."""
    from tensorflow_datasets.core import file_adapters

    if not builder.is_prepared():
        return "is not prepared"
    formats = builder.info.available_file_formats()
    if file_adapters.FileFormat.ARRAY_RECORD not in formats:
        found = ", ".join(sorted(f.value for f in formats)) or "unknown"
        return (
            f"is prepared in the {found} format, but random access needs array_record; delete "
            f"{builder.data_dir} (or use another data_dir) and prepare it again as array_record"
        )
    return None


def _index_of(builder: Any) -> dict[str, Any]:
    """`Source`'s label-index arguments for a prepared TFDS builder: its directory, and the
    preparation's dataset_info.json modification time (a re-preparation invalidates the index)."""
    data_dir = os.fspath(builder.data_dir)
    info = epath.Path(data_dir) / "dataset_info.json"
    try:
        fingerprint = {"prepared": paths.mtime_ns(info)}
        if not paths.is_local(data_dir):  # an object store may report no time: add the content's
            fingerprint["info_sha256"] = hashlib.sha256(info.read_bytes()).hexdigest()
    except OSError:  # not prepared there (e.g. TFDS's mock data): no index
        return {}
    return {"index_dir": data_dir, "fingerprint": fingerprint}


def _check_class_names(name: str, found: Sequence[str], expected: Sequence[str]) -> None:
    """Raises if a prepared dataset's class names are not the reference order."""
    if tuple(found) != tuple(expected):
        raise RuntimeError(
            f"{name}: TFDS class names {tuple(found)} differ from the expected (reference) order "
            f"{tuple(expected)}; the labels would not match the reference's class indices."
        )


def _make_voc(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> Source:
    """The ``voc/2007`` or ``voc/2012`` source (see the module docstring for the label rule)."""
    builder, data = _open_tfds(name, split, data_dir)
    names = builder.info.features["objects"]["label"].names
    _check_class_names(name, names, VOC_CLASS_NAMES)
    return Source(
        name=name,
        split=split,
        data=data,
        class_names=VOC_CLASS_NAMES,
        labels_fn=_voc_labels,
        filename_key="image/filename",
        **_index_of(builder),
    )


def _make_coco(split: str, data_dir: str | os.PathLike[str] | None) -> Source:
    """The ``coco/2014`` source (see the module docstring for the label rule)."""
    builder, data = _open_tfds("coco/2014", split, data_dir)
    names = builder.info.features["objects"]["label"].names
    # Before preparation (e.g. under tfds.testing.mock_data) the names are placeholders '0'..'79'.
    if tuple(names) != tuple(str(i) for i in range(len(COCO_CLASS_NAMES))):
        _check_class_names("coco/2014", names, COCO_CLASS_NAMES)
    return Source(
        name="coco/2014",
        split=split,
        data=data,
        class_names=COCO_CLASS_NAMES,
        labels_fn=_coco_labels,
        filename_key="image/filename",
        **_index_of(builder),
    )


def _open_own_builder(
    name: str, folder: str, make: Callable[[], Any], is_prepared: Callable[[Any], bool],
    data_dir: str | os.PathLike[str] | None,
) -> Any:  # fmt: skip
    """One of our builders, prepared as array_record in ``data_dir``, or DatasetNotPreparedError
    with the instructions (``folder``: the builder's directory name under data_dir)."""
    searched = (
        os.fspath(data_dir)
        if data_dir is not None
        else "TFDS default ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    )
    try:
        builder = make()
    except ValueError as err:  # TFDS refuses to open files of another format as array_record.
        raise DatasetNotPreparedError(
            f"Dataset {name!r} in {searched} cannot be opened as array_record ({err}); delete "
            f"its {folder}/ folder (or use another data_dir) and prepare it again as "
            f"array_record.\n{prepare_instructions(name, data_dir)}"
        ) from err
    problem = "is not prepared" if not is_prepared(builder) else _preparation_problem(builder)
    if problem is not None:
        raise DatasetNotPreparedError(
            f"Dataset {name!r} {problem}. Searched data_dir: {searched} (expected files under "
            f"{builder.data_dir}).\n{prepare_instructions(name, data_dir)}"
        )
    return builder


def _make_vg200(split: str, data_dir: str | os.PathLike[str] | None) -> Source:
    """The ``vg200`` source, read from the files prepared by our ``vg200`` TFDS builder."""
    # Lazy: the builder package imports TFDS and registers the builder.
    from mlrpl_jax.data.tfds_builders import vg200

    builder = _open_own_builder(
        "vg200", "vg200", lambda: vg200.make_builder(data_dir), vg200.is_prepared, data_dir
    )
    return Source(
        name="vg200",
        split=split,
        data=builder.as_data_source(split=split),
        class_names=vg200.class_names(builder),
        labels_fn=_stored_labels,
        filename_key="image/filename",
        **_index_of(builder),
    )


def _manual_class(name: str) -> Any:
    """The builder class of a `MANUAL_BUILDERS` dataset (importing it registers it with TFDS)."""
    import importlib

    module, cls = MANUAL_BUILDERS[name]
    return getattr(importlib.import_module(module), cls)


def _make_manual(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> Source:
    """A `MANUAL_BUILDERS` dataset's source, from the files its builder prepared."""
    from mlrpl_jax.data.tfds_builders import manual

    cls = _manual_class(name)
    builder = _open_own_builder(
        name, cls.name, lambda: manual.make_builder(cls, data_dir), manual.is_prepared, data_dir
    )
    names = manual.class_names(builder)
    if name == "cub":
        from mlrpl_jax.data.tfds_builders import cub_attributes

        names = tuple(cub_attributes.prompt_name(n) for n in names)
    return Source(
        name=name,
        split=split,
        data=builder.as_data_source(split=split),
        class_names=names,
        labels_fn=_stored_labels,
        filename_key="image/filename",
        **_index_of(builder),
    )


def _make_open_images(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> Source:
    """An ``open_images/<label set>`` source (natively partial labels), from `open_images.prepare`."""
    from mlrpl_jax.data.tfds_builders import manual, open_images

    label_set = name.split("/", 1)[1]
    if not open_images.is_prepared(label_set, data_dir):
        raise DatasetNotPreparedError(
            f"Dataset {name!r} is not prepared (no dataset_info.json in "
            f"{open_images.dataset_dir(label_set, data_dir)}; an interrupted preparation resumes "
            f"when run again).\n{prepare_instructions(name, data_dir)}"
        )
    builder = open_images.open_builder(label_set, data_dir)
    base = [part.split("[", 1)[0] for part in split.split("+")]
    missing = [b for b in base if b not in builder.info.splits]
    if missing:
        raise ConfigError(
            f"{name} has no split {missing[0]!r} in {builder.data_dir}: it has "
            f"{sorted(builder.info.splits)} (a split whose images were all absent from the manual "
            f"directory is not written; counts: {builder.info.metadata['counts']})."
        )
    return Source(
        name=name,
        split=split,
        data=builder.as_data_source(split=split),
        class_names=manual.class_names(builder),
        labels_fn=_native_labels,
        filename_key="image/filename",
        native_partial=True,
        **_index_of(builder),
    )


def _make_synthetic(
    split: str, data_dir: str | os.PathLike[str] | None, synthetic: Mapping[str, Any] | None
) -> Source:
    """The ``synthetic_scenes`` source, prepared on first use with the ``synthetic`` parameters."""
    if not synthetic or "num_classes" not in synthetic:
        raise ConfigError(
            "synthetic_scenes needs synthetic={'image_size': ..., 'num_classes': ..., "
            f"'num_train': ..., 'num_test': ..., 'seed': ...}}, got {synthetic!r}."
        )
    # Lazy: the builder package imports TFDS and registers the builder.
    from mlrpl_jax.data.tfds_builders import synthetic_scenes

    data = synthetic_scenes.load_source(split, data_dir, **dict(synthetic))
    return Source(
        name="synthetic_scenes",
        split=split,
        data=data,
        class_names=synthetic_scenes.class_names(int(synthetic["num_classes"])),
        labels_fn=_stored_labels,
        filename_key=None,
    )


def make_source(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    synthetic: Mapping[str, Any] | None = None,
) -> Source:
    """Opens split ``split`` of dataset ``name`` as a `Source`.

    Args:
        name: One of `SUPPORTED_DATASETS`.
        split: A TFDS split string, e.g. ``'train'``, ``'test'``, ``'train+validation'`` (VOC
            trainval), ``'validation'`` (COCO val2014), ``'train[:10%]'``.
        data_dir: TFDS data directory root (default: TFDS's default, ``~/tensorflow_datasets`` or
            ``$TFDS_DATA_DIR``).
        synthetic: Parameters of ``synthetic_scenes`` (``image_size``, ``num_classes``,
            ``num_train``, ``num_test``, ``seed``, ...), passed to its ``load_source``; required
            for ``'synthetic_scenes'``, ignored for the other datasets.

    Returns:
        The `Source`.

    Raises:
        ValueError: Unknown ``name``, or ``synthetic`` missing for ``'synthetic_scenes'``.
        DatasetNotPreparedError: VOC/COCO/VG-200 is not prepared as array_record in ``data_dir``.
    """
    if name == "synthetic_scenes":
        return _make_synthetic(split, data_dir, synthetic)
    if name in ("voc/2007", "voc/2012"):
        return _make_voc(name, split, data_dir)
    if name == "coco/2014":
        return _make_coco(split, data_dir)
    if name == "vg200":
        return _make_vg200(split, data_dir)
    if name in MANUAL_BUILDERS:
        return _make_manual(name, split, data_dir)
    if name in NATIVE_PARTIAL_DATASETS:
        return _make_open_images(name, split, data_dir)
    raise ConfigError(f"Unknown dataset {name!r}; supported: {', '.join(SUPPORTED_DATASETS)}.")


class Subset:
    """Rows `indices` of a `Source`, renumbered: ``subset[i]`` is ``base[indices[i]]`` with
    ``example_id`` = i, so partial-label masks and per-example tables are keyed by the position in
    the subset. Same interface as `Source` (``name``, ``split``, ``num_classes``, ``class_names``,
    ``labels_matrix``, ``image_names``); picklable.
    """

    def __init__(self, base: Source, indices: np.ndarray, split: str):
        """Args: base source; indices (n,) int into it; split: the name used for this subset."""
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self.name, self.split = base.name, split
        self.class_names, self.num_classes = base.class_names, base.num_classes
        self.native_partial = native_partial(base)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"Subset({self.base!r}, split={self.split!r}, num_examples={len(self)})"

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = operator.index(index)
        record = self.base[int(self.indices[index])]
        return dict(record, example_id=np.int64(index if index >= 0 else index + len(self)))

    def labels_matrix(self) -> np.ndarray:
        """(n, C): the base's labels of the subset's rows."""
        return self.base.labels_matrix()[self.indices]

    def image_names(self) -> tuple[str, ...]:
        """The base's file names of the subset's rows."""
        names = self.base.image_names()
        return tuple(names[i] for i in self.indices)


def carve_out(base: Source, fraction: float, seed: int) -> tuple[Subset, Subset]:
    """(train, val) = a seeded random split of `base` with round(fraction * N) examples in val.

    The permutation is ``np.random.default_rng(seed).permutation(N)`` (the LargeLoss protocol
    carves 20% of COCO/VOC train with seed 1200); both parts keep the base order. Example ids are
    renumbered within each part (`Subset`).
    """
    n = len(base)
    num_val = round(fraction * n)
    if not 0 < num_val < n:
        raise ConfigError(
            f"config.data.val_fraction={fraction} carves {num_val} of the {n} examples of "
            f"{base.name}[{base.split}]; it must leave at least one example on each side."
        )
    perm = np.random.default_rng(seed).permutation(n)
    val_idx, train_idx = np.sort(perm[:num_val]), np.sort(perm[num_val:])
    tag = f"carve{fraction:g}_seed{seed}"
    return (
        Subset(base, train_idx, f"{base.split}[{tag}:train]"),
        Subset(base, val_idx, f"{base.split}[{tag}:val]"),
    )


def carve_out_as_listed(
    base: Source, order: Sequence[str], fraction: float, seed: int, *, source: str
) -> tuple[Subset, Subset]:
    """(train, val) of `base` as Cole et al.'s ``generate_split`` carves their image list.

    Their rule (``datasets.py``): over the M images of their formatted list, in its order,
    ``p = np.random.RandomState(seed).permutation(M)``; val = rows ``p[-round(fraction M):]``,
    train = rows ``p[:M - round(fraction M)]``. Mapped onto `base` by image name, which must hold
    exactly the listed images (with `data.drop_unlabeled`, as their lists hold only images with a
    positive); both parts keep the base order and renumber example ids (`Subset`).

    Args:
      base: the train split.
      order: (M,) their image file names (``formatted_train_images.npy``), in their order.
      fraction: the validation fraction (0.2 in their protocol).
      seed: the split seed (1200 in their protocol).
      source: where `order` comes from, for error messages.
    """
    n = len(order)
    num_val = int(np.round(fraction * n))
    if not 0 < num_val < n:
        raise ConfigError(
            f"config.data.val_fraction={fraction} carves {num_val} of the {n} images of {source}; "
            "it must leave at least one image on each side."
        )
    rows = reference_order.reference_rows(
        base.image_names(), order, source=source,
        hint="its images must be exactly those of the train split: set "
        "config.data.drop_unlabeled=True, as Cole et al.'s lists hold only images with a positive",
    )  # fmt: skip
    if len(rows) != n:
        raise ConfigError(
            f"{source} lists {n} images, {n - len(rows)} of which are not in {base.name}"
            f"[{base.split}]; the carve-out would not be Cole et al.'s (is it the file of this "
            "split and dataset?)."
        )
    perm = np.random.RandomState(seed).permutation(n)
    in_val = np.zeros(n, bool)
    in_val[perm[n - num_val :]] = True
    val_idx, train_idx = np.flatnonzero(in_val[rows]), np.flatnonzero(~in_val[rows])
    tag = f"cole{fraction:g}_seed{seed}"
    return (
        Subset(base, train_idx, f"{base.split}[{tag}:train]"),
        Subset(base, val_idx, f"{base.split}[{tag}:val]"),
    )
