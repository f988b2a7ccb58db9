"""grain input pipelines: the shuffled, augmented, checkpointable train loader and the evaluation batches.

Multi-host: the training order is one global order, a function of (seed, global position) over the
whole split (`GlobalOrderSampler`); global batch s is positions [s*B, (s+1)*B) of it, and each process
reads only its slice of each global batch (rows [p*b, (p+1)*b), b = B / processes, which are the rows
its devices hold in the mesh). So the global batches, and every result, are the same for every process
layout with the same devices, and the iterator position is the step. `sharding.host_to_global`
assembles the global arrays. Evaluation splits each split into contiguous per-process slices.
"""

import math
import sys
from collections.abc import Iterator
from typing import NamedTuple

import grain
import ml_collections
import numpy as np
from absl import logging

from mlrpl_jax.data import partial_labels as pl
from mlrpl_jax.data import reference_order, sources, transforms


def make_source(data: ml_collections.ConfigDict, split: str) -> sources.Source:
    """The dataset split named by `config.data`."""
    return sources.make_source(
        data.name, split, data_dir=data.data_dir, synthetic=data.synthetic.to_dict()
    )


class Splits(NamedTuple):
    """The sources of one experiment. `val` is None without a validation split."""

    train: sources.Source | sources.Subset
    val: sources.Source | sources.Subset | None
    test: sources.Source


def make_splits(data: ml_collections.ConfigDict) -> Splits:
    """Train, validation and test sources of `config.data`.

    Validation: `data.val_split` names a split of the dataset (e.g. 'validation'), or
    `data.val_fraction` > 0 carves that fraction out of the train split with `data.val_seed`
    (`sources.carve_out`; the train source is then the rest; with a Cole et al. labels file,
    their split of their image list, `sources.carve_out_as_listed`), or neither.
    With `data.drop_unlabeled`, images without any positive label leave every split first (the
    single-positive protocols' lists hold none: Cole et al.'s formatting scripts, NUS-WIDE's
    untagged images), and how many is logged.
    """

    def open_split(split):
        source = make_source(data, split)
        if not data.drop_unlabeled:
            return source
        keep = np.flatnonzero((source.labels_matrix() == 1).any(axis=1))
        logging.info("%s[%s]: dropped %d of %d images without a positive label (data.drop_unlabeled).",
                     data.name, split, len(source) - len(keep), len(source))  # fmt: skip
        return sources.Subset(source, keep, f"{source.split}[with positives]")

    train = open_split(data.train_split)
    val = None
    if data.val_split is not None:
        val = open_split(data.val_split)
    elif data.val_fraction > 0 and _cole_file(data) is not None:
        _, order = pl.load_cole_files(data.partial_labels_file)
        train, val = sources.carve_out_as_listed(
            train, order, data.val_fraction, data.val_seed, source=_cole_file(data)
        )
    elif data.val_fraction > 0:
        train, val = sources.carve_out(train, data.val_fraction, data.val_seed)
    return Splits(train, val, open_split(data.test_split))


def _cole_file(data: ml_collections.ConfigDict) -> str | None:
    """The images file of `data.partial_labels_file` when it is Cole et al.'s, else None."""
    if data.partial_labels_file is None:
        return None
    return pl.cole_images_file(data.partial_labels_file)


def _sizes(data: ml_collections.ConfigDict) -> tuple[int, tuple[int, ...], int]:
    return transforms.scaled_sizes(
        data.scale_size, data.crop_sizes, data.image_size, data.size_factor
    )


def scale_size(data: ml_collections.ConfigDict) -> int:
    """The train augmentation's first resize side after `size_factor`."""
    return _sizes(data)[0]


def image_size(data: ml_collections.ConfigDict) -> int:
    """The network input side after `size_factor`."""
    return _sizes(data)[2]


def make_mask_transform(
    data: ml_collections.ConfigDict, source, *, validation: bool = False
) -> transforms.MaskLabels:
    """The partial-label transform of the train split (from the setting or a labels file), or with
    `validation` that of the validation split (`data.val_labels='partial'`): the train split's
    setting and proportion, in 'hash' mode with a seed derived from `data.label_seed`, so that the
    val masks are not the train masks of the same example ids. In mode 'reference' the masks are
    the authors' (`reference_order`: their U's rows taken in their image order). A Cole et al.
    labels file (`partial_labels.cole_images_file`) gives the validation split's labels too: their
    validation images are carved from the same file."""
    fixed, seed, mode, rows = None, data.label_seed, data.mask_mode, None
    if validation and (_cole_file(data) is None or data.val_fraction == 0):
        seed = int(np.random.SeedSequence([data.label_seed, 0x7A1]).generate_state(1)[0] % 2**31)
        mode = "hash"
    elif data.partial_labels_file is not None:
        fixed = pl.load_partial_labels_file(
            data.partial_labels_file, len(source), source.num_classes, source.image_names
        )
    elif mode == "reference":
        rows = reference_order.rows_for(data.name, source.image_names(), data.reference_order_file)
    return transforms.MaskLabels(
        dataset=f"{data.name}[{source.split}]",
        num_examples=len(source),
        num_classes=source.num_classes,
        setting=data.setting,
        proportion=data.known_proportion,
        seed=seed,
        mode=mode,
        fixed_labels=fixed,
        reference_rows=rows,
        native_partial=sources.native_partial(source),
    )


