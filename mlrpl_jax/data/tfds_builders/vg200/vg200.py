"""`vg200`: the VG-200 multi-label benchmark (Visual Genome images, 200 categories), built with TFDS.

VG-200 is not in the TFDS catalogue. The reference (``datasets/vg.py``, notes §4.5) reads

* images ``<VG>/VG_100K/<file name>`` (the Visual Genome images, part 1);
* split lists ``train_list_500.txt`` and ``test_list_500.txt``: one image file name per line;
* labels ``vg_category_200_labels_index.json``: a JSON object mapping each file name to the list
  of its positive class indices in [0, 200). The same file serves both splits; every class not
  listed for an image is negative.

The three list/JSON files come from the authors' ``data.zip`` (``data/vg/``), the images from
Visual Genome. They are placed by hand in a *manual directory* (`MANUAL_DIR_LAYOUT`) and `prepare`
turns them into TFDS ``array_record`` files, so training reads them with random access, like VOC
and COCO, and neither preparing nor reading needs TensorFlow.

Stored features
===============
* ``image``: the image file's bytes exactly as stored on disk (normally a JPEG), as a scalar
  ``tfds.features.Tensor`` of dtype ``object`` (a byte string). Nothing is re-encoded; readers
  decode with pillow (`mlrpl_jax.data.sources` does ``.convert('RGB')``, as the reference).
* ``labels``: uint8 ``(200,)`` multi-hot, 1 at the indices listed in the JSON.
* ``image/filename``: the file name as written in the split list.

Examples are stored in split-list order (``disable_shuffling``), so example ``i`` of a split is the
``i``-th non-blank line of its list file, which is the reference's dataset order; the reference's
partial-label masks (``config.data.mask_mode='reference'``) therefore apply unchanged.

Parsing rules
=============
* List files: surrounding whitespace (including ``\\r``) is stripped from each line and blank lines
  are skipped (the reference's ``line[:-1]`` would cut the last character of a final line without
  a newline). Repeated names are kept, as in the reference.
* JSON: every key must be a string and every value a list of integers in [0, 200). Every file named
  in a split list must be a key (an image without positives is listed with ``[]``). Violations
  raise ValueError naming the file and the entry, before anything is written.
* Images: every listed file must exist in ``VG_100K/``; missing ones raise FileNotFoundError naming
  the first few, before anything is written.

Class names
===========
The reference code has no class names (only indices and the embedding matrix
``vg_200_vector.npy``). If the manual directory holds a names file (`NAMES_FILES`), it is used:
``vg_category_200.json`` holding either a list of 200 names in index order, or an object mapping
index (``"0"``..``"199"``) -> name, or name -> index; or ``vg_category_200.txt`` with one name per
line in index order. Otherwise the names are ``class_000`` .. ``class_199``. The names are stored
in the prepared dataset's metadata (``builder.info.metadata['class_names']``, read by
`class_names`). Placeholder names carry no meaning, so the GloVe text lookup of
`mlrpl_jax.data.label_semantics` refuses them: give VG-200 the authors' ``vg_200_vector.npy``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import tensorflow_datasets as tfds

from mlrpl_jax.data.tfds_builders import manual
from mlrpl_jax.errors import MissingFileError

NUM_CLASSES = 200
IMAGE_DIR = "VG_100K"
TRAIN_LIST = "train_list_500.txt"
TEST_LIST = "test_list_500.txt"
LABELS_JSON = "vg_category_200_labels_index.json"
NAMES_FILES: tuple[str, ...] = ("vg_category_200.json", "vg_category_200.txt")
SPLIT_LISTS: Mapping[str, str] = {"train": TRAIN_LIST, "test": TEST_LIST}
PLACEHOLDER_NAMES: tuple[str, ...] = tuple(f"class_{c:03d}" for c in range(NUM_CLASSES))

_LAYOUT_ROWS = (
    (TRAIN_LIST, "from the authors' data.zip (data/vg/)"),
    (TEST_LIST, "from the authors' data.zip (data/vg/)"),
    (LABELS_JSON, "from the authors' data.zip (data/vg/)"),
    (NAMES_FILES[0], "optional: class names (list of 200, or index <-> name)"),
    (IMAGE_DIR + "/", "the Visual Genome images (part 1): 1.jpg, 10.jpg, ..."),
    ("", "(a symbolic link to an existing VG_100K folder is fine)"),
)
MANUAL_DIR_LAYOUT = "<manual_dir>/\n" + "\n".join(
    f"  {path:<36}{note}" for path, note in _LAYOUT_ROWS
)

_MAX_LISTED = 5  # Missing images named in an error message.


class ManualFiles(NamedTuple):
    """The parsed contents of a VG-200 manual directory.

    Attributes:
        image_dir: Path of ``VG_100K``.
        split_names: Split -> file names, in list order.
        labels_index: File name -> positive class indices.
        class_names: The 200 class names in index order.
        class_names_source: Where the names came from (file path, or ``'placeholder'``).
    """

    image_dir: str
    split_names: dict[str, list[str]]
    labels_index: dict[str, tuple[int, ...]]
    class_names: tuple[str, ...]
    class_names_source: str


def read_split_list(path: str | os.PathLike[str]) -> list[str]:
    """File names of a split list (stripped; blank lines skipped), in file order."""
    return [name for _, name in _numbered_lines(path)]


def _numbered_lines(path: str | os.PathLike[str]) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines of a text file."""
    with open(path, encoding="utf-8") as f:
        return [(n, line.strip()) for n, line in enumerate(f, start=1) if line.strip()]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_labels_index(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Parses and validates ``vg_category_200_labels_index.json``.

    Returns:
        File name -> sorted unique positive class indices in [0, 200).

    Raises:
        ValueError: Not JSON, not an object, or an entry that is not a list of integer class
            indices in [0, 200) (the message names the file, the entry and the bad value).
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}).") from err
    if not isinstance(raw, dict):  # A malformed file is a ValueError, like bad JSON.
        raise ValueError(  # noqa: TRY004
            f"{path}: expected a JSON object mapping image file name -> list of class indices, "
            f"got a {type(raw).__name__}."
        )
    out = {}
    for name, indices in raw.items():
        if not isinstance(indices, list):
            raise ValueError(  # noqa: TRY004
                f"{path}: entry {name!r} must be a list of class indices in [0, {NUM_CLASSES}), "
                f"got {indices!r}."
            )
        for value in indices:
            if not _is_int(value) or not 0 <= value < NUM_CLASSES:
                raise ValueError(
                    f"{path}: entry {name!r} has class index {value!r}, outside [0, "
                    f"{NUM_CLASSES}) (entry: {indices!r})."
                )
        out[name] = tuple(sorted(set(indices)))
    return out


