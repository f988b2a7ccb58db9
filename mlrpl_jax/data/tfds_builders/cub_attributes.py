"""`cub_attributes`: CUB-200-2011's 312 binary attributes as a multi-label dataset (TFDS builder).

The single-positive protocols (Cole et al.'s ``format_cub.py``, the LargeLoss setup, SCPNet's lists)
use the 312 per-image attributes of CUB-200-2011 as labels: attribute a of image i is positive iff
``is_present`` is 1 in ``attributes/image_attribute_labels.txt`` (certainty is ignored). Splits are
the official ``train_test_split.txt`` (5,994 train / 5,794 test), each in ``images.txt`` order.
Class names are the attribute names of ``attributes.txt`` (e.g. ``has_bill_shape::curved_(up_or_
down)``), for prompts and label semantics turned into words by `class_names`.

Parsing: lines are split on whitespace; ``image_attribute_labels.txt`` is read by its first three
fields (image id, attribute id, is_present), since a few rows of the official file carry extra
fields. Every image must have all 312 attributes, every image of ``images.txt`` a split, and every
image file must exist; violations are errors naming the file and the first offending entries.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from mlrpl_jax.data.tfds_builders import manual
from mlrpl_jax.errors import MissingFileError

NUM_CLASSES = 312
DATASET = "cub"

_ROOT = "CUB_200_2011"
_REQUIRED = (
    f"{_ROOT}/images.txt",
    f"{_ROOT}/train_test_split.txt",
    f"{_ROOT}/attributes/image_attribute_labels.txt",
    f"{_ROOT}/images/",
)
# attributes.txt sits beside CUB_200_2011/ in the official archive; copies elsewhere are accepted.
_NAMES_CANDIDATES = (
    "attributes.txt",
    f"{_ROOT}/attributes.txt",
    f"{_ROOT}/attributes/attributes.txt",
)

LAYOUT = """<manual_dir>/                         (CUB_200_2011.tgz extracted)
  attributes.txt                      the 312 attribute names ("1 has_bill_shape::curved_...")
  CUB_200_2011/images.txt             "<image id> <path under images/>"
  CUB_200_2011/train_test_split.txt   "<image id> <1 train | 0 test>"
  CUB_200_2011/attributes/image_attribute_labels.txt
                                      "<image id> <attribute id> <is_present> <certainty> <time>"
  CUB_200_2011/images/                the 11,788 images, one folder per species"""


def _rows(path: str, min_fields: int) -> list[list[str]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < min_fields:
                raise ValueError(
                    f"{path}:{number}: expected at least {min_fields} fields, got {line.strip()!r}."
                )
            rows.append(fields)
    return rows


def _int(value: str, path: str, what: str) -> int:
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"{path}: {what} {value!r} is not an integer.") from e


def read_attribute_names(manual_dir: str) -> tuple[str, ...]:
    for candidate in _NAMES_CANDIDATES:
        path = os.path.join(manual_dir, candidate)
        if os.path.exists(path):
            rows = _rows(path, 2)
            ids = [_int(r[0], path, "attribute id") for r in rows]
            if ids != list(range(1, NUM_CLASSES + 1)):
                raise ValueError(f"{path}: expected attribute ids 1..{NUM_CLASSES} in order.")
            return tuple(r[1] for r in rows)
    raise MissingFileError(
        f"CUB manual directory {manual_dir} has no attributes.txt (looked for "
        f"{', '.join(_NAMES_CANDIDATES)}). Expected layout:\n{LAYOUT}"
    )


class CubAttributes(manual.ManualBuilder):
    """CUB-200-2011 attributes (module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    NUM_CLASSES = NUM_CLASSES
    LAYOUT = LAYOUT
    HOMEPAGE = "https://www.vision.caltech.edu/datasets/cub_200_2011/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "CUB_200_2011.tgz (1.1 GB; 1.2 GB extracted) from the Caltech-UCSD Birds-200-2011 page "
        "(https://www.vision.caltech.edu/datasets/cub_200_2011/), extracted in the manual "
        "directory. Prepared: about 1.2 GB, a few minutes."
    )

    @classmethod
    def read_manual_dir(cls, manual_dir: str) -> manual.ManualData:
        missing = manual.missing_files(manual_dir, _REQUIRED)
        if missing:
            raise MissingFileError(
                f"CUB manual directory {manual_dir} lacks {', '.join(missing)}. Expected layout:"
                f"\n{LAYOUT}"
            )
        names = read_attribute_names(manual_dir)
        root = os.path.join(manual_dir, _ROOT)
        images_path = os.path.join(root, "images.txt")
        images = [(_int(r[0], images_path, "image id"), r[1]) for r in _rows(images_path, 2)]
        split_path = os.path.join(root, "train_test_split.txt")
        is_train = {
            _int(r[0], split_path, "image id"): _int(r[1], split_path, "split flag")
            for r in _rows(split_path, 2)
        }
        labels_path = os.path.join(root, "attributes", "image_attribute_labels.txt")
        row_of = {image_id: row for row, (image_id, _) in enumerate(images)}
        labels = np.zeros((len(images), NUM_CLASSES), np.uint8)
        seen = np.zeros((len(images), NUM_CLASSES), bool)
        for fields in _rows(labels_path, 3):
            image_id, attribute, present = (_int(v, labels_path, "field") for v in fields[:3])
            if image_id not in row_of or not 1 <= attribute <= NUM_CLASSES or present not in (0, 1):
                raise ValueError(
                    f"{labels_path}: bad row {' '.join(fields)!r} (image ids come from images.txt, "
                    f"attribute ids are 1..{NUM_CLASSES}, is_present 0 or 1)."
                )
            labels[row_of[image_id], attribute - 1] = present
            seen[row_of[image_id], attribute - 1] = True
        if not seen.all():
            row, attribute = np.argwhere(~seen)[0]
            raise ValueError(
                f"{labels_path}: image {images[row][0]} has no row for attribute {attribute + 1} "
                f"({int((~seen).sum())} (image, attribute) rows missing in all)."
            )
        no_split = [image_id for image_id, _ in images if image_id not in is_train]
        if no_split:
            raise ValueError(f"{split_path}: no split for image ids {no_split[:5]}.")
        absent = [p for _, p in images if not os.path.isfile(os.path.join(root, "images", p))]
        if absent:
            raise MissingFileError(
                f"{len(absent)} image(s) of {images_path} are missing from {root}/images, e.g. "
                f"{absent[:5]}."
            )
        splits: dict[str, list[manual.Example]] = {"train": [], "test": []}
        for row, (image_id, path) in enumerate(images):
            split = "train" if is_train[image_id] == 1 else "test"
            full = os.path.join(root, "images", path)
            splits[split].append(manual.Example(path, full, labels[row]))
        counts = {f"{k}/images": len(v) for k, v in splits.items()}
        counts.update({f"{k}/without_labels": int(sum(not e.labels.any() for e in v))
                       for k, v in splits.items()})  # fmt: skip
        return manual.ManualData(splits, names, counts)


def prompt_name(attribute: str) -> str:
    """An attribute name as words: "has_bill_shape::curved_(up_or_down)" -> "bill shape curved
    (up or down)"."""
    group, _, value = attribute.partition("::")
    group = group.removeprefix("has_").replace("_", " ")
    return f"{group} {value.replace('_', ' ')}".strip()
