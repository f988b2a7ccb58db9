"""`open_images/<label set>`: Open Images V6 image-level labels, a natively partially labelled dataset.

Open Images is never fully labelled: for each image, human raters verified some classes as
present (Confidence 1) or absent (Confidence 0) and left every other class unverified. The labels
here are exactly that: int8 (C,) with +1 (verified present), -1 (verified absent) and 0 (not
verified, unknown). Paper 002 trains on them as they are ("we do not perform pre-processing";
`config.data.setting='fal'` keeps every known entry) and the test split is scored on its known
entries only (`metrics.partial_label_metrics`).

Label sets (the ``<label set>`` of the dataset name; label order = the class file's order):

* ``'boxable'``: the boxable classes of ``oidv6-class-descriptions-boxable.csv``, the "600
  categories" of paper 002 and of the Open Images site (the class count is the file's);
* ``'trainable'``: the MIDs of ``oidv6-classes-trainable.txt`` (the "9,600 trainable classes"
  of CSL, Ben-Baruch et al. 2022), named from ``oidv6-class-descriptions.csv``.

Splits ``'train'``, ``'validation'``, ``'test'``: the images the split's human-verified labels file
(``<split>-annotations-human-imagelabels.csv``) lists that have at least one verified label in the
label set and whose image ``<split>/<ImageID>.jpg`` is in the user's copy; the others are counted
(``counts['<split>/missing_images']``, ``'<split>/without_known_labels'`` in the metadata). Paper
002 and CSL report 5,655,108 train and 125,436 test images (their copies). Rows of classes outside
the label set are skipped; one class verified both present and absent in an image (different
sources) is taken as present and counted (``'<split>/conflicts'``).

Preparation (`prepare`) streams each labels file once. The files are sorted by ImageID, so an
image's rows are consecutive and only one image's rows are held at a time (an unsorted file is an
error that says how to sort it); images are read one at a time and written, as their bytes on
disk, to ``array_record`` shards of ``shard_size`` examples. After each shard the byte offset
reached in the labels file and the counts are saved (a temporary file renamed), so a killed
preparation resumes at its last complete shard when run again; a shard is written under a
temporary name and renamed when complete. When every split is done the shards are moved into
place and TFDS's metadata is written, ``dataset_info.json`` last: it marks the dataset prepared.
Progress (the fraction of the labels file read, images/s, time left) is printed every few seconds.

Scale: the label matrix (`sources.Source.labels_matrix`, the label index) is dense int8 (N, C):
3.4 GB for the boxable classes at 5.6M train images; the trainable classes at that size (54 GB) need
a split slice (e.g. ``'train[:10%]'``).

Stored features, per example: ``image`` (bytes), ``labels`` (int8 (C,) in {-1, 0, 1}),
``image/filename`` (``<split>/<ImageID>.jpg``), in the labels file's order. Reading needs neither
TensorFlow nor the raw files (`tfds.builder_from_directory`).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple, TextIO

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.utils import file_utils

from mlrpl_jax.errors import MissingFileError

DATASET = "open_images_v6"
VERSION = "1.0.0"
LABEL_SETS = ("boxable", "trainable")
SPLITS = ("train", "validation", "test")
HEADER = "ImageID,Source,LabelName,Confidence"
HOMEPAGE = "https://storage.googleapis.com/openimages/web/index.html"

# Accepted file names, first found wins (V6 names; V7's carry the same content for these files).
LABEL_FILES = {
    split: (f"oidv6-{split}-annotations-human-imagelabels.csv",
            f"{split}-annotations-human-imagelabels.csv",
            f"oidv7-{split}-annotations-human-imagelabels.csv")
    for split in SPLITS
}  # fmt: skip
BOXABLE_FILES = ("oidv6-class-descriptions-boxable.csv", "class-descriptions-boxable.csv",
                 "oidv7-class-descriptions-boxable.csv")  # fmt: skip
TRAINABLE_FILES = ("oidv6-classes-trainable.txt", "classes-trainable.txt",
                   "oidv7-classes-trainable.txt")  # fmt: skip
DESCRIPTION_FILES = ("oidv6-class-descriptions.csv", "class-descriptions.csv",
                     "oidv7-class-descriptions.csv")  # fmt: skip

LAYOUT = """<manual_dir>/
  oidv6-class-descriptions-boxable.csv           'boxable': MID,name per line, in label order
  oidv6-classes-trainable.txt                    'trainable': one MID per line, in label order
  oidv6-class-descriptions.csv                   'trainable': MID,name of every class
  oidv6-train-annotations-human-imagelabels.csv  ImageID,Source,LabelName,Confidence (sorted by ImageID)
  validation-annotations-human-imagelabels.csv
  test-annotations-human-imagelabels.csv
  train/<ImageID>.jpg   validation/<ImageID>.jpg   test/<ImageID>.jpg
                                                 your copy of the images (absent ones are skipped, counted)"""

INSTRUCTIONS = (
    "The CSV files come from the Open Images V6 download page "
    "(https://storage.googleapis.com/openimages/web/download_v6.html, 'Image labels' -> "
    "'Human-verified labels' for each split, and 'Class names' / 'Trainable classes'; about 1 GB "
    "for the three label files). The images (about 9M, 18 TB at full size; the common 'resized' "
    "copies are smaller) are downloaded with the Open Images downloader by ImageID into train/, "
    "validation/ and test/. Prepared: about as large as the images. Preparation reads about as "
    "fast as the disk gives the images (a few hundred to a few thousand images/s), is resumable "
    "(run the same command again after an interruption) and prints its progress."
)


class LabelSet(NamedTuple):
    """The classes of a label set: MIDs and names in label order, and which files gave them."""

    mids: tuple[str, ...]
    names: tuple[str, ...]
    files: tuple[str, ...]


def _dirs(label_set: str, data_dir: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(TFDS data_dir root, this label set's dataset directory), resolved as TFDS does."""
    _check_label_set(label_set)
    root, path = file_utils.get_data_dir_and_dataset_dir(
        given_data_dir=None if data_dir is None else os.fspath(data_dir),
        builder_name=DATASET, config_name=label_set, version=VERSION,
    )  # fmt: skip
    return os.fspath(root), os.fspath(path)


