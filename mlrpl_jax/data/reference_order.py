"""The authors' example order, so that `mask_mode='reference'` gives their partial-label matrix.

The reference generator (`changeLabelProportion`, ``shared/reference/hcp_mlr_pl_notes.md`` §4.2)
draws U = ``np.random.seed(0); np.random.random((N, C))`` over the whole train split in *its*
dataset's iteration order and keeps entry (i, c) iff U[i, c] < p. That order is

* COCO 2014: the ``"images"`` array of ``annotations/instances_train2014.json``
  (pycocotools' ``coco.imgs``, insertion-ordered);
* VOC 2007: the lines of ``ImageSets/Main/trainval.txt`` (ascending image ids);
* VG-200: the lines of the authors' ``train_list_500.txt``.

TFDS stores COCO and VOC examples in its own order, so example id i is not the authors' i-th image.
`reference_rows` maps each of our examples, by image file name, to its row of the authors' U; the
mask transform then takes U's rows in that order. ``config.data.reference_order_file`` names the
order file (the annotation JSON or a list file); without it VOC uses the ascending file names
(which is trainval.txt's order), VG-200 the stored order (the builder keeps the list order), and
COCO asks for the annotation file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from mlrpl_jax.errors import InputError, MissingFileError

# Datasets whose order is known without a file: 'sorted' file names, or the 'stored' order.
DEFAULT_ORDERS = {"voc/2007": "sorted", "vg200": "stored", "synthetic_scenes": "stored"}


def stem(name: str) -> str:
    """A file name's key: its base name without the extension ("a/b/000005.jpg" -> "000005")."""
    base = os.path.basename(name.replace("\\", "/").strip())
    return os.path.splitext(base)[0]


def read_order_file(path: str | os.PathLike[str]) -> list[str]:
    """The authors' image order from a COCO annotation JSON (its ``images[*].file_name``) or a
    text list (one image name or id per line, e.g. VOC's trainval.txt, VG's train_list_500.txt;
    anything after the first whitespace or comma on a line is ignored; blank lines skipped)."""
    path = os.fspath(path)
    if not epath.Path(path).exists():
        raise MissingFileError(
            f"config.data.reference_order_file={path} does not exist; give the authors' order: "
            "COCO annotations/instances_train2014.json, VOC 2007 ImageSets/Main/trainval.txt or "
            "VG-200 train_list_500.txt."
        )
    if path.endswith(".json"):
        with epath.Path(path).open() as f:
            try:
                images = json.load(f)["images"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(
                    f"{path}: not a COCO annotation file (need an 'images' array of objects with "
                    f"'file_name'): {e!r}"
                ) from e
        try:
            return [str(image["file_name"]) for image in images]
        except (KeyError, TypeError) as e:
            raise InputError(f"{path}: an entry of 'images' has no 'file_name': {e!r}") from e
    names = []
    with epath.Path(path).open() as f:
        for line in f:
            line = line.replace(",", " ").split()
            if line:
                names.append(line[0])
    if not names:
        raise InputError(f"{path}: the order file lists no image.")
    return names


def reference_rows(
    names: Sequence[str],
    order: Sequence[str],
    *,
    source: str,
    hint: str = "it must list every image of the train split (is it the file of the same split "
    "and dataset?)",
) -> np.ndarray:
    """Row of each of our examples in the authors' order, matched by file name without extension.

    Args:
      names: (N,) our examples' file names (`Source.image_names`), example id order.
      order: (M,) the authors' image names or ids in their order (M >= N: the authors' U has M
        rows; rows of images we do not have are drawn and unused, as theirs would be).
      source: where `order` comes from, for error messages.
      hint: how to fix a file that lacks some of our images, appended to that error.

    Returns:
      (N,) int64: example id i <-> row rows[i] of U.
    """
    keys = [stem(n) for n in order]
    index: dict[str, int] = {}
    for row, key in enumerate(keys):
        if key in index:
            raise InputError(f"{source}: image {key!r} is listed twice (rows {index[key]}, {row}).")
        index[key] = row
    ours = [stem(n) for n in names]
    missing = [n for n in ours if n not in index]
    if missing:
        raise InputError(
            f"{source}: {len(missing)} of our {len(ours)} images are not listed, e.g. "
            f"{missing[:3]}; {hint}."
        )
    return np.asarray([index[n] for n in ours], dtype=np.int64)


def rows_for(
    dataset: str, names: Sequence[str], order_file: str | os.PathLike[str] | None
) -> tuple[np.ndarray, int]:
    """(rows (N,), M): our examples' rows in the authors' U of M rows (module docstring)."""
    if order_file is not None:
        order = read_order_file(order_file)
        return reference_rows(names, order, source=os.fspath(order_file)), len(order)
    default = DEFAULT_ORDERS.get(dataset)
    if default == "stored":
        return np.arange(len(names), dtype=np.int64), len(names)
    if default == "sorted":
        order = sorted(names, key=stem)
        return reference_rows(names, order, source=f"{dataset} (ascending file names)"), len(names)
    raise InputError(
        f"config.data.mask_mode='reference' on {dataset} needs the authors' image order: set "
        "config.data.reference_order_file to "
        + (
            "annotations/instances_train2014.json (the COCO 2014 download's annotation file)."
            if dataset.startswith("coco")
            else "a list of the train images in the authors' order (one name per line)."
        )
    )
