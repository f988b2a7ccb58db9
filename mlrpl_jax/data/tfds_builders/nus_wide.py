"""`nus_wide`: NUS-WIDE's 81 concepts as a multi-label dataset (TFDS builder).

NUS-WIDE distributes labels and image lists, not images: the images are Flickr's, and every group
that uses it re-crawls them, so each has its own subset (the SPLC setup's 119,103 train images,
Cole et al.'s). The builder reads the official lists and ground truth and keeps, per split, the
listed images present in the user's image folder, in list order; listed images that are absent
are skipped and counted (``counts['<split>/missing_images']`` in the metadata), as every
re-crawled copy misses some. Images without any of the 81 concepts are kept and counted
(``<split>/without_labels``): the single-positive protocols leave them out
(``config.data.drop_unlabeled``), the full-label benchmarks keep them.

Files (the official NUS-WIDE release): ``Concepts81.txt`` (the 81 names, in label order),
``ImageList/TrainImagelist.txt`` and ``ImageList/TestImagelist.txt`` (one image path per line,
e.g. ``actor\\0001_2124494179.jpg``), ``Groundtruth/TrainTestLabels/Labels_<concept>_<Train|Test>.txt``
(one 0/1 per line, aligned with the image list), and the images under ``Flickr/`` at the listed
paths ('\\' or '/' separators). A label file whose length differs from its list's, a value other
than 0/1, or a missing file is an error naming the file.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from mlrpl_jax.data.tfds_builders import manual
from mlrpl_jax.errors import MissingFileError

NUM_CLASSES = 81
DATASET = "nus_wide"
SPLITS = {"train": "Train", "test": "Test"}

LAYOUT = """<manual_dir>/
  Concepts81.txt                      the 81 concept names, one per line, in label order
  ImageList/TrainImagelist.txt        train image paths, e.g. actor\\0001_2124494179.jpg
  ImageList/TestImagelist.txt         test image paths
  Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt, ..._Test.txt
                                      one 0/1 per line, aligned with the image list
  Flickr/<folder>/<image>.jpg         your copy of the images (absent ones are skipped, counted)"""


def _lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class NusWide(manual.ManualBuilder):
    """NUS-WIDE, 81 concepts (module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Initial release."}
    NUM_CLASSES = NUM_CLASSES
    LAYOUT = LAYOUT
    HOMEPAGE = "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html"
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Concepts81.txt, ImageList/ and Groundtruth/ come from the NUS-WIDE page (Groundtruth.zip, "
        "ImageList.zip, Concepts81.txt; a few MB); the images from your Flickr re-crawl or a copy "
        "shared by the protocol's authors (about 270k images listed; a re-crawl finds fewer). "
        "Prepared: about as large as the images; about 10 minutes per 100k images."
    )

    @classmethod
    def read_manual_dir(cls, manual_dir: str) -> manual.ManualData:
        required = ["Concepts81.txt", "Flickr/"] + [
            f"ImageList/{s}Imagelist.txt" for s in SPLITS.values()
        ]
        missing = manual.missing_files(manual_dir, required)
        if missing:
            raise MissingFileError(
                f"NUS-WIDE manual directory {manual_dir} lacks {', '.join(missing)}. Expected "
                f"layout:\n{LAYOUT}"
            )
        names = tuple(_lines(os.path.join(manual_dir, "Concepts81.txt")))
        if len(names) != NUM_CLASSES or len(set(names)) != NUM_CLASSES:
            raise ValueError(
                f"{manual_dir}/Concepts81.txt: expected {NUM_CLASSES} distinct concept names, got "
                f"{len(names)} ({len(set(names))} distinct)."
            )
        splits, counts = {}, {}
        for split, tag in SPLITS.items():
            paths = [p.replace("\\", "/") for p in
                     _lines(os.path.join(manual_dir, "ImageList", f"{tag}Imagelist.txt"))]  # fmt: skip
            labels = np.zeros((len(paths), NUM_CLASSES), np.uint8)
            for c, concept in enumerate(names):
                path = os.path.join(manual_dir, "Groundtruth", "TrainTestLabels",
                                    f"Labels_{concept}_{tag}.txt")  # fmt: skip
                if not os.path.exists(path):
                    raise MissingFileError(f"NUS-WIDE labels file {path} is missing.")
                values = _lines(path)
                if len(values) != len(paths) or not set(values) <= {"0", "1"}:
                    raise ValueError(
                        f"{path}: expected {len(paths)} lines of 0 or 1 (one per line of "
                        f"ImageList/{tag}Imagelist.txt), got {len(values)} lines with values "
                        f"{sorted(set(values))[:5]}."
                    )
                labels[:, c] = np.asarray(values, dtype=np.uint8)
            flickr = os.path.join(manual_dir, "Flickr")
            examples = [manual.Example(p, os.path.join(flickr, p), y)
                        for p, y in zip(paths, labels)
                        if os.path.isfile(os.path.join(flickr, p))]  # fmt: skip
            splits[split] = examples
            counts[f"{split}/listed"] = len(paths)
            counts[f"{split}/images"] = len(examples)
            counts[f"{split}/missing_images"] = len(paths) - len(examples)
            counts[f"{split}/without_labels"] = int(sum(not e.labels.any() for e in examples))
        if not any(splits.values()):
            raise MissingFileError(
                f"None of the listed NUS-WIDE images is under {manual_dir}/Flickr/ (expected e.g. "
                f"Flickr/{paths[0] if paths else 'actor/0001_2124494179.jpg'})."
            )
        return manual.ManualData(splits, names, counts)