def dataset_dir(label_set: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """Where ``open_images/<label_set>`` is prepared: ``<data_dir>/open_images_v6/<label_set>/1.0.0``
    (``data_dir`` default: TFDS's, ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``)."""
    return _dirs(label_set, data_dir)[1]


def default_manual_dir(label_set: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """The manual directory used when none is given: ``<data_dir>/downloads/manual/open_images``."""
    return os.path.join(_dirs(label_set, data_dir)[0], "downloads", "manual", "open_images")


def is_prepared(label_set: str, data_dir: str | os.PathLike[str] | None = None) -> bool:
    """Whether the preparation of ``label_set`` completed (its ``dataset_info.json`` exists)."""
    return (epath.Path(dataset_dir(label_set, data_dir)) / "dataset_info.json").exists()


def prepare_instructions(label_set: str, data_dir: str | os.PathLike[str] | None = None) -> str:
    """How to prepare ``open_images/<label_set>``."""
    dir_flag = f" --data_dir {os.fspath(data_dir)}" if data_dir is not None else ""
    return (
        f"Prepare it once (no network access and no TensorFlow needed): put the files in a manual "
        f"directory laid out as\n{LAYOUT}\n{INSTRUCTIONS}\nThen run:\n  python "
        f"scripts/prepare_data.py open_images/{label_set} --manual_dir "
        f"{default_manual_dir(label_set, data_dir)}{dir_flag}"
    )


def _check_label_set(label_set: str) -> None:
    if label_set not in LABEL_SETS:
        raise ValueError(
            f"Unknown Open Images label set {label_set!r}; choose one of {LABEL_SETS} "
            f"(dataset names 'open_images/boxable', 'open_images/trainable')."
        )


def _first_file(manual_dir: str, candidates: tuple[str, ...]) -> str | None:
    return next((os.path.join(manual_dir, c) for c in candidates
                 if os.path.isfile(os.path.join(manual_dir, c))), None)  # fmt: skip


def _is_mid(text: str) -> bool:
    return text.startswith(("/m/", "/g/"))


def _read_descriptions(path: str) -> list[tuple[str, str]]:
    """(MID, name) rows of a class-descriptions CSV; a header row is skipped."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row]
    if rows and not _is_mid(rows[0][0]):
        rows = rows[1:]
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not _is_mid(row[0]):
            raise ValueError(
                f"{path}: row {number} is not 'MID,name' (e.g. /m/011k07,Tortoise): {row}."
            )
    return [(row[0], row[1]) for row in rows]


def read_label_set(manual_dir: str, label_set: str) -> LabelSet:
    """The classes of ``label_set`` from the class files in ``manual_dir`` (clear errors)."""
    _check_label_set(label_set)
    if label_set == "boxable":
        path = _first_file(manual_dir, BOXABLE_FILES)
        if path is None:
            raise MissingFileError(
                f"Open Images manual directory {manual_dir} lacks the boxable class list (one of "
                f"{', '.join(BOXABLE_FILES)}). Expected layout:\n{LAYOUT}"
            )
        rows, files = _read_descriptions(path), (os.path.basename(path),)
    else:
        listing = _first_file(manual_dir, TRAINABLE_FILES)
        described = _first_file(manual_dir, DESCRIPTION_FILES)
        if listing is None or described is None:
            raise MissingFileError(
                f"Open Images manual directory {manual_dir} lacks the trainable class list (one "
                f"of {', '.join(TRAINABLE_FILES)}) or the class names (one of "
                f"{', '.join(DESCRIPTION_FILES)}). Expected layout:\n{LAYOUT}"
            )
        with open(listing, encoding="utf-8") as f:
            mids = [line.strip() for line in f if line.strip()]
        bad = [m for m in mids if not _is_mid(m)]
        if bad:
            raise ValueError(
                f"{listing}: expected one MID per line (e.g. /m/011k07), got {bad[0]!r}."
            )
        names = dict(_read_descriptions(described))
        unnamed = [m for m in mids if m not in names]
        if unnamed:
            raise ValueError(
                f"{described} has no name for {len(unnamed)} MIDs of {listing} (first: "
                f"{unnamed[0]})."
            )
        rows = [(m, names[m]) for m in mids]
        files = (os.path.basename(listing), os.path.basename(described))
    mids = [m for m, _ in rows]
    if not mids or len(set(mids)) != len(mids):
        raise ValueError(
            f"{files[0]}: expected distinct class MIDs, got {len(mids)} ({len(set(mids))} distinct)."
        )
    return LabelSet(tuple(mids), tuple(n for _, n in rows), files)


def _label_files(manual_dir: str) -> dict[str, str]:
    found = {split: _first_file(manual_dir, LABEL_FILES[split]) for split in SPLITS}
    missing = [LABEL_FILES[s][0] for s, p in found.items() if p is None]
    if missing:
        raise MissingFileError(
            f"Open Images manual directory {manual_dir} lacks {', '.join(missing)}. Expected "
            f"layout:\n{LAYOUT}"
        )
    for path in found.values():
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip()
        if header != HEADER:
            raise ValueError(f"{path}: expected the header {HEADER!r}, got {header!r}.")
    return found


# --- streaming one labels file --------------------------------------------------------------------


class _Group(NamedTuple):
    """One image's rows: its id, labels (C,) int8, whether any row conflicted, and the byte offset
    and line number just after its last row."""

    image_id: str
    labels: np.ndarray
    conflicts: int
    end: int
    line: int


def _groups(
    path: str, offset: int, line: int, previous: str, index: dict[str, int]
) -> Iterator[_Group]:
    """Streams ``path`` from byte ``offset`` (line ``line`` read so far; ``previous``: the last
    ImageID before it) one image at a time (module docstring)."""
    num_classes = len(index)
    with open(path, "rb") as f:
        f.seek(offset)
        current, labels, conflicts, end = None, None, 0, offset
        for raw in f:
            line += 1
            fields = raw.decode("utf-8").rstrip("\r\n").split(",")
            if len(fields) != 4:
                raise ValueError(f"{path}:{line}: expected {HEADER}, got {raw!r}.")
            image_id, _, mid, confidence = fields
            if image_id != current:
                if current is not None:
                    yield _Group(current, labels, conflicts, end, line - 1)
                if image_id <= previous:
                    raise ValueError(
                        f"{path}:{line}: ImageID {image_id} follows {previous}; the file must be "
                        f"sorted by ImageID, as distributed. Sort it with: (head -1 FILE; tail -n +2 "
                        f"FILE | LC_ALL=C sort -t, -k1,1 -s) > SORTED and use SORTED."
                    )
                previous = current = image_id
                labels, conflicts = np.zeros((num_classes,), np.int8), 0
            c = index.get(mid)
            if c is not None:
                if confidence not in ("0", "1"):
                    raise ValueError(
                        f"{path}:{line}: Confidence must be 0 or 1 for human-verified labels, got "
                        f"{confidence!r}."
                    )
                value = 1 if confidence == "1" else -1
                if labels[c] == -value:  # Verified both present and absent: taken as present.
                    conflicts += 1
                    value = 1
                labels[c] = value
            end += len(raw)
        if current is not None:
            yield _Group(current, labels, conflicts, end, line)


class _Progress:
    """Prints the share of the labels file read, images/s and the time left, every `every` s."""

    def __init__(self, split: str, total_bytes: int, start_bytes: int, out: TextIO, every: float):
        self.split, self.total, self.start = split, total_bytes, start_bytes
        self.out, self.every = out, every
        self.t0 = self.last = time.monotonic()
        self.images = 0

    def update(self, offset: int) -> None:
        """One more image written; ``offset``: how far into the labels file."""
        self.images += 1
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        done = (offset - self.start) / max(1, self.total - self.start)
        rate = self.images / max(now - self.t0, 1e-9)
        left = (now - self.t0) * (1 - done) / done if done > 0 else float("nan")
        print(f"open_images[{self.split}]: {100 * offset / max(1, self.total):.1f}% of the labels "
              f"file, {self.images:,} images written this run ({rate:,.0f}/s), about "
              f"{left / 60:,.1f} min left", file=self.out, flush=True)  # fmt: skip


def _write_json(path: str, value: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}.array_record"


def _shard_examples(
    groups: Iterator[_Group], image_dir: str, split: str, features: tfds.features.FeaturesDict,
    shard_size: int, tally: dict[str, Any], progress: _Progress,
) -> Iterator[tuple[int, bytes]]:  # fmt: skip
    """The next shard's (index, serialized example) pairs, drawn from ``groups`` until
    ``shard_size`` are written or the file ends (``tally['exhausted']`` stays True); ``tally``
    follows the position reached (``end``, ``line``, ``previous``), ``written`` and the counts."""
    counts = tally["counts"]
    for group in groups:
        counts["listed"] += 1
        counts["conflicts"] += group.conflicts
        tally.update(end=group.end, line=group.line, previous=group.image_id)
        path = os.path.join(image_dir, f"{group.image_id}.jpg")
        if not group.labels.any():
            counts["without_known_labels"] += 1
            continue
        if not os.path.isfile(path):
            counts["missing_images"] += 1
            continue
        with open(path, "rb") as image:
            data = image.read()
        counts["images"] += 1
        counts["positives"] += int((group.labels == 1).sum())
        counts["negatives"] += int((group.labels == -1).sum())
        example = {"image": data, "labels": group.labels,
                   "image/filename": f"{split}/{group.image_id}.jpg"}  # fmt: skip
        yield tally["written"], features.serialize_example(example)
        tally["written"] += 1
        progress.update(group.end)
        if tally["written"] == shard_size:
            tally["exhausted"] = False
            return


def _prepare_split(
    split: str, labels_file: str, image_dir: str, work: str, classes: LabelSet,
    features: tfds.features.FeaturesDict, shard_size: int, out: TextIO, every: float,
    stop_after_shards: int | None,
) -> dict[str, Any]:  # fmt: skip
    """Writes (or resumes writing) the shards of ``split``; returns its finished state."""
    from tensorflow_datasets.core import file_adapters

    state_path = os.path.join(work, f"{split}.json")
    stat = os.stat(labels_file)
    source = {"labels_file": os.path.abspath(labels_file), "size": stat.st_size,
              "mtime_ns": stat.st_mtime_ns, "classes": list(classes.mids), "shard_size": shard_size}  # fmt: skip
    with open(labels_file, "rb") as f:
        header_bytes = len(f.readline())  # The data start after the header and its line ending.
    state = {"source": source, "offset": header_bytes, "line": 1, "previous": "", "shards": [],
             "done": False, "counts": dict.fromkeys(
                 ("listed", "images", "missing_images", "without_known_labels", "conflicts",
                  "positives", "negatives"), 0)}  # fmt: skip
    if os.path.exists(state_path):
        with open(state_path) as f:
            saved = json.load(f)
        if saved["source"] != source:
            raise RuntimeError(
                f"An interrupted Open Images preparation in {work} was started from other files or "
                f"settings ({saved['source']['labels_file']}, {len(saved['source']['classes'])} "
                f"classes, shard_size {saved['source']['shard_size']}); delete {work} to start over."
            )
        state = saved
    index = {mid: c for c, mid in enumerate(classes.mids)}
    progress = _Progress(split, stat.st_size, state["offset"], out, every)
    groups = _groups(labels_file, state["offset"], state["line"], state["previous"], index)
    shards_this_run = 0
    while not state["done"]:
        if stop_after_shards is not None and shards_this_run >= stop_after_shards:
            raise KeyboardInterrupt(f"stopped after {shards_this_run} shards (stop_after_shards)")
        tally = {"counts": dict(state["counts"]), "end": state["offset"], "line": state["line"],
                 "previous": state["previous"], "exhausted": True, "written": 0}  # fmt: skip
        examples = _shard_examples(groups, image_dir, split, features, shard_size, tally, progress)
        shard = os.path.join(work, _shard_name(split, len(state["shards"])))
        file_adapters.ArrayRecordFileAdapter.write_examples(f"{shard}.tmp", examples)
        if tally["written"]:
            os.replace(f"{shard}.tmp", shard)
            state["shards"].append(tally["written"])
        else:
            os.remove(f"{shard}.tmp")
        state.update(offset=tally["end"], line=tally["line"], previous=tally["previous"],
                     counts=tally["counts"], done=tally["exhausted"])  # fmt: skip
        _write_json(state_path, state)
        shards_this_run += 1
    return state


def features(num_classes: int) -> tfds.features.FeaturesDict:
    """The stored features (module docstring)."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Tensor(shape=(), dtype=np.object_),
        "labels": tfds.features.Tensor(shape=(num_classes,), dtype=np.int8),
        "image/filename": tfds.features.Tensor(shape=(), dtype=np.str_),
    })  # fmt: skip


