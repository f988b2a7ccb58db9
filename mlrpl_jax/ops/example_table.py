"""Per-example tables: an (N, C) array indexed by example id, sharded over the mesh's data axis.

Methods that keep a value per (train example, class) — the imbalance method's pseudo-label table,
ROLE's label estimates, LargeLoss's permanent corrections — store it as one table in their
`method_state` (or, when it is learned, in ``params['method']``), declare its sharding with
`SHARDING_RULE`-style rules in `Method.state_sharding`, and read / write the batch's rows inside the
jitted step with `gather` / `scatter`.

Sharding: the table's rows are split over `sharding.DATA_AXIS` (``PartitionSpec('data', None)``),
so each of D devices holds N_pad * C * itemsize / D bytes, and Open Images scale (5.6M x 600) fits
without replicating it. Under jit, XLA partitions the row gather as a masked local gather plus an
all-reduce of the (B, C) result, and the row scatter as a local masked update from the all-gathered
(B,) ids and (B, C) values: only batch-sized data crosses devices, never the table
(`tests/test_example_table.py` checks the compiled memory; `scripts/benchmark_example_table.py`
measures the overhead).

Storage (`dtype`):
  * 'float32': exact;
  * 'bfloat16': 8 significant bits; a value v is stored with |error| <= 2^-8 |v| (relative
    0.4%), any real value can be stored. The bits are held as a uint16 array (bitcast), because
    XLA:CPU converts a bfloat16 operand of a scatter to float32 as a whole (a temporary of twice
    the local shard); as uint16 the update is in place;
  * 'uint8': values in [0, 1] only (probabilities, {0, 1} labels), quantised to k / 255 by
    rounding: |error| <= 1 / 510 ~ 0.002, exact for 0, 1 and 0.5 +- 1/510 (0.5 is stored as
    128 / 255 = 0.50196). Values outside [0, 1] are clipped.
Rows are padded to a multiple of `ROW_MULTIPLE` so that any power-of-two device count up to it
divides them; padding rows are never addressed by a valid example id.
"""

import contextlib
import contextvars
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from mlrpl_jax.sharding import DATA_AXIS

STORAGE_DTYPES = ("float32", "bfloat16", "uint8")
ROW_MULTIPLE = 1024
# The sharding of a table: rows over the data axis.
PARTITION = P(DATA_AXIS, None)
_UINT8_SCALE = 255.0


def padded_rows(num_examples: int, multiple: int = ROW_MULTIPLE) -> int:
    """N rounded up to a multiple of `multiple`."""
    return -(-num_examples // multiple) * multiple


def _check_dtype(dtype: str) -> None:
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"table storage dtype {dtype!r}: must be one of {STORAGE_DTYPES}.")


# The array dtype that holds each storage dtype.
HELD_AS = {"float32": np.float32, "bfloat16": np.uint16, "uint8": np.uint8}


def storage_dtype(table: jax.Array) -> str:
    """The storage dtype ('float32' | 'bfloat16' | 'uint8') of a table."""
    return {np.dtype(v): k for k, v in HELD_AS.items()}[np.dtype(table.dtype)]


def encode(values: jax.Array, dtype: str) -> jax.Array:
    """float values -> the stored representation (module docstring); jnp, for use in a step."""
    _check_dtype(dtype)
    if dtype == "uint8":
        return jnp.round(jnp.clip(values, 0.0, 1.0) * _UINT8_SCALE).astype(jnp.uint8)
    if dtype == "bfloat16":
        return jax.lax.bitcast_convert_type(jnp.asarray(values, jnp.bfloat16), jnp.uint16)
    return jnp.asarray(values, jnp.float32)


def decode(stored: jax.Array) -> jax.Array:
    """The stored representation -> float32 values."""
    if stored.dtype == jnp.uint8:
        return stored.astype(jnp.float32) / _UINT8_SCALE
    if stored.dtype == jnp.uint16:
        return jax.lax.bitcast_convert_type(stored, jnp.bfloat16).astype(jnp.float32)
    return stored.astype(jnp.float32)


def _encode_host(values: np.ndarray, dtype: str) -> np.ndarray:
    """`encode` in numpy (host memory, chunk by chunk by the caller), in float32 as on device."""
    values = np.asarray(values, np.float32)
    if dtype == "uint8":
        return np.round(np.clip(values, 0.0, 1.0) * _UINT8_SCALE).astype(np.uint8)
    if dtype == "bfloat16":
        return values.astype(jnp.bfloat16).view(np.uint16)
    return values


