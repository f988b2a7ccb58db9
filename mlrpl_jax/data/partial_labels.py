"""Partial labels: seeded known-label masks turning full labels into int8 {-1, 0, 1} matrices.

Conventions:
  * Full labels are {0, 1} (1 = positive); {-1, 1} is also accepted and -1 is mapped to 0. A matrix
    mixing -1 and 0 is rejected: it looks like a partial-label matrix, where 0 means unknown.
  * Returned partial labels are int8 (n, C): -1 known negative, 0 unknown, +1 known positive.

Settings (`partial_labels(setting=...)`):
  * "pal" (partial labels): every (example, class) entry is kept with probability `proportion`,
    positives and negatives alike (the reference's `changeLabelProportion`, notes §4.2).
  * "ppl" (partial positive labels): each positive is kept with probability `proportion`; every
    negative becomes unknown.
  * "spl" (single positive label): one positive per example, chosen uniformly among its positives;
    everything else unknown; examples without positives are all unknown. `proportion` is ignored.
  * "fal" (full labels): everything known (full labels mapped to +-1). `proportion` is ignored.

Randomness (`mode`):
  * "hash" (default): a pure function of (seed, example id, class): identical across epochs,
    restarts, hosts, device counts, and for any order or subset of the rows. It is a two-level
    SplitMix64 (the seed and example id select a stream, the class indexes into it), giving a
    uniform U in [0, 1) per entry; an entry is kept iff U < proportion. "pal" and "ppl" share U, so
    for one seed the known positives of "ppl" are those of "pal", and raising `proportion` only
    adds known entries (the masks are nested). "spl" uses an independent U and keeps the positive
    with the smallest U.
  * "reference": bit-exact reproduction of the reference code for "pal": U = the (N, C) matrix of
    `np.random.RandomState(seed).random_sample((N, C))` (the stream of `np.random.seed(seed);
    np.random.random((N, C))`, reference seed 0) over the whole split in dataset order; the row of
    example id i is row i. "fal" needs no randomness and is accepted too; "ppl" and "spl" are not.
"""

import io
import os
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from etils import epath
from numpy.typing import ArrayLike

from mlrpl_jax.data import reference_order
from mlrpl_jax.errors import InputError, MissingFileError

SETTINGS = ("pal", "ppl", "spl", "fal")
MODES = ("hash", "reference")

# SplitMix64 constants (Steele, Lea and Flood 2014); the salts separate the random streams.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_SALT_KEEP = np.uint64(0x6B65_6570_6D61_736B)  # Streams for "pal" / "ppl".
_SALT_SINGLE = np.uint64(0x7370_6C5F_7069_636B)  # Streams for "spl".


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic); same shape."""
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def _hash_uniform(
    seed: int, example_ids: np.ndarray, num_classes: int, salt: np.uint64
) -> np.ndarray:
    """U in [0, 1) float64 (n, C), a pure function of (seed, example id, class index, salt).

    Args:
      seed: integer in [0, 2**64).
      example_ids: (n,) non-negative integer ids.
      num_classes: C.
      salt: selects an independent family of streams.

    Returns:
      (n, C) float64 uniforms with 53 random bits each.
    """
    with np.errstate(over="ignore"):
        seed_state = _mix64(np.asarray(seed, dtype=np.uint64) ^ salt)
        # One SplitMix64 stream per (seed, example): its state is the example's draw from the
        # seed's stream, and class c takes the (c + 1)-th output of the example's stream.
        ids = example_ids.astype(np.uint64)
        row_state = _mix64(seed_state + (ids + np.uint64(1)) * _GOLDEN)
        steps = (np.arange(num_classes, dtype=np.uint64) + np.uint64(1)) * _GOLDEN
        bits = _mix64(row_state[:, None] + steps[None, :])
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def _check_proportion(proportion: float, setting: str) -> float:
    """Returns `proportion` as a float; TypeError if not a number, ValueError if not in (0, 1]."""
    if isinstance(proportion, bool) or not isinstance(proportion, (int, float, np.number)):
        raise TypeError(
            f"proportion must be a number in (0, 1] for setting {setting!r}; got {proportion!r}."
        )
    if not 0.0 < float(proportion) <= 1.0:
        raise InputError(
            f"proportion must be in (0, 1] (the fraction of labels kept known) for setting "
            f"{setting!r}; got {proportion!r}."
        )
    return float(proportion)


def _check_int(value: int, name: str, low: int, high: int) -> int:
    """Returns `value` as an int; TypeError if not an integer, ValueError if not in [low, high)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {value!r}.")
    if not low <= int(value) < high:
        raise InputError(f"{name} must be in [{low}, {high}); got {value!r}.")
    return int(value)


