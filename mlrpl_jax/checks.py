"""Label checks of the public losses, pseudo-label rules and metrics: values and conventions.

Partial labels are {-1, 0, 1} (1 present, -1 absent, 0 unknown); full ground truth is {0, 1}.
`partial_labels` and `full_labels` raise `errors.InputError` (a `ValueError`) naming the function,
the argument, the first offending entry and the convention, and say how to convert.

They check only *concrete* arrays (numpy arrays, Python lists, jax arrays holding values). Inside
`jax.jit`, `jax.grad` of the labels, `jax.vmap` or `jax.make_jaxpr` the labels are tracers and the
checks return at once: a jitted train step compiles to the same program with or without them and
never pays for them (an out-of-range label inside a jitted step goes unchecked, as before). Jax
arrays are copied to the host with an explicit `jax.device_get`, so a check also runs under
`jax.transfer_guard("disallow")`; arrays spread over several processes are not checked.

This module imports no jax (so `metrics` stays a numpy-only module): a value can only be a jax
tracer or array once jax has been imported, so jax is looked up in `sys.modules`.
"""

import sys
import warnings

import numpy as np

from mlrpl_jax import errors

PARTIAL = "partial labels in {-1, 0, 1} (1 present, -1 absent, 0 unknown)"
SOFT = "partial labels in {-1, 0, 1} (1 present, -1 absent, 0 unknown) or soft targets in [-1, 1]"
FULL = "full ground truth in {0, 1} (1 present, 0 absent; bool also works)"


class LabelConventionWarning(UserWarning):
    """Labels that are valid but look like they follow the other convention (full {0, 1} labels
    passed where partial labels are expected)."""


def _host_values(x) -> np.ndarray | None:
    """x as a numpy array, or None when its values are not available here (a jax tracer, or a jax
    array not fully addressable by this process)."""
    jax = sys.modules.get("jax")
    if jax is not None:
        if isinstance(x, jax.core.Tracer):
            return None
        if isinstance(x, jax.Array):
            if not x.is_fully_addressable:
                return None
            return np.asarray(jax.device_get(x))  # explicit: allowed under transfer_guard
    return np.asarray(x)


def _first(bad: np.ndarray, values: np.ndarray, name: str) -> str:
    """'name[i, j] = v' for the first True entry of `bad` (v shown as an int when it is one)."""
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    value = values[index].item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    where = f"[{', '.join(map(str, index))}]" if index else ""
    return f"{name}{where} = {value!r}"


def _numeric(values: np.ndarray, where: str, name: str, convention: str) -> None:
    if not (values.dtype == np.bool_ or np.issubdtype(values.dtype, np.number)):
        raise errors.InputError(
            f"{where}: {name} must hold {convention}; got dtype {values.dtype}."
        )
    if np.issubdtype(values.dtype, np.complexfloating):
        raise errors.InputError(f"{where}: {name} must hold real {convention}; got complex.")


def partial_labels(labels, *, where: str, name: str = "labels", soft: bool = False) -> None:
    """Checks concrete partial labels; a no-op on tracers (module docstring).

    Raises `errors.InputError` for a value outside {-1, 0, 1} (soft=True: outside [-1, 1], for
    the losses that take soft targets), NaN included, or a non-numeric dtype.

    {0, 1} labels passed as partial labels: they are valid partial labels (positives and unknowns:
    the positive-only (PPL) and single-positive settings have no -1 at all), so no error. Such
    labels still are most often full ground truth passed by mistake, read here as "0 = unknown".
    The decision: warn (`LabelConventionWarning`) only when the evidence is strong and the check
    is free: the labels are concrete, have a **bool or floating dtype**, hold only 0s and 1s, at
    least one 0 and no -1. Integer labels never warn (int8 is the library's partial-label dtype,
    and the data pipeline, the PPL setting and hand-written `np.array([[1, 0]])` all give integer
    {0, 1} partial labels); soft targets with fractional values never warn; traced calls (the
    trainer's jitted steps) never warn. Cast positive-only float labels to int8 to silence it.

    Args:
      labels: array-like of any shape, partial labels (or soft targets with soft=True).
      where: the public function's name, quoted in the message.
      name: the argument's name, quoted in the message.
      soft: accept any real value in [-1, 1] (`losses.partial_bce`, `sigmoid_difference_asl`).
    """
    values = _host_values(labels)
    if values is None:
        return
    convention = SOFT if soft else PARTIAL
    _numeric(values, where, name, convention)
    if values.dtype == np.bool_:
        valid = np.ones(values.shape, bool)
    elif soft:
        valid = (values >= -1) & (values <= 1)  # False for NaN
    elif np.issubdtype(values.dtype, np.integer) and (
        values.size == 0 or (values.min() >= -1 and values.max() <= 1)
    ):
        valid = np.ones(values.shape, bool)
    else:
        valid = (values == -1) | (values == 0) | (values == 1)
    if not valid.all():
        raise errors.InputError(
            f"{where}: {name} must hold {convention}; found {_first(~valid, values, name)}. "
            f"Full {{0, 1}} labels y convert to partial labels with 2 * y - 1 (every entry "
            f"known), or with np.where(known, 2 * y - 1, 0) to mark entries unknown."
        )
    if values.dtype == np.bool_ or np.issubdtype(values.dtype, np.floating):
        zero = values == 0
        if zero.any() and np.all(zero | (values == 1)):
            warnings.warn(
                f"{where}: {name} ({values.dtype}) hold only 0 and 1, no -1: as {PARTIAL}, "
                f"every 0 is read as unknown, not absent. If these are full {{0, 1}} labels y, "
                f"pass 2 * y - 1; if they are positive-only partial labels, cast them to int8 "
                f"to silence this warning.",
                LabelConventionWarning,
                stacklevel=3,
            )


def full_labels(targets, *, where: str, name: str = "targets") -> np.ndarray | None:
    """Checks concrete full ground truth: {0, 1} or bool; a no-op on tracers.

    Raises `errors.InputError` for any other value (-1 included: partial labels are not full
    ground truth) or a non-numeric dtype.

    Returns:
      the values as a bool numpy array (True = present), or None for a tracer.
    """
    values = _host_values(targets)
    if values is None:
        return None
    _numeric(values, where, name, FULL)
    if values.dtype == np.bool_:
        return values
    valid = (values == 0) | (values == 1)
    if not valid.all():
        raise errors.InputError(
            f"{where}: {name} must contain only 0 and 1, {FULL}; found "
            f"{_first(~valid, values, name)}. Labels in {{-1, 1}} convert with (y > 0); partial "
            f"labels in {{-1, 0, 1}} are scored on their known entries by "
            f"metrics.partial_label_metrics."
        )
    return values == 1