def read_class_names(manual_dir: str | os.PathLike[str]) -> tuple[tuple[str, ...], str]:
    """The class names from the optional names file in ``manual_dir`` (module docstring).

    Returns:
        ``(names, source)``: 200 names in index order and the path they were read from, or
        (`PLACEHOLDER_NAMES`, ``'placeholder'``) if there is no names file.

    Raises:
        ValueError: A names file exists but does not give exactly one name per index 0..199.
    """
    for filename in NAMES_FILES:
        path = os.path.join(os.fspath(manual_dir), filename)
        if not os.path.exists(path):
            continue
        with open(path, encoding="utf-8") as f:
            if filename.endswith(".txt"):
                names = [line.strip() for line in f if line.strip()]
            else:
                names = _names_from_json(json.load(f), path)
        names = [str(n) for n in names]
        if len(names) != NUM_CLASSES or len(set(names)) != NUM_CLASSES:
            raise ValueError(
                f"{path}: expected {NUM_CLASSES} distinct class names in index order, got "
                f"{len(names)} ({len(set(names))} distinct)."
            )
        return tuple(names), path
    return PLACEHOLDER_NAMES, "placeholder"


def _names_from_json(raw: Any, path: str) -> list[str]:
    """Names in index order from a JSON list, {index: name} or {name: index}."""
    if isinstance(raw, list):
        return raw
    if isinstance(raw, dict):
        if all(_is_int(v) for v in raw.values()):  # name -> index
            pairs = [(v, k) for k, v in raw.items()]
        elif all(str(k).isdigit() for k in raw):  # "index" -> name
            pairs = [(int(k), v) for k, v in raw.items()]
        else:
            pairs = None
        if pairs is not None and sorted(i for i, _ in pairs) == list(range(len(pairs))):
            return [name for _, name in sorted(pairs)]
    raise ValueError(
        f"{path}: expected a list of {NUM_CLASSES} class names, or an object mapping each index "
        f"0..{NUM_CLASSES - 1} to a name (or each name to its index)."
    )