def _positive_mask(full_labels: ArrayLike, example_ids: np.ndarray) -> np.ndarray:
    """Validates full labels ({0, 1} or {-1, 1}, shape (n, C)); returns bool (n, C) positives."""
    labels = np.asarray(full_labels)
    if labels.ndim != 2:
        raise InputError(f"full_labels must be 2-D (n, C); got shape {labels.shape}.")
    if labels.shape[0] != example_ids.shape[0]:
        raise InputError(
            f"full_labels has {labels.shape[0]} rows but example_ids has {example_ids.shape[0]} "
            f"entries; they must match (one id per row)."
        )
    if labels.dtype == np.bool_:
        return labels.copy()
    is_real = np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    if not is_real:
        raise InputError(f"full_labels must be numeric or bool; got dtype {labels.dtype}.")
    allowed = "full labels must be in {0, 1} or {-1, 1}"
    bad = ~((labels == -1) | (labels == 0) | (labels == 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"full_labels[{row}, {col}] = {labels[row, col].item()!r} (example id "
            f"{example_ids[row]}) is not a valid label; {allowed}."
        )
    has_minus = labels == -1
    if has_minus.any() and (labels == 0).any():
        row, col = np.argwhere(labels == 0)[0]
        m_row, m_col = np.argwhere(has_minus)[0]
        raise InputError(
            f"full_labels mixes -1 (e.g. [{m_row}, {m_col}]) and 0 (e.g. [{row}, {col}], example "
            f"id {example_ids[row]}); {allowed}. A matrix with 0 = unknown is already partial."
        )
    return labels == 1


def _check_example_ids(example_ids: ArrayLike) -> np.ndarray:
    """Validates example ids: 1-D non-negative integers; returns them as an int64 (n,) array."""
    ids = np.asarray(example_ids)
    if ids.ndim != 1:
        raise InputError(f"example_ids must be 1-D (n,); got shape {ids.shape}.")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise InputError(f"example_ids must be integers; got dtype {ids.dtype}.")
    ids = ids.astype(np.int64)
    if ids.size and ids.min() < 0:
        idx = int(np.argmax(ids < 0))
        raise InputError(f"example_ids must be >= 0; example_ids[{idx}] = {ids[idx]}.")
    return ids


def reference_keep_mask(
    num_examples: int, num_classes: int, proportion: float, seed: int = 0
) -> np.ndarray:
    """The reference's known-label mask for a whole split: `random_sample((N, C)) < proportion`.

    Same numbers as `np.random.seed(seed); np.random.random((N, C)) < proportion` in the reference
    `changeLabelProportion` (seed 0 there), without touching numpy's global random state. Compute it
    once per split and index it by example id.

    Args:
      num_examples: N, the size of the whole split in dataset order.
      num_classes: C.
      proportion: fraction of entries kept known, in (0, 1].
      seed: `np.random.RandomState` seed in [0, 2**32).

    Returns:
      (N, C) bool, True where the label is known.

    Raises:
      TypeError: if N, C or seed is not an integer or proportion not a number.
      ValueError: for a non-positive N or C, a proportion outside (0, 1] or a seed out of range.
    """
    num_examples = _check_int(num_examples, "num_examples", 1, 2**63)
    num_classes = _check_int(num_classes, "num_classes", 1, 2**63)
    proportion = _check_proportion(proportion, "pal")
    seed = _check_int(seed, "seed (mode 'reference', a RandomState seed)", 0, 2**32)
    uniform = np.random.RandomState(seed).random_sample((num_examples, num_classes))
    return uniform < proportion


def apply_keep_mask(positives: ArrayLike, keep: ArrayLike) -> np.ndarray:
    """Partial labels from full labels and a known-label mask.

    Args:
      positives: (n, C) full labels or bool; 1 / True is positive, anything else negative. Not
        validated.
      keep: (n, C) bool, True where the label is known.

    Returns:
      (n, C) int8: +1 known positive, -1 known negative, 0 unknown.
    """
    signed = np.where(np.asarray(positives) == 1, np.int8(1), np.int8(-1))
    return np.where(np.asarray(keep, dtype=bool), signed, np.int8(0)).astype(np.int8)


def partial_labels(
    full_labels: ArrayLike,
    setting: str,
    proportion: float,
    seed: int,
    example_ids: ArrayLike,
    *,
    mode: str = "hash",
    num_examples: int | None = None,
) -> np.ndarray:
    """Turns full labels into seeded partial labels (see the module docstring for the settings).

    Args:
      full_labels: (n, C) full labels of the examples `example_ids`, in {0, 1} or {-1, 1} (or bool).
      setting: "pal", "ppl", "spl" or "fal".
      proportion: fraction of labels kept known, in (0, 1]; used by "pal" and "ppl" only.
      seed: non-negative integer (< 2**64 in mode "hash", < 2**32 in mode "reference").
      example_ids: (n,) non-negative integer ids, one per row of `full_labels`; in mode "hash" the
        row of an example depends only on (seed, its id, setting, proportion).
      mode: "hash" (order-independent counter-based hash) or "reference" (the reference's global
        NumPy stream; "pal" and "fal" only).
      num_examples: mode "reference" only: N, the size of the whole split, whose random matrix
        (N, C) is indexed by example id. Defaults to n, in which case `example_ids` must be
        `arange(n)`.

    Returns:
      (n, C) int8 partial labels: +1 known positive, -1 known negative, 0 unknown.

    Raises:
      TypeError: if seed (or num_examples) is not an integer or proportion ("pal"/"ppl") is not a
        number.
      ValueError: for an unknown setting or mode, a proportion outside (0, 1] ("pal"/"ppl"), bad
        shapes, seeds or ids out of range, or label values outside {0, 1} / {-1, 1} (the message names the
        first offending (row, class), its value and its example id).
    """
    if setting not in SETTINGS:
        raise InputError(f"setting must be one of {SETTINGS}; got {setting!r}.")
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}; got {mode!r}.")
    ids = _check_example_ids(example_ids)
    positives = _positive_mask(full_labels, ids)
    n, num_classes = positives.shape
    if setting in ("pal", "ppl"):
        proportion = _check_proportion(proportion, setting)
    if mode == "hash" and num_examples is not None:
        raise InputError("num_examples is only used with mode='reference'.")
    seed_high = 2**32 if mode == "reference" else 2**64
    seed = _check_int(seed, f"seed (mode {mode!r})", 0, seed_high)

    if setting == "fal":
        return apply_keep_mask(positives, np.ones_like(positives))

    if mode == "reference":
        if setting != "pal":
            raise InputError(
                f"mode='reference' reproduces the reference code, which only has setting 'pal' "
                f"(and 'fal'); got setting {setting!r}. Use mode='hash'."
            )
        if num_examples is None:
            if not np.array_equal(ids, np.arange(n)):
                raise InputError(
                    "mode='reference' without num_examples needs example_ids == arange(n) (the "
                    "whole split in dataset order); pass num_examples=N to label a subset."
                )
            num_examples = n
        num_examples = _check_int(num_examples, "num_examples", 1, 2**63)
        if n and ids.max() >= num_examples:
            idx = int(np.argmax(ids >= num_examples))
            raise InputError(
                f"example_ids[{idx}] = {ids[idx]} is out of range for num_examples="
                f"{num_examples}; ids must be in [0, num_examples)."
            )
        keep = reference_keep_mask(num_examples, num_classes, proportion, seed)[ids]
        return apply_keep_mask(positives, keep)

    if setting in ("pal", "ppl"):
        keep = _hash_uniform(seed, ids, num_classes, _SALT_KEEP) < proportion
        if setting == "ppl":
            keep &= positives
        return apply_keep_mask(positives, keep)

    # "spl": the positive with the smallest per-(seed, example, class) uniform, i.e. a uniform
    # choice among the example's positives.
    uniform = _hash_uniform(seed, ids, num_classes, _SALT_SINGLE)
    chosen = np.argmin(np.where(positives, uniform, np.inf), axis=1)
    out = np.zeros((n, num_classes), dtype=np.int8)
    rows = np.flatnonzero(positives.any(axis=1))
    out[rows, chosen[rows]] = 1
    return out