class GlobalOrderSampler:
    """grain sampler of one process's records in the global training order.

    The global order is an endless stream of passes over the split, each a new permutation:
    position g holds record `keys[g]` of `grain.samplers.IndexSampler(N, shuffle=True, seed)` (a
    fresh permutation per pass) with the augmentation generator Philox(seed + g), so a single
    process reads exactly what an unsharded IndexSampler gives. Global batch s is positions
    [s*B, (s+1)*B); this process's i-th record is position
    g = (start_step + i // b) * B + process_index * b + i % b, with b = B / process_count.
    Pure (no state): grain's worker processes may read any index.
    """

    def __init__(self, num_records: int, seed: int, global_batch_size: int, process_index: int,
                 process_count: int, start_step: int = 0):  # fmt: skip
        if global_batch_size % process_count:
            raise ValueError(
                f"global batch {global_batch_size} does not split over {process_count} processes"
            )
        self._order = grain.samplers.IndexSampler(
            num_records=num_records, shuffle=True, num_epochs=None, seed=seed
        )
        self._seed = seed
        self._global_batch = global_batch_size
        self._local_batch = global_batch_size // process_count
        self._offset = process_index * self._local_batch
        self._start = start_step
        self._repr = (f"GlobalOrderSampler(num_records={num_records}, seed={seed}, "
                      f"global_batch_size={global_batch_size}, process_index={process_index}, "
                      f"process_count={process_count}, start_step={start_step})")  # fmt: skip

    def __len__(self) -> int:
        return sys.maxsize

    def __repr__(self) -> str:
        return self._repr

    def position(self, index: int) -> int:
        """The global stream position of this process's `index`-th record."""
        step, row = divmod(index, self._local_batch)
        return (self._start + step) * self._global_batch + self._offset + row

    def __getitem__(self, index: int) -> grain.RecordMetadata:
        g = self.position(index)
        return grain.RecordMetadata(
            index=index,
            record_key=self._order[g].record_key,
            rng=np.random.Generator(np.random.Philox(key=self._seed + g)),
        )


class TrainBatches:
    """Endless iterator of this process's train batches, stacked in the main process from the grain
    record stream.

    Stacking here rather than in grain's workers makes the batches independent of `worker_count`
    (grain batches within each worker, which changes batch composition with the worker count). The
    position is not state to checkpoint: a loader made with `start_step=s` yields global batch s
    first (`make_train_loader`).
    """

    def __init__(self, loader: grain.DataLoader, batch_size: int):
        self._records = iter(loader)
        self.batch_size = batch_size

    def __iter__(self) -> "TrainBatches":
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        records = [next(self._records) for _ in range(self.batch_size)]
        return {k: np.stack([r[k] for r in records]) for k in records[0]}


DEFAULT_CANVAS = 640  # COCO's and VOC's images fit (their longer side is at most 640 / 500)


def canvas_size(data: ml_collections.ConfigDict) -> int:
    """The side K of the host canvas with `data.resize_on='device'`: `data.canvas_size`, or when
    0 the synthetic scenes' image size, else `DEFAULT_CANVAS`."""
    if data.canvas_size > 0:
        return data.canvas_size
    if data.name == "synthetic_scenes":
        return data.synthetic.image_size
    return DEFAULT_CANVAS


def renders_on_device(data: ml_collections.ConfigDict) -> bool:
    """Whether train batches carry a canvas and a 'view' for the device (`ops.resample`)."""
    return data.resize_on == "device" and data.augment == "papers"


def _train_augment(data: ml_collections.ConfigDict):
    """`data.augment`: 'papers' (`transforms.TrainView` with `data.resize_on='device'`, else
    `transforms.TrainAugment`) or 'asl' (`transforms.AslAugment`, on the host)."""
    scale, crops, size = _sizes(data)
    if data.augment == "asl":
        return transforms.AslAugment(size, data.cutout_factor, data.randaugment_ops,
                                     data.randaugment_magnitude)  # fmt: skip
    if renders_on_device(data):
        return transforms.TrainView(scale, crops, size, canvas_size(data))
    return transforms.TrainAugment(scale, crops, size)