def read_manual_dir(manual_dir: str | os.PathLike[str]) -> ManualFiles:
    """Reads and validates every file of a VG-200 manual directory (`MANUAL_DIR_LAYOUT`).

    Raises:
        FileNotFoundError: A required file or folder, or a listed image, is missing (all missing
            required files, or the first few missing images, are named).
        ValueError: A malformed JSON entry, or a listed file that has no JSON entry (naming the
            list file, its line, the file name and the JSON file).
    """
    manual_dir = os.fspath(manual_dir)
    required = (TRAIN_LIST, TEST_LIST, LABELS_JSON, IMAGE_DIR + "/")
    missing = [f for f in required if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
        raise MissingFileError(
            f"VG-200 manual directory {manual_dir} lacks {', '.join(missing)}. Expected layout:\n"
            f"{MANUAL_DIR_LAYOUT}"
        )
    json_path = os.path.join(manual_dir, LABELS_JSON)
    labels_index = read_labels_index(json_path)
    image_dir = os.path.join(manual_dir, IMAGE_DIR)
    present = set(os.listdir(image_dir))
    split_names = {}
    for split, list_file in SPLIT_LISTS.items():
        list_path = os.path.join(manual_dir, list_file)
        numbered = _numbered_lines(list_path)
        for line, name in numbered:
            if name not in labels_index:
                raise ValueError(
                    f"{json_path}: no entry for {name!r}, listed in {list_path} (line {line}); "
                    "every listed image needs an entry (use [] for no positives)."
                )
        names = [name for _, name in numbered]
        absent = [
            n for n in names if n not in present and not os.path.isfile(os.path.join(image_dir, n))
        ]
        if absent:
            shown = ", ".join(repr(n) for n in absent[:_MAX_LISTED])
            raise MissingFileError(
                f"{len(absent)} image(s) listed in {list_path} are missing from {image_dir}: "
                f"{shown}{' ...' if len(absent) > _MAX_LISTED else ''}."
            )
        split_names[split] = names
    class_names, names_source = read_class_names(manual_dir)
    return ManualFiles(image_dir, split_names, labels_index, class_names, names_source)


def multi_hot(indices: Sequence[int]) -> np.ndarray:
    """uint8 (200,) with ones at ``indices``."""
    out = np.zeros((NUM_CLASSES,), dtype=np.uint8)
    out[list(indices)] = 1
    return out


class Vg200(manual.ManualBuilder):
    """VG-200 from the authors' lists and the Visual Genome images (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    NUM_CLASSES = NUM_CLASSES
    LAYOUT = MANUAL_DIR_LAYOUT
    HOMEPAGE = "https://homes.cs.washington.edu/~ranjay/visualgenome/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place the VG-200 files in the manual directory (default <data_dir>/downloads/manual/):\n"
        f"{MANUAL_DIR_LAYOUT}\n"
        f"{TRAIN_LIST}, {TEST_LIST} and {LABELS_JSON} are in data/vg/ of the authors' data.zip "
        "(download links in the README of the HCP-MLR-PL repository); the images are Visual "
        "Genome's VG_100K (images.zip of Visual Genome v1.2)."
    )

    @classmethod
    def read_manual_dir(cls, manual_dir: str) -> manual.ManualData:
        files = read_manual_dir(manual_dir)
        splits = {
            split: [manual.Example(name, os.path.join(files.image_dir, name),
                                   multi_hot(files.labels_index[name])) for name in names]
            for split, names in files.split_names.items()
        }  # fmt: skip
        extra = {"class_names_source": files.class_names_source}
        return manual.ManualData(splits, files.class_names, {}, extra)


def make_builder(data_dir: str | os.PathLike[str] | None = None) -> tfds.core.DatasetBuilder:
    """The `Vg200` builder (``array_record``) in ``data_dir`` (default: TFDS's default)."""
    return manual.make_builder(Vg200, data_dir)


def default_manual_dir(data_dir: str | os.PathLike[str] | None = None) -> str:
    """TFDS's default manual directory: ``<data_dir>/downloads/manual``."""
    return manual.default_manual_dir(Vg200, data_dir)


is_prepared = manual.is_prepared


def prepare(
    data_dir: str | os.PathLike[str] | None = None,
    manual_dir: str | os.PathLike[str] | None = None,
) -> tfds.core.DatasetBuilder:
    """Prepares VG-200 as ``array_record`` (if not already prepared) and returns its builder.

    The manual directory is validated completely (`read_manual_dir`) before anything is written.
    TFDS writes into a temporary directory that is renamed on success, so an interrupted
    preparation leaves no partial dataset behind.

    Args:
        data_dir: TFDS data directory root (default: TFDS's default).
        manual_dir: Directory laid out as `MANUAL_DIR_LAYOUT` (default: `default_manual_dir`).

    Returns:
        The prepared builder.
    """
    return manual.prepare(Vg200, data_dir, manual_dir)


def class_names(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
    """The class names stored with a prepared dataset (`PLACEHOLDER_NAMES` if none are)."""
    names = builder.info.metadata.get("class_names") if builder.info.metadata else None
    return tuple(names) if names else PLACEHOLDER_NAMES


def prepare_instructions(data_dir: str | os.PathLike[str] | None = None) -> str:
    """How to prepare VG-200 in ``data_dir``: where to put which files, and the command."""
    manual_dir = default_manual_dir(data_dir)
    dir_arg = f"data_dir={os.fspath(data_dir)!r}, " if data_dir is not None else ""
    return (
        f"Prepare it once (no network access and no TensorFlow needed). Put these files in a "
        f"manual directory, by default {manual_dir}:\n"
        f"{MANUAL_DIR_LAYOUT}\n"
        f"{TRAIN_LIST}, {TEST_LIST} and {LABELS_JSON} are in data/vg/ of the authors' data.zip; "
        f"{IMAGE_DIR}/ holds the Visual Genome images. Then run:\n"
        f'  python -c "from mlrpl_jax.data.tfds_builders import vg200; '
        f'vg200.prepare({dir_arg}manual_dir={manual_dir!r})"\n'
        f"(pass another manual_dir= to read the files from elsewhere)."
    )