def prepare(
    label_set: str,
    data_dir: str | os.PathLike[str] | None = None,
    manual_dir: str | os.PathLike[str] | None = None,
    *,
    shard_size: int = 4096,
    out: TextIO | None = None,
    progress_every: float = 10.0,
    stop_after_shards: int | None = None,
) -> tfds.core.DatasetBuilder:
    """Prepares ``open_images/<label_set>`` (module docstring) unless it is prepared; resumes an
    interrupted preparation. Returns the prepared (read-only) builder.

    Args:
      label_set: 'boxable' or 'trainable'.
      data_dir: TFDS data directory (default ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      manual_dir: the downloaded files (`LAYOUT`; default `default_manual_dir`).
      shard_size: examples per array_record shard (a resumed preparation must use the same).
      out: where progress goes (default stderr); progress_every: seconds between lines.
      stop_after_shards: stop (KeyboardInterrupt) after writing this many shards in this call, as
        an interruption would (tests of the resumption).
    """
    target = dataset_dir(label_set, data_dir)
    if is_prepared(label_set, data_dir):
        return tfds.builder_from_directory(target)
    manual_dir = (
        default_manual_dir(label_set, data_dir) if manual_dir is None else os.fspath(manual_dir)
    )
    if not os.path.isdir(manual_dir):
        raise MissingFileError(
            f"Open Images manual directory {manual_dir} does not exist.\n"
            f"{prepare_instructions(label_set, data_dir)}"
        )
    classes = read_label_set(manual_dir, label_set)
    label_files = _label_files(manual_dir)
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}.")
    work = os.path.join(target, "_incomplete")
    os.makedirs(work, exist_ok=True)
    spec = features(len(classes.mids))
    states = {}
    for split in SPLITS:
        states[split] = _prepare_split(
            split, label_files[split], os.path.join(manual_dir, split), work, classes, spec,
            shard_size, out or sys.stderr, progress_every, stop_after_shards,
        )  # fmt: skip
    split_infos = []
    template = tfds.core.ShardedFileTemplate(
        data_dir=epath.Path(target), template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}",
        dataset_name=DATASET, filetype_suffix="array_record",
    )  # fmt: skip
    for split, state in states.items():
        lengths = state["shards"]
        if not lengths:
            continue
        num_bytes = 0
        for i in range(len(lengths)):
            final = template.replace(split=split).sharded_filepath(
                shard_index=i, num_shards=len(lengths)
            )
            staged = os.path.join(work, _shard_name(split, i))
            if os.path.exists(staged):  # Already moved if a previous call stopped in this loop.
                os.replace(staged, final)
            num_bytes += os.path.getsize(final)
        split_infos.append(tfds.core.SplitInfo(name=split, shard_lengths=lengths,
                                               num_bytes=num_bytes, filename_template=template))  # fmt: skip
    if not split_infos:
        raise MissingFileError(
            f"No listed Open Images image was found under {manual_dir}/<split>/<ImageID>.jpg "
            f"(counts: { {s: st['counts'] for s, st in states.items()} })."
        )
    counts = {f"{s}/{k}": v for s, st in states.items() for k, v in st["counts"].items()}
    tfds.folder_dataset.write_metadata(
        data_dir=target, features=spec, split_infos=split_infos, filename_template=template,
        check_data=False, homepage=HOMEPAGE,
        description=f"Open Images V6 human-verified image-level labels, {label_set} classes, "
                    "natively partial (+1 verified present, -1 verified absent, 0 unknown).",
        metadata=tfds.core.MetadataDict(
            class_names=list(classes.names), class_ids=list(classes.mids), counts=counts,
            files={**{s: os.path.basename(p) for s, p in label_files.items()},
                   "classes": list(classes.files)},
        ),
    )  # fmt: skip
    shutil.rmtree(work)
    return tfds.builder_from_directory(target)


def open_builder(label_set: str, data_dir: str | os.PathLike[str] | None = None) -> Any:
    """The prepared builder of ``open_images/<label_set>`` (`is_prepared` must hold)."""
    return tfds.builder_from_directory(dataset_dir(label_set, data_dir))
