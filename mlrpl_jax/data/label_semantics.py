"""Label semantics: what the SSGRL family of models needs from the data besides images and labels.

SSGRL, SST, HST, SARB and DSRB decouple image features per class with *category embeddings*
``(C, E)`` (the semantic decoupling's queries, notes §1.6) and propagate them over a *label graph*
``(C, C)`` (the gated GNN's adjacency, notes §1.7). `label_semantics` is the entry point the trainer
calls; it computes both once per (dataset, partial-label setting, embeddings) and caches them on
disk.

Category embeddings
===================
* From a file (``config.data.label_embeddings``), `load_label_embeddings`:

  - ``.npy``: a ``(C, E)`` array, one row per class in class-index order (the reference's
    ``vectors.npy`` / ``voc07_vector.npy`` / ``vg_200_vector.npy`` from the authors' data.zip,
    300-d GloVe).
  - Anything else: a GloVe-format text file, one ``word v1 ... vE`` line per word, any ``E``
    (``glove.6B.300d.txt``, ``glove.840B.300d.txt``; a word2vec text header line ``"<count>
    <E>"`` is skipped). Each class name is lower-cased, a few run-together VOC names are
    spelled out (`NAME_ALIASES`: ``diningtable`` -> ``dining table``, ...), and the name is split
    on spaces, underscores and hyphens; the class embedding is the mean of the vectors of its
    words found in the file (``"traffic light"`` = mean of ``traffic`` and ``light``). A word
    matches an exactly equal (lower-case) entry, else the first entry equal to it ignoring case
    (for cased files such as 840B). Words missing from the file are skipped with a warning; a
    class none of whose words is found is an error. (How the authors embedded multi-word names
    is not visible in their code, notes §1.6; averaging is the common choice.) Placeholder names
    (``class_000`` ..., e.g. VG-200 without a names file) are refused: give a ``.npy`` instead.
    Only the lines of the needed words are parsed, so multi-GB files stream in one pass.

* Without a file, `fallback_label_embeddings`, in this order:

  1. ``synthetic_scenes``: embeddings built from what the generator knows about each class
     (`synthetic_scenes.class_world`): one-hot shape (weight 1), one-hot texture (weight 0.7) and
     colour ``(s cos 2 pi h, s sin 2 pi h, v)`` (weight 0.5), rows L2-normalised: a semantic prior
     in which classes of the same shape are closest, then those sharing a texture, then similar
     colours (the order in which the generator makes these attributes reliable: shape and texture
     are fixed per class, colours are jittered). 15 dims, zero-padded to ``E``.
  2. Otherwise a deterministic random orthonormal set (fixed numpy seed; ``C`` orthonormal rows when
     ``C <= E``, unit-norm random rows otherwise), with a warning: the semantic decoupling then
     has no semantic prior. Supply GloVe vectors through ``config.data.label_embeddings``.

  The fallback never depends on what is installed or cached on a machine: the same config gives
  the same embeddings everywhere.

* ``config.data.label_embeddings = 'sentence-transformers:<model>'`` (e.g.
  ``'sentence-transformers:sentence-transformers/all-MiniLM-L6-v2'``) embeds the class names with
  that sentence-transformers model, which must already be in the local Hugging Face cache: no
  download is ever attempted (``HF_HUB_OFFLINE=1``, ``TRANSFORMERS_OFFLINE=1`` and
  ``local_files_only=True``); a missing package or model is an error that says so.

  Embeddings of another width than ``E`` are fitted to ``E`` deterministically (`_fit_dim`): zero
  padding when narrower; when wider, coordinates in the top-``E`` right singular directions (with
  fixed signs), which keeps all inner products exactly when the ``C`` rows span at most ``E``
  dimensions.

Adjacency
=========
`cooccurrence_adjacency` reproduces the reference (notes §1.7) on the *train partial labels*, so the
graph depends on the known-label proportion: ``N[i, j]`` = number of training images whose partial
label is +1 for both ``i`` and ``j`` (negatives and unknowns ignored), ``A[i, :] = N[i, :] /
N[i, i]`` (``A[i, j]`` = P(j known positive | i known positive)), diagonal 1. Deliberate deviation:
the reference leaves a NaN row for a class without any known positive (its ``np.nan_to_num``
result is discarded); here that row is 0 except ``A[i, i] = 1``. The models use ``A`` as the
in-matrix and ``A.T`` as the out-matrix. The partial labels are exactly those the train pipeline
feeds the model (`train_partial_labels` = `transforms.MaskLabels`, vectorised).

Cache
=====
Results are stored in ``<cache_dir>/label_semantics/`` (``config.data.cache_dir``; None =
``$MLRPL_JAX_CACHE`` or ``~/.cache/mlrpl_jax``), one ``.npz`` file per key: dataset (plus the
synthetic parameters for ``synthetic_scenes``, and the data_dir), train split and size, class
names, setting, known_proportion, label_seed, mask_mode, the partial-labels file's content hash,
the embeddings file's path, mtime and size (or the sentence-transformers model name), the
embedding dim. The file name holds a hash of the key and
the file holds the key itself, which is checked on reading. Files are written to a temporary file
and renamed, so a killed run never leaves a corrupt entry; an unreadable entry is recomputed with a
warning. Delete the directory to force a recomputation. The files read and the cache may be any
path `etils.epath` handles (``gs://...``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from etils import epath

from mlrpl_jax.data import partial_labels as pl
from mlrpl_jax.data import pipeline
from mlrpl_jax.errors import InputError, MissingFileError
from mlrpl_jax.paths import is_local

CACHE_ENV = "MLRPL_JAX_CACHE"
SENTENCE_PREFIX = "sentence-transformers:"
# Run-together class names (VOC) spelled out as words before the GloVe / sentence lookup.
NAME_ALIASES: Mapping[str, str] = {
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
}

_CACHE_FORMAT = 2
_RANDOM_SEED = 20240917
_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_PLACEHOLDER = re.compile(r"class_\d+")
_WORD_SPLIT = re.compile(r"[\s_\-]+")
_HASH_CHUNK_ROWS = 1 << 16
# Elements (rows x C) per adjacency matmul: 64 MB of float32, and < 2**24 rows keeps sums exact.
_MATMUL_CHUNK_ELEMENTS = 1 << 24
_SYNTHETIC_WEIGHTS = (1.0, 0.7, 0.5)  # shape, texture, colour blocks.


class LabelSemantics(NamedTuple):
    """Category embeddings and label graph of one training configuration.

    Attributes:
        embeddings: (C, E) float32 category embeddings, rows in class-index order.
        adjacency: (C, C) float32 co-occurrence adjacency (see the module docstring).
        embedding_source: Where the embeddings came from, in words.
    """

    embeddings: np.ndarray
    adjacency: np.ndarray
    embedding_source: str


# --------------------------------------------------------------------------------------------
# Category embeddings.
# --------------------------------------------------------------------------------------------


def class_words(name: str) -> list[str]:
    """The lower-case words of a class name (after `NAME_ALIASES`), split on spaces, _ and -."""
    lowered = name.lower().strip()
    lowered = NAME_ALIASES.get(lowered, lowered)
    return [w for w in _WORD_SPLIT.split(lowered) if w]


def _is_placeholder(class_names: Sequence[str]) -> bool:
    return all(_PLACEHOLDER.fullmatch(n) for n in class_names)


def load_label_embeddings(path: str | os.PathLike[str], class_names: Sequence[str]) -> np.ndarray:
    """Loads category embeddings from a ``.npy`` (C, E) or a GloVe-format text file.

    Args:
        path: The file (``config.data.label_embeddings``); see the module docstring.
        class_names: The C class names in class-index order.

    Returns:
        (C, E) float32.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Wrong shape, non-finite values, an unparsable text line, placeholder class
            names (text only), or classes none of whose words is in the text file (all listed).
    """
    path = os.fspath(path)
    if not epath.Path(path).is_file():
        raise MissingFileError(
            f"config.data.label_embeddings={path!r}: no such file (expected a (C, E) .npy or a "
            "GloVe-format text file; set it to None to use the fallback embeddings)."
        )
    num_classes = len(class_names)
    if path.endswith(".npy"):
        with epath.Path(path).open("rb") as f:
            array = np.load(f, allow_pickle=False)
        if array.ndim != 2 or array.shape[0] != num_classes:
            raise InputError(
                f"{path}: expected category embeddings of shape (C, E) with C = {num_classes} "
                f"(one row per class, in class-index order); got shape {array.shape}."
            )
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"{path}: expected a numeric array, got dtype {array.dtype}.")
        array = array.astype(np.float32)
    else:
        array = _load_glove(path, class_names)
    if not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0, 0])
        raise InputError(f"{path}: non-finite value in the embedding of class {row}.")
    return array


def _load_glove(path: str, class_names: Sequence[str]) -> np.ndarray:
    """(C, E) float32: per class the mean vector of its words found in a GloVe text file."""
    if _is_placeholder(class_names):
        raise InputError(
            f"{path}: the class names are placeholders ({class_names[0]}, ...), which cannot be "
            "looked up in a word-vector file; give config.data.label_embeddings a (C, E) .npy "
            "(for VG-200 the authors' vg_200_vector.npy), or prepare the dataset with its class "
            "names."
        )
    words = [class_words(n) for n in class_names]
    needed = {w for ws in words for w in ws}
    exact: dict[str, np.ndarray] = {}
    folded: dict[str, np.ndarray] = {}
    dim = None
    with epath.Path(path).open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            line = raw.decode("utf-8", errors="replace")
            head = line.split(maxsplit=1)
            if not head:
                continue
            if dim is None:
                tokens = line.split()
                if lineno == 1 and len(tokens) == 2 and all(t.isdigit() for t in tokens):
                    continue  # word2vec text header "<count> <dim>".
                dim = len(tokens) - 1
                if dim < 1:
                    raise InputError(f"{path}:{lineno}: expected 'word v1 ... vE', got {line!r}.")
            if head[0].lower() not in needed:
                continue
            tokens = line.split()
            if len(tokens) < dim + 1:
                raise InputError(
                    f"{path}:{lineno}: expected a word and {dim} values, got {len(tokens)} tokens."
                )
            word = " ".join(tokens[:-dim])
            key = word.lower()
            if key not in needed or key in exact or (word != key and key in folded):
                continue
            try:
                vector = np.asarray(tokens[-dim:], dtype=np.float32)
            except ValueError as err:
                raise InputError(f"{path}:{lineno}: could not parse the vector ({err}).") from err
            (exact if word == key else folded)[key] = vector
    if dim is None:
        raise InputError(f"{path}: no word vectors found (empty file?).")
    found = {**folded, **exact}
    missing_classes, partial = [], []
    rows = []
    for name, ws in zip(class_names, words, strict=True):
        vectors = [found[w] for w in ws if w in found]
        if not vectors:
            missing_classes.append(f"{name!r} (words {ws})")
            continue
        if len(vectors) < len(ws):
            partial.append(f"{name!r} (missing {[w for w in ws if w not in found]})")
        rows.append(np.mean(vectors, axis=0))
    if missing_classes:
        raise InputError(
            f"{path}: no vector for any word of {len(missing_classes)} class(es): "
            f"{', '.join(missing_classes)}. Use a word-vector file that has them, or a (C, E) .npy."
        )
    if partial:
        warnings.warn(
            f"{path}: some words are missing; these classes average the words found: "
            f"{', '.join(partial)}.",
            stacklevel=3,
        )
    return np.stack(rows).astype(np.float32)


def _fit_dim(features: np.ndarray, dim: int) -> np.ndarray:
    """(C, F) -> (C, dim) float32: zero padding, or the top-``dim`` right singular directions."""
    features = np.asarray(features, dtype=np.float64)
    num_features = features.shape[1]
    if num_features > dim:
        _, _, vt = np.linalg.svd(features, full_matrices=False)
        basis = vt[:dim].T  # (F, dim)
        # Fix each direction's sign (SVD's is arbitrary): largest-magnitude entry positive.
        signs = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(basis.shape[1])])
        features = features @ (basis * np.where(signs == 0, 1.0, signs))
        num_features = features.shape[1]
    out = np.zeros((features.shape[0], dim), dtype=np.float32)
    out[:, :num_features] = features
    return out


def synthetic_attribute_embeddings(num_classes: int) -> np.ndarray:
    """(C, 15) float32 unit rows: weighted one-hot shape, one-hot texture and hsv colour."""
    from mlrpl_jax.data.tfds_builders import synthetic_scenes  # Lazy: imports TFDS.

    world = synthetic_scenes.class_world(num_classes)
    hue, sat, val = (np.asarray(x, dtype=np.float64) for x in world.hsv.T)
    w_shape, w_texture, w_colour = _SYNTHETIC_WEIGHTS
    angle = 2.0 * np.pi * hue
    colour = np.stack([sat * np.cos(angle), sat * np.sin(angle), val], axis=1)
    features = np.concatenate(
        [
            w_shape * np.eye(len(synthetic_scenes.SHAPES))[world.shape],
            w_texture * np.eye(len(synthetic_scenes.TEXTURES))[world.texture],
            w_colour * colour,
        ],
        axis=1,
    )
    return (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)


def random_orthonormal_embeddings(num_classes: int, dim: int) -> np.ndarray:
    """(C, E) float32 from a fixed seed: orthonormal rows if C <= E, else unit-norm rows."""
    rng = np.random.default_rng([_RANDOM_SEED, num_classes, dim])
    if num_classes <= dim:
        q, r = np.linalg.qr(rng.standard_normal((dim, num_classes)))
        signs = np.where(np.diag(r) < 0, -1.0, 1.0)
        return (q * signs).T.astype(np.float32)
    rows = rng.standard_normal((num_classes, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def sentence_embeddings(class_names: Sequence[str], model_name: str) -> np.ndarray:
    """(C, F) float32 embeddings of the class names from a locally cached sentence-transformers
    model (`config.data.label_embeddings = 'sentence-transformers:<model>'`); never downloads.

    Raises:
        ImportError / RuntimeError: the package or the model is missing, naming the fix.
    """
    if importlib.util.find_spec("sentence_transformers") is None:
        raise ImportError(
            f"config.data.label_embeddings={SENTENCE_PREFIX + model_name!r} needs the "
            "sentence-transformers package (pip install sentence-transformers)."
        )
    saved = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update({key: "1" for key in _OFFLINE_ENV})
    try:
        import sentence_transformers

        try:
            model = sentence_transformers.SentenceTransformer(
                model_name, device="cpu", local_files_only=True
            )
        except Exception as err:
            raise RuntimeError(
                f"config.data.label_embeddings={SENTENCE_PREFIX + model_name!r}: the model is not "
                f"in the local Hugging Face cache ({err}); download it once where there is "
                "network access, or give a GloVe file / .npy instead."
            ) from err
        texts = [" ".join(class_words(n)) for n in class_names]
        array = np.asarray(model.encode(texts, convert_to_numpy=True), dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != len(class_names) or not np.isfinite(array).all():
            raise RuntimeError(f"{model_name} returned embeddings of shape {array.shape}.")
        return array
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _random_warning(num_classes: int, dim: int) -> str:
    return (
        f"No category embeddings given (config.data.label_embeddings is None) and no semantic "
        f"fallback available: using {num_classes} deterministic random orthonormal {dim}-d "
        "vectors. The SSGRL-style semantic decoupling then has no semantic prior (unrelated and "
        "related classes look alike). Supply word vectors through config.data.label_embeddings: "
        "a GloVe text file (e.g. glove.6B.300d.txt) or a (C, E) .npy such as the authors' "
        "vectors.npy."
    )


def fallback_label_embeddings(
    class_names: Sequence[str],
    dim: int,
    dataset_name: str,
    synthetic_params: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, str]:
    """Category embeddings when no file is given (order: module docstring).

    Args:
        class_names: The C class names in class-index order.
        dim: E, the width of the result (``config.data.label_embedding_dim``).
        dataset_name: ``config.data.name``; ``'synthetic_scenes'`` selects the attribute
            embeddings.
        synthetic_params: ``config.data.synthetic`` (its ``num_classes`` must equal C), or None.

    Returns:
        ``((C, E) float32, description of the source)``.
    """
    num_classes, dim = len(class_names), int(dim)
    if dim < 1:
        raise InputError(f"config.data.label_embedding_dim must be >= 1, got {dim}.")
    if dataset_name == "synthetic_scenes":
        if synthetic_params and int(synthetic_params["num_classes"]) != num_classes:
            raise InputError(
                f"synthetic num_classes={synthetic_params['num_classes']} but {num_classes} "
                "class names were given."
            )
        features = synthetic_attribute_embeddings(num_classes)
        description = (
            f"synthetic_scenes class attributes (one-hot shape, one-hot texture, hsv colour; "
            f"{features.shape[1]} -> {dim} dims)"
        )
        return _fit_dim(features, dim), description
    warnings.warn(_random_warning(num_classes, dim), stacklevel=2)
    description = f"random orthonormal {dim}-d vectors (no semantic prior; seed {_RANDOM_SEED})"
    return random_orthonormal_embeddings(num_classes, dim), description


# --------------------------------------------------------------------------------------------
# Partial labels and adjacency.
# --------------------------------------------------------------------------------------------


def cooccurrence_adjacency(partial_labels: np.ndarray) -> np.ndarray:
    """The reference's label co-occurrence adjacency from partial labels (module docstring).

    Args:
        partial_labels: (N, C) in {-1, 0, 1} (int8 or any numeric dtype).

    Returns:
        (C, C) float32 ``A`` with ``A[i, j] = N[i, j] / N[i, i]`` and a unit diagonal; a class
        without known positives gets a zero row with ``A[i, i] = 1`` (the reference: NaN).
    """
    labels = pl.check_partial_labels(partial_labels, source="cooccurrence_adjacency")
    num_examples, num_classes = labels.shape
    counts = np.zeros((num_classes, num_classes), dtype=np.float64)
    # One float32 matmul per chunk of rows (a single one up to 83,886 rows at C = 200): its 0/1
    # products summed over < 2**24 rows are exact; chunks are accumulated in float64.
    chunk = max(1, _MATMUL_CHUNK_ELEMENTS // max(num_classes, 1))
    for start in range(0, num_examples, chunk):
        positives = (labels[start : start + chunk] == 1).astype(np.float32)
        counts += positives.T @ positives
    diag = np.diag(counts).copy()
    adjacency = np.divide(counts, diag[:, None], out=np.zeros_like(counts), where=diag[:, None] > 0)
    np.fill_diagonal(adjacency, 1.0)
    return adjacency.astype(np.float32)


def train_partial_labels(data_config: Any, source: Any) -> np.ndarray:
    """The train split's partial labels, exactly as `transforms.MaskLabels` gives them per example.

    Args:
        data_config: ``config.data`` (setting, known_proportion, label_seed, mask_mode,
            partial_labels_file, name, train_split).
        source: The train `sources.Source` (``labels_matrix()``, ``len``, ``num_classes``).

    Returns:
        (N, C) int8 in {-1, 0, 1}; row ``i`` equals ``MaskLabels.map`` of example ``i``.
    """
    mask = pipeline.make_mask_transform(data_config, source)
    full = np.asarray(source.labels_matrix())
    out = np.empty(full.shape, dtype=np.int8)
    for start in range(0, len(full), _HASH_CHUNK_ROWS):
        stop = min(start + _HASH_CHUNK_ROWS, len(full))
        out[start:stop] = mask.partial(full[start:stop], np.arange(start, stop))
    return out


# --------------------------------------------------------------------------------------------
# Entry point with the on-disk cache.
# --------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | os.PathLike[str] | None) -> str:
    """``cache_dir``, else ``$MLRPL_JAX_CACHE``, else ``~/.cache/mlrpl_jax``."""
    if cache_dir is None:
        cache_dir = os.environ.get(CACHE_ENV) or os.path.join("~", ".cache", "mlrpl_jax")
    return _abspath(cache_dir)


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with epath.Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _abspath(path: str | os.PathLike[str] | None) -> str | None:
    """A local path made absolute (``~`` expanded); a URI (``gs://...``) as it is."""
    if path is None:
        return None
    path = os.fspath(path)
    return os.path.abspath(os.path.expanduser(path)) if is_local(path) else path


def _stat(path: str) -> dict[str, int]:
    """{'mtime_ns', 'size'} of a file: os.stat's for a local one (what the cache keys always
    held), else epath's (mtime in whole seconds)."""
    if is_local(path):
        stat = os.stat(path)
        return {"mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
    stat = epath.Path(path).stat()
    return {"mtime_ns": int(stat.mtime) * 10**9, "size": int(stat.length)}


def cache_key(data_config: Any, train_source: Any) -> dict[str, Any]:
    """Everything `label_semantics`' result depends on (module docstring), JSON-serialisable."""
    synthetic = train_source.name == "synthetic_scenes"
    labels_file = _abspath(data_config.partial_labels_file)
    names_file = None if labels_file is None else pl.cole_images_file(labels_file)
    order_file = _abspath(data_config.get("reference_order_file"))
    spec = data_config.label_embeddings
    sentence = spec if spec is not None and spec.startswith(SENTENCE_PREFIX) else None
    embeddings_file = None if sentence else _abspath(spec)
    embeddings_stat = None
    if embeddings_file is not None and epath.Path(embeddings_file).is_file():
        embeddings_stat = _stat(embeddings_file)
    return {
        "format": _CACHE_FORMAT,
        "dataset": train_source.name,
        "synthetic": data_config.synthetic.to_dict() if synthetic else None,
        "data_dir": _abspath(data_config.data_dir),
        "train_split": train_source.split,
        "num_examples": len(train_source),
        "class_names_sha256": hashlib.sha256(
            "\n".join(train_source.class_names).encode()
        ).hexdigest(),
        "setting": data_config.setting,
        "known_proportion": float(data_config.known_proportion),
        "label_seed": int(data_config.label_seed),
        "mask_mode": data_config.mask_mode,
        "partial_labels_file": None
        if labels_file is None
        else {"path": labels_file, "sha256": _file_sha256(labels_file)},
        "partial_labels_images_file": None  # names the rows of a Cole et al. file
        if names_file is None or not epath.Path(names_file).is_file()
        else {"path": names_file, "sha256": _file_sha256(names_file)},
        "reference_order_file": None
        if order_file is None or data_config.mask_mode != "reference"
        else {"path": order_file, "sha256": _file_sha256(order_file)},
        "label_embeddings": None
        if embeddings_file is None
        else {"path": embeddings_file, **(embeddings_stat or {})},
        "label_embedding_dim": int(data_config.label_embedding_dim),
        "sentence_transformers": sentence,
    }


def _cache_path(root: str, dataset: str, key_json: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", dataset).strip("-")
    digest = hashlib.sha256(key_json.encode()).hexdigest()[:24]
    return os.fspath(epath.Path(root) / "label_semantics" / f"{slug}_{digest}.npz")


def _read_cache(path: str, key_json: str, num_classes: int) -> LabelSemantics | None:
    """The cached entry, or None if absent, for another key, or unreadable (with a warning)."""
    if not epath.Path(path).exists():
        return None
    try:
        with epath.Path(path).open("rb") as f, np.load(f, allow_pickle=False) as data:
            if str(data["key"]) != key_json:
                return None
            embeddings = np.array(data["embeddings"])
            adjacency = np.array(data["adjacency"])
            source = str(data["embedding_source"])
        ok = (
            embeddings.dtype == np.float32
            and embeddings.ndim == 2
            and embeddings.shape[0] == num_classes
            and adjacency.dtype == np.float32
            and adjacency.shape == (num_classes, num_classes)
        )
        if not ok:
            raise ValueError("unexpected array shapes or dtypes")
    except Exception as err:  # noqa: BLE001 - corrupt, truncated or foreign file: recompute.
        warnings.warn(f"Ignoring unreadable label-semantics cache {path} ({err}).", stacklevel=3)
        return None
    return LabelSemantics(embeddings, adjacency, source)


def _write_cache(path: str, key_json: str, result: LabelSemantics) -> None:
    """Writes atomically (temp file + rename); failures only warn."""
    path = epath.Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}.npz"
        with tmp.open("wb") as f:
            np.savez(
                f,
                embeddings=result.embeddings,
                adjacency=result.adjacency,
                embedding_source=np.array(result.embedding_source),
                key=np.array(key_json),
            )
            f.flush()
            if is_local(path):
                os.fsync(f.fileno())
        tmp.replace(path)
        tmp = None
    except OSError as err:
        warnings.warn(f"Could not write the label-semantics cache {path} ({err}).", stacklevel=3)
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()


def compute_label_semantics(data_config: Any, train_source: Any) -> LabelSemantics:
    """`label_semantics` without the cache."""
    adjacency = cooccurrence_adjacency(train_partial_labels(data_config, train_source))
    path = data_config.label_embeddings
    if path is not None and path.startswith(SENTENCE_PREFIX):
        model_name = path[len(SENTENCE_PREFIX) :]
        array = sentence_embeddings(train_source.class_names, model_name)
        dim = data_config.label_embedding_dim
        embeddings = _fit_dim(array, dim)
        source = (
            f"sentence-transformers {model_name!r} embeddings of the class names "
            f"({array.shape[1]} -> {dim} dims)"
        )
    elif path is not None:
        embeddings = load_label_embeddings(path, train_source.class_names)
        kind = ".npy" if os.fspath(path).endswith(".npy") else "GloVe text"
        source = f"{kind} file {_abspath(path)}"
    else:
        synthetic = train_source.name == "synthetic_scenes"
        embeddings, source = fallback_label_embeddings(
            train_source.class_names,
            data_config.label_embedding_dim,
            train_source.name,
            synthetic_params=data_config.synthetic.to_dict() if synthetic else None,
        )
    return LabelSemantics(embeddings, adjacency, source)


def label_semantics(data_config: Any, train_source: Any) -> LabelSemantics:
    """Category embeddings and adjacency for training on ``train_source``, cached on disk.

    Args:
        data_config: ``config.data``.
        train_source: The train split's `sources.Source` (``name``, ``split``, ``class_names``,
            ``labels_matrix()``); read only on a cache miss.

    Returns:
        `LabelSemantics`: embeddings (C, E) float32, adjacency (C, C) float32, and a description
        of the embeddings' source.
    """
    key_json = json.dumps(cache_key(data_config, train_source), sort_keys=True)
    path = _cache_path(cache_root(data_config.cache_dir), train_source.name, key_json)
    num_classes = len(train_source.class_names)
    cached = _read_cache(path, key_json, num_classes)
    if cached is not None:
        if cached.embedding_source.startswith("random"):
            warnings.warn(_random_warning(num_classes, cached.embeddings.shape[1]), stacklevel=2)
        return cached
    result = compute_label_semantics(data_config, train_source)
    _write_cache(path, key_json, result)
    return result