def check_partial_labels(labels: ArrayLike, *, source: str) -> np.ndarray:
    """Validates an externally supplied partial-label matrix (e.g. loaded from a file).

    Args:
      labels: (N, C) partial labels in {-1, 0, 1} (any numeric dtype holding those values).
      source: where the labels come from (e.g. the file path); quoted in error messages.

    Returns:
      (N, C) int8 copy of `labels`.

    Raises:
      ValueError: naming `source` if `labels` is not 2-D or not numeric, or contains a value
        outside {-1, 0, 1} (the message gives the first offending (row, col) and its value).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(
            f"{source}: partial labels must be a 2-D (N, C) matrix; got shape {labels.shape}."
        )
    is_real = np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    if not is_real:
        raise InputError(
            f"{source}: partial labels must be numeric with values in {{-1, 0, 1}}; got dtype "
            f"{labels.dtype}."
        )
    bad = ~((labels == -1) | (labels == 0) | (labels == 1))
    if bad.any():
        row, col = np.argwhere(bad)[0]
        value = labels[row, col].item()
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # Text files are parsed as floats; show "2", not "2.0".
        raise InputError(
            f"{source}: invalid partial label {value!r} at (row {row}, col "
            f"{col}) (0-based); allowed values are -1 (known negative), 0 (unknown) and 1 (known "
            f"positive)."
        )
    return labels.astype(np.int8)


def _load_npy(path: str) -> np.ndarray:
    """The array in the `.npy` file `path` (any path `etils.epath` handles, e.g. gs://)."""
    with epath.Path(path).open("rb") as f:
        return np.load(f, allow_pickle=False)


def _is_list_file(path: str) -> bool:
    """Whether a text file is an image list ("name,i j k" lines), not a matrix of numbers."""
    with epath.Path(path).open() as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                first = line.replace(",", " ").split()[0]
                try:
                    float(first)
                except ValueError:
                    return True
                return False
    return False


def load_list_file(
    path: str | os.PathLike, image_names: Sequence[str], num_classes: int
) -> np.ndarray:
    """Partial labels from a protocol list file, mapped onto our examples by image name.

    The single-positive / missing-label lists of the SPLC setup (``coco_train_singlelabel.txt``,
    ``coco_train_0.4left.txt``, ``nus_train_singlelabel.txt``) and SCPNet (``voc_*.txt``,
    ``cub_*.txt``) hold one line per image: ``<image path>,<i> <j> ...``, the 0-based indices of
    its observed positive classes. Those become +1; every other entry of a listed image is unknown
    (0): the setups' losses treat unknowns as negatives themselves. Images are matched by file
    name without directory or extension (a name may contain commas: the indices follow the last
    one); every one of ours must be listed (the lists hold only images with a positive: use
    data.drop_unlabeled), listed images we do not have are skipped.

    Args:
      path: the list file.
      image_names: (N,) our examples' file names (`Source.image_names`), example id order.
      num_classes: C.

    Returns:
      (N, C) int8 in {0, 1}.
    """
    path = os.fspath(path)
    names: list[str] = []
    positives: list[list[int]] = []
    with epath.Path(path).open() as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            name, comma, rest = line.rpartition(",")  # the last comma: a file name may hold one
            try:
                if not (comma and name):
                    raise ValueError("no '<image>,' before the indices")
                classes = [int(v) for v in rest.split()]
            except ValueError as e:
                raise InputError(
                    f"{path}:{number}: expected '<image>,<class index> ...', got {line!r}."
                ) from e
            bad = [c for c in classes if not 0 <= c < num_classes]
            if bad:
                raise InputError(
                    f"{path}:{number}: class index {bad[0]} of {name!r} is outside [0, "
                    f"{num_classes}); the file must be of this dataset's {num_classes} classes."
                )
            names.append(name)
            positives.append(classes)
    rows = reference_order.reference_rows(image_names, names, source=path, hint=_UNLISTED_HINT)
    labels = np.zeros((len(rows), num_classes), np.int8)
    for example, row in enumerate(rows):
        labels[example, positives[row]] = 1
    return labels


_UNLISTED_HINT = (
    "the protocols' files hold only images with a positive label: set "
    "config.data.drop_unlabeled=True (and check that the file is of this split)"
)
_COLE_LABELS_SUFFIX = "_labels_obs.npy"


def cole_images_file(path: str | os.PathLike) -> str | None:
    """The image list that names the rows of a Cole et al. observed-label file, else None.

    Cole et al.'s formatting scripts (``preproc/format_*.py`` then
    ``generate_observed_labels.py``) write ``formatted_<phase>_labels_obs.npy``, an (M, C) matrix
    in {-1, 0, 1} (one uniformly drawn positive per image with ``RandomState(1200)``), beside
    ``formatted_<phase>_images.npy``, the (M,) image file names of its rows. A labels file whose
    name ends in ``_labels_obs.npy`` is read with the images file of the same prefix and mapped
    onto our examples by image name; any other ``.npy`` file is in our example id order.
    """
    path = os.fspath(path)
    if not path.endswith(_COLE_LABELS_SUFFIX):
        return None
    return path[: -len(_COLE_LABELS_SUFFIX)] + "_images.npy"


def load_cole_files(path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(labels (M, C) int8, image names (M,)) of a Cole et al. observed-label file, in their order.

    Raises:
      FileNotFoundError: the images file beside `path` is missing (says which).
      ValueError: the two files disagree in length, or a label is outside {-1, 0, 1}.
    """
    path = os.fspath(path)
    images = cole_images_file(path)
    if images is None:
        raise InputError(f"{path} is not a Cole et al. '*{_COLE_LABELS_SUFFIX}' file.")
    if not epath.Path(images).exists():
        raise MissingFileError(
            f"{path} is a Cole et al. observed-label file; its rows are named by {images}, which "
            "does not exist. Copy the formatted_<phase>_images.npy that their formatting script "
            "wrote next to it."
        )
    names = [str(n) for n in _load_npy(images)]
    labels = check_partial_labels(_load_npy(path), source=path)
    if labels.ndim != 2 or len(labels) != len(names):
        raise InputError(
            f"{path}: {labels.shape} labels for the {len(names)} images of {images}; the two "
            "files must come from the same run of Cole et al.'s scripts."
        )
    return labels, names


def load_partial_labels_file(
    path: str | os.PathLike,
    num_examples: int,
    num_classes: int,
    image_names: Callable[[], Sequence[str]] | None = None,
) -> np.ndarray:
    """Loads a partial-label matrix from a `.npy` file, a text matrix or a protocol list file.

    Text matrices hold one row of C values per example in example id order, separated by commas
    and/or whitespace (the reference's files are comma-separated rows of values in {-1, 0, 1});
    blank lines and `#` comments are skipped, and values such as "1.0" or "-1.000000e+00" are
    accepted. A text file whose first field is not a number is a protocol list file
    (`load_list_file`), and a ``*_labels_obs.npy`` file is Cole et al.'s (`cole_images_file`):
    both are mapped by image name through `image_names`.

    Args:
      path: `.npy` file, or any other extension for text.
      num_examples: N, the expected number of rows.
      num_classes: C, the expected number of columns.
      image_names: returns our examples' file names; needed by list and Cole et al. files.

    Returns:
      (N, C) int8 partial labels in {-1, 0, 1}.

    Raises:
      InputError (a ValueError): naming the file if it cannot be parsed, has a shape other than
        (N, C), holds a value outside {-1, 0, 1} (with its 0-based (row, col)), or holds no known
        label at all.
      MissingFileError (a FileNotFoundError): the file does not exist.
    """
    path = os.fspath(path)
    if not epath.Path(path).exists():
        raise MissingFileError(f"config.data.partial_labels_file={path} does not exist.")
    if cole_images_file(path) is not None:
        if image_names is None:
            raise InputError(f"{path} is named by image; it needs the examples' image names.")
        labels, names = load_cole_files(path)
        labels = labels[reference_order.reference_rows(
            image_names(), names, source=path, hint=_UNLISTED_HINT)]  # fmt: skip
    elif path.endswith(".npy"):
        labels = _load_npy(path)
    elif _is_list_file(path):
        if image_names is None:
            raise InputError(f"{path} is an image list file; it needs the examples' image names.")
        labels = load_list_file(path, image_names(), num_classes)
    else:
        text = epath.Path(path).read_text().replace(",", " ")
        try:
            with warnings.catch_warnings():
                # An empty file warns; the shape check below reports it.
                warnings.simplefilter("ignore", UserWarning)
                labels = np.loadtxt(io.StringIO(text), dtype=np.float64, comments="#", ndmin=2)
        except ValueError as e:
            raise InputError(f"{path}: could not parse partial labels ({e}).") from e
    labels = check_partial_labels(labels, source=path)
    if labels.shape != (num_examples, num_classes):
        raise InputError(
            f"{path}: expected partial labels of shape (N, C) = ({num_examples}, {num_classes}); "
            f"got {labels.shape}."
        )
    if not labels.any():
        raise InputError(
            f"{path}: holds no known label (every entry is 0 = unknown), so every method's loss "
            "would be 0; the convention is 1 known positive, -1 known negative, 0 unknown (full "
            "{0, 1} labels y convert as 2 * y - 1)."
        )
    return labels