_CHUNK_ROWS = 1 << 16


_ABSTRACT = contextvars.ContextVar("mlrpl_abstract_tables", default=False)


@contextlib.contextmanager
def abstract_tables() -> Iterator[None]:
    """Within it, the host-table builders (`build`, `init`, `full`, `from_partial_labels`)
    return the table's `jax.ShapeDtypeStruct` and allocate nothing; their row source may then be
    a ShapeDtypeStruct (N, C) too. `mlrpl_jax.plan` builds a method's state this way, so a paper
    config's tables (Open Images: 5.6M x 600) are planned without their memory."""
    token = _ABSTRACT.set(True)
    try:
        yield
    finally:
        _ABSTRACT.reset(token)


def _abstract(num_rows: int, num_classes: int, dtype: str, multiple: int) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((padded_rows(num_rows, multiple), num_classes), HELD_AS[dtype])


def build(
    source: np.ndarray, to_values, dtype: str = "float32", multiple: int = ROW_MULTIPLE
) -> np.ndarray:
    """The padded, encoded host table of `to_values(rows)` (float32) for every chunk of rows of
    `source` (N, C), chunk by chunk (no full-size float32 intermediate)."""
    _check_dtype(dtype)
    if _ABSTRACT.get():
        return _abstract(*source.shape, dtype, multiple)
    source = np.asarray(source)
    n, c = source.shape
    table = np.zeros((padded_rows(n, multiple), c), HELD_AS[dtype])
    for start in range(0, n, _CHUNK_ROWS):
        stop = min(n, start + _CHUNK_ROWS)
        table[start:stop] = _encode_host(to_values(source[start:stop]), dtype)
    return table


def init(values: np.ndarray, dtype: str = "float32", multiple: int = ROW_MULTIPLE) -> np.ndarray:
    """A host table (N_pad, C) holding `values` (N, C) in its first N rows (zeros after), encoded.

    Numpy, built chunk by chunk (no float32 copy of a uint8 table): `init_state` returns it and
    the trainer places it on the mesh with the method's sharding, each device receiving its rows.
    """
    return build(values, lambda rows: rows.astype(np.float32), dtype, multiple)


def full(
    num_rows: int, num_classes: int, value: float, dtype: str = "float32",
    multiple: int = ROW_MULTIPLE,
) -> np.ndarray:  # fmt: skip
    """A host table whose first `num_rows` rows hold `value` everywhere (zeros after), encoded,
    without any float32 (num_rows, num_classes) intermediate."""
    _check_dtype(dtype)
    if _ABSTRACT.get():
        return _abstract(num_rows, num_classes, dtype, multiple)
    table = np.zeros((padded_rows(num_rows, multiple), num_classes), HELD_AS[dtype])
    table[:num_rows] = _encode_host(np.float32(value), dtype)
    return table


def from_partial_labels(
    labels: np.ndarray,
    *,
    unknown: float = 0.5,
    dtype: str = "float32",
    multiple: int = ROW_MULTIPLE,
) -> np.ndarray:
    """A host table initialised from partial labels (N, C) in {-1, 0, 1}: 1 for a known positive, 0
    for a known negative, `unknown` for an unknown entry (e.g. the imbalance method's 0.5)."""

    def values(rows):
        return np.where(rows == 1, 1.0, np.where(rows == -1, 0.0, unknown)).astype(np.float32)

    return build(labels, values, dtype, multiple)


def gather(table: jax.Array, example_ids: jax.Array) -> jax.Array:
    """Rows (B, C) float32 of `table` for `example_ids` (B,)."""
    return decode(table[example_ids])


def scatter(table: jax.Array, example_ids: jax.Array, values: jax.Array) -> jax.Array:
    """`table` with rows `example_ids` (B,) set to `values` (B, C) (encoded in the table's dtype).

    Ids must be distinct within a batch (a grain epoch visits every example once; for a batch
    that spans two passes and holds one example twice, which of its two rows is written is
    unspecified)."""
    return table.at[example_ids].set(encode(values, storage_dtype(table)))


def sharding_rule(pattern: str) -> tuple[str, P]:
    """A `Method.state_sharding` rule sharding the table leaves whose path matches `pattern`
    (e.g. r'^method_state/pseudo_labels$') over their rows."""
    return (pattern, PARTITION)