def train_batch_shapes(data: ml_collections.ConfigDict, batch_size: int,
                       num_classes: int) -> dict[str, tuple[tuple[int, ...], type]]:  # fmt: skip
    """{key: (shape, dtype)} of a train batch of `batch_size` (`make_train_loader`)."""
    c = num_classes
    shapes = {"labels": ((batch_size, c), np.int8), "example_id": ((batch_size,), np.int32),
              "full_labels": ((batch_size, c), np.uint8)}  # fmt: skip
    if renders_on_device(data):
        from mlrpl_jax.ops import resample  # lazy: the data layer does not import jax

        k = canvas_size(data)
        shapes["image"] = ((batch_size, k, k, 3), np.uint8)
        shapes["view"] = ((batch_size, len(resample.VIEW_FIELDS)), np.float32)
    else:
        size = image_size(data)
        shapes["image"] = ((batch_size, size, size, 3), np.uint8)
    return shapes


def _read_options(data: ml_collections.ConfigDict) -> grain.ReadOptions:
    """grain's record-reading threads (`data.read_threads`; 0 reads in the loading thread)."""
    return grain.ReadOptions(
        num_threads=data.read_threads, prefetch_buffer_size=64 * data.read_threads
    )


def train_operations(data: ml_collections.ConfigDict, source) -> list:
    """The per-record operations of the train loader: the partial labels (which reads and checks
    a labels file, `make_mask_transform`) and the augmentation. Built before anything is written,
    so that a bad labels file stops a run first."""
    return [make_mask_transform(data, source), _train_augment(data)]


def make_train_loader(
    data: ml_collections.ConfigDict,
    source,
    global_batch_size: int,
    seed: int,
    *,
    start_step: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    operations: list | None = None,
) -> TrainBatches:
    """An endless, shuffled (new permutation every pass), augmented iterator of this process's
    slices of the global batches `start_step`, `start_step + 1`, ... (`GlobalOrderSampler`).

    Batches: {'image': uint8 (b, S, S, 3), 'labels': int8 (b, C), 'example_id': int32 (b,),
    'full_labels': uint8 (b, C) (diagnostics only; absent for a natively partial dataset)} with
    b = global_batch_size / process_count; with `renders_on_device`, 'image' is the canvas
    uint8 (b, K, K, 3) and 'view' float32 (b, 6) says what the train step renders from it
    (`transforms.TrainView`, `train_state.model_input`); batches run across pass boundaries. The
    process index and count default to jax's; `operations` to `train_operations(data, source)`.
    """
    import jax

    if operations is None:
        operations = train_operations(data, source)
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    sampler = GlobalOrderSampler(
        len(source), seed, global_batch_size, process_index, process_count, start_step
    )
    loader = grain.DataLoader(
        data_source=source,
        sampler=sampler,
        shard_options=grain.sharding.NoSharding(),  # the sampler reads this process's slices
        operations=operations,
        worker_count=data.worker_count,
        read_options=_read_options(data),
    )
    return TrainBatches(loader, global_batch_size // process_count)


def eval_batches(
    data: ml_collections.ConfigDict,
    source,
    local_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    mask: transforms.MaskLabels | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """This process's evaluation batches, covering every example exactly once (no drop_last).

    Each process gets a contiguous slice of the split; the last batches are padded (valid=False) so that
    every process yields the same number of full-size batches.
    Batches: {'image': uint8 (b, S, S, 3), 'targets': int8 (b, C), 'valid': bool (b,)}; targets are
    the full labels {0, 1} (a natively partial dataset's own {-1, 0, 1}), or with `mask` the
    partial labels {-1, 0, 1} it gives.
    """
    bounds = np.linspace(0, len(source), process_count + 1).round().astype(int)
    longest = int(np.max(np.diff(bounds)))
    num_batches = math.ceil(longest / local_batch_size)
    start, stop = int(bounds[process_index]), int(bounds[process_index + 1])
    transform = transforms.EvalTransform(
        _sizes(data)[2], f"{data.name}[{source.split}]", mask, sources.native_partial(source)
    )
    dataset = (
        grain.MapDataset.source(source)[start:stop]
        .map(transform)
        .batch(local_batch_size, drop_remainder=False)
        .to_iter_dataset(_read_options(data))
    )
    if data.eval_worker_count > 0:
        dataset = dataset.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=data.eval_worker_count)
        )
    size = _sizes(data)[2]
    padding = {
        "image": np.zeros((local_batch_size, size, size, 3), np.uint8),
        "targets": np.zeros((local_batch_size, source.num_classes), np.int8),
        "valid": np.zeros((local_batch_size,), bool),
    }
    count = 0
    for batch in dataset:
        n = len(batch["valid"])
        yield {k: np.concatenate([v, padding[k][n:]]) for k, v in batch.items()}
        count += 1
    for _ in range(num_batches - count):
        yield padding
