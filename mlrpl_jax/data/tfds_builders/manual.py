"""What the builders of raw files in a manual directory share (VG-200, CUB-200-2011 attributes,
NUS-WIDE).

A dataset that cannot be downloaded by TFDS (a licence, a form, a re-crawl) is placed by the user
in a *manual directory*; its builder validates the directory completely (`read_manual_dir`: every
required file, every listed image, every label) before anything is written, then TFDS writes
``array_record`` files into a temporary directory renamed on success, so an interrupted
preparation leaves nothing half-written. Reading needs neither TensorFlow nor the raw files.

Stored features, per example: ``image`` (the file's bytes as on disk, not re-encoded),
``labels`` (uint8 (C,) multi-hot), ``image/filename`` (the image's path relative to the image
folder, '/'-separated). Examples are stored in the order `read_manual_dir` lists them
(``disable_shuffling``): the protocols' order. Class names and the counts the builder reports
(e.g. images listed but missing, images without any label) go into the dataset's metadata.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core.utils import file_utils


class Example(NamedTuple):
    """One image of a split: its name (stored as ``image/filename``), file path, labels (C,)."""

    name: str
    path: str
    labels: np.ndarray


class ManualData(NamedTuple):
    """A validated manual directory: split -> examples in order, class names, counts to report,
    and other metadata to store (e.g. where the class names came from)."""

    splits: dict[str, list[Example]]
    class_names: tuple[str, ...]
    counts: dict[str, int]
    extra_metadata: dict[str, Any] | None = None


class ManualBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A multi-label dataset read from a manual directory (module docstring). Subclasses set
    ``NUM_CLASSES``, ``LAYOUT`` (the expected files, shown in errors and instructions),
    ``HOMEPAGE`` and ``MANUAL_DOWNLOAD_INSTRUCTIONS``, and implement `read_manual_dir`."""

    NUM_CLASSES: ClassVar[int]
    LAYOUT: ClassVar[str]
    HOMEPAGE: ClassVar[str]

    @classmethod
    def read_manual_dir(cls, manual_dir: str) -> ManualData:
        raise NotImplementedError

    def __init__(self, *, file_format: str | tfds.core.FileFormat | None = None, **kwargs: Any):
        """Initialises the builder; ``file_format`` defaults to ``array_record``."""
        super().__init__(file_format=file_format or tfds.core.FileFormat.ARRAY_RECORD, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                # Encoded bytes as stored on disk; a string Tensor needs no TensorFlow.
                "image": tfds.features.Tensor(shape=(), dtype=np.object_),
                "labels": tfds.features.Tensor(shape=(self.NUM_CLASSES,), dtype=np.uint8),
                "image/filename": tfds.features.Tensor(shape=(), dtype=np.str_),
            }),
            homepage=self.HOMEPAGE,
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )  # fmt: skip

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        data = self.read_manual_dir(os.fspath(dl_manager.manual_dir))
        self.info.metadata["class_names"] = list(data.class_names)
        self.info.metadata["counts"] = dict(data.counts)
        self.info.metadata.update(data.extra_metadata or {})
        return {split: self._generate_examples(examples) for split, examples in data.splits.items()}

    def _generate_examples(self, examples: Sequence[Example]) -> Iterator[tuple[int, dict]]:
        for index, example in enumerate(examples):
            with open(example.path, "rb") as f:
                image = f.read()
            labels = np.asarray(example.labels, np.uint8)
            yield index, {"image": image, "labels": labels, "image/filename": example.name}


def make_builder(
    cls: type[ManualBuilder], data_dir: str | os.PathLike[str] | None = None
) -> ManualBuilder:
    """The builder (``array_record``) in ``data_dir`` (default: TFDS's default)."""
    return cls(data_dir=None if data_dir is None else os.fspath(data_dir))


def default_manual_dir(
    cls: type[ManualBuilder], data_dir: str | os.PathLike[str] | None = None
) -> str:
    """TFDS's default manual directory of ``cls``: ``<data_dir>/downloads/manual``."""
    root, _ = file_utils.get_data_dir_and_dataset_dir(
        given_data_dir=None if data_dir is None else os.fspath(data_dir),
        builder_name=cls.name,
        config_name=None,
        version=cls.VERSION,
    )
    return os.path.join(os.fspath(root), "downloads", "manual")


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether ``builder``'s files are complete (its ``dataset_info.json`` exists)."""
    return (epath.Path(builder.data_path) / "dataset_info.json").exists()


def prepare(
    cls: type[ManualBuilder],
    data_dir: str | os.PathLike[str] | None = None,
    manual_dir: str | os.PathLike[str] | None = None,
) -> ManualBuilder:
    """Prepares ``cls`` as ``array_record`` from ``manual_dir`` (default `default_manual_dir`) if
    it is not prepared yet, validating the directory first; returns the prepared builder."""
    builder = make_builder(cls, data_dir)
    if is_prepared(builder):
        return builder
    manual_dir = default_manual_dir(cls, data_dir) if manual_dir is None else os.fspath(manual_dir)
    cls.read_manual_dir(manual_dir)  # Fail early, with clear messages.
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
    )
    return make_builder(cls, data_dir)


def class_names(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
    """The class names stored with a prepared dataset."""
    return tuple(builder.info.metadata["class_names"])


def prepare_instructions(
    cls: type[ManualBuilder], dataset: str, data_dir: str | os.PathLike[str] | None = None
) -> str:
    """How to prepare ``dataset`` (its `scripts/prepare_data.py` name) in ``data_dir``."""
    manual_dir = default_manual_dir(cls, data_dir)
    dir_flag = f" --data_dir {os.fspath(data_dir)}" if data_dir is not None else ""
    return (
        f"Prepare it once (no network access and no TensorFlow needed): put the files in a "
        f"manual directory laid out as\n{cls.LAYOUT}\n{cls.MANUAL_DOWNLOAD_INSTRUCTIONS}\n"
        f"Then run:\n  python scripts/prepare_data.py {dataset} --manual_dir {manual_dir}"
        f"{dir_flag}"
    )


def missing_files(root: str, required: Sequence[str]) -> list[str]:
    """The entries of ``required`` (paths relative to ``root``) that do not exist."""
    return [f for f in required if not os.path.exists(os.path.join(root, f))]
