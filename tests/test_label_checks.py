"""Label checks of the public losses, pseudo-label rules and metrics (`mlrpl_jax.checks`).

Concrete labels outside the convention raise `errors.InputError` naming it; traced labels (inside
jit) are not checked, and the jitted program is the same with or without the checks.
"""

import importlib
import inspect
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlrpl_jax import checks, errors, losses, metrics
from mlrpl_jax.losses import (
    asymmetric,
    contrastive,
    cooccurrence,
    imbalance,
    robust,
    single_positive,
)
from mlrpl_jax.ops import pseudo_labels as pl

B, C, D, K = 4, 3, 2, 2
_rng = np.random.default_rng(0)
LOGITS = _rng.normal(size=(B, C)).astype(np.float32)
PAIR_LOGITS = _rng.normal(size=(B, C * (C - 1) // 2)).astype(np.float32)
FEATURES = _rng.normal(size=(B, C, D)).astype(np.float32)
PROTOTYPES = _rng.normal(size=(C, K, D)).astype(np.float32)
PSEUDO = _rng.uniform(size=(B, C)).astype(np.float32)
PICKED = _rng.uniform(size=(B, C)) < 0.5
LABELS = np.array([[1, -1, 0], [0, 1, -1], [-1, 0, 1], [1, 1, 0]], np.int8)
FULL = (LABELS == 1).astype(np.int8)
BAD = LABELS.copy()
BAD[0, 1] = 2  # the first (row-major) offending entry: [0, 1]
S = np.asarray(pl.cooccurrence_matrix(PAIR_LOGITS, C))
BANK = np.zeros((C, 3, D), np.float32)
KEY = jax.random.PRNGKey(0)

# name -> (function of the partial labels, argument name); every public function taking labels.
PARTIAL_CASES = {
    "partial_bce": (lambda y: losses.partial_bce(LOGITS, y), "targets"),
    "asymmetric_loss": (lambda y: losses.asymmetric_loss(LOGITS, y), "labels"),
    "focal_loss": (lambda y: losses.focal_loss(LOGITS, y), "labels"),
    "softmax_pair_asl": (lambda y: losses.softmax_pair_asl(-LOGITS, LOGITS, y), "labels"),
    "sigmoid_difference_asl": (
        lambda y: losses.sigmoid_difference_asl(-LOGITS, LOGITS, y),
        "targets",
    ),
    "an": (lambda y: losses.an(LOGITS, y), "labels"),
    "wan": (lambda y: losses.wan(LOGITS, y), "labels"),
    "an_ls": (lambda y: losses.an_ls(LOGITS, y), "labels"),
    "bce_ls": (lambda y: losses.bce_ls(LOGITS, y), "labels"),
    "epr": (lambda y: losses.epr(LOGITS, y, expected_positives=1.0), "labels"),
    "role": (lambda y: losses.role(LOGITS, y, -LOGITS, expected_positives=1.0), "labels"),
    "normalized_partial_bce": (lambda y: losses.normalized_partial_bce(LOGITS, y), "labels"),
    "large_loss": (lambda y: losses.large_loss(LOGITS, y, 2, correct=True), "labels"),
    "splc": (lambda y: losses.splc(LOGITS, y, active=True), "labels"),
    "hill": (lambda y: losses.hill(LOGITS, y), "labels"),
    "pair_targets": (lambda y: cooccurrence.pair_targets(y), "labels"),
    "intra_asymmetric_loss": (
        lambda y: cooccurrence.intra_asymmetric_loss(PAIR_LOGITS, y),
        "labels",
    ),
    "instance_contrastive_loss": (
        lambda y: contrastive.instance_contrastive_loss(FEATURES, y, KEY),
        "labels",
    ),
    "prototype_contrastive_loss": (
        lambda y: contrastive.prototype_contrastive_loss(FEATURES, y, PROTOTYPES),
        "labels",
    ),
    "imbalance_coefficients": (lambda y: imbalance.imbalance_coefficients(y, 0.05), "labels"),
    "imbalance_loss": (
        lambda y: imbalance.imbalance_loss(LOGITS, y, PSEUDO, PICKED, d=1.0),
        "labels",
    ),
    "intra_scores": (lambda y: pl.intra_scores(S, y), "labels"),
    "complete_labels": (lambda y: pl.complete_labels(y, (PSEUDO > 0.5).astype(np.int8)), "labels"),
    "update_bank": (lambda y: pl.update_bank(BANK, FEATURES, y), "labels"),
    "pseudo_label_quality": (lambda y: pl.pseudo_label_quality(LABELS, y, FULL), "labels"),
    "pseudo_label_quality/pseudo": (lambda y: pl.pseudo_label_quality(y, LABELS, FULL), "pseudo"),
    "partial_label_metrics": (
        lambda y: metrics.partial_label_metrics(LOGITS, y),
        "partial_targets",
    ),
}
JAX_CASES = [name for name in PARTIAL_CASES if name != "partial_label_metrics"]

# name -> (function of the full {0, 1} ground truth, argument name).
FULL_CASES = {
    "compute_metrics": (lambda y: metrics.compute_metrics(LOGITS, y), "targets"),
    "average_precision": (lambda y: metrics.average_precision(LOGITS, y), "targets"),
    "pseudo_label_quality/full": (lambda y: pl.pseudo_label_quality(LABELS, LABELS, y), "full"),
}

LABEL_ARGUMENTS = {"labels", "targets", "partial_targets", "pseudo", "full"}


def _public_functions_taking_labels():
    # (`losses.partial_bce` is the function: the package's import shadows its module.)
    partial_bce = importlib.import_module("mlrpl_jax.losses.partial_bce")
    modules = [
        asymmetric, contrastive, cooccurrence, imbalance, partial_bce, robust, single_positive,
        pl, metrics,
    ]  # fmt: skip
    for module in modules:
        for name, fn in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(fn):
                continue
            if fn.__module__ != module.__name__:
                continue  # re-exported (cooccurrence.pair_indices lives in ops.pseudo_labels)
            if LABEL_ARGUMENTS & set(inspect.signature(fn).parameters):
                yield name


def test_every_public_function_taking_labels_is_covered():
    covered = {name.split("/")[0] for name in (*PARTIAL_CASES, *FULL_CASES)}
    assert set(_public_functions_taking_labels()) == covered


def test_input_error_is_a_user_error_and_a_value_error():
    assert issubclass(errors.InputError, errors.UserError)
    assert issubclass(errors.InputError, ValueError)


@pytest.mark.parametrize("name", sorted(PARTIAL_CASES))
def test_labels_of_two_are_rejected_naming_the_convention(name):
    fn, argument = PARTIAL_CASES[name]
    where = name.split("/")[0]
    with pytest.raises(errors.InputError) as info:
        fn(BAD)
    message = str(info.value)
    assert message.startswith(f"{where}: {argument} must hold partial labels in {{-1, 0, 1}}")
    assert "(1 present, -1 absent, 0 unknown)" in message
    assert f"found {argument}[0, 1] = 2." in message
    assert "2 * y - 1" in message  # how to convert full {0, 1} labels
    with pytest.raises(errors.InputError, match=r"\{-1, 0, 1\}"):
        fn(jnp.asarray(BAD))  # concrete jax arrays are checked too


@pytest.mark.parametrize("name", sorted(PARTIAL_CASES))
def test_valid_labels_are_accepted(name):
    fn, _ = PARTIAL_CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = fn(LABELS)
        fn(jnp.asarray(LABELS))
        fn(LABELS.astype(np.float32))  # float {-1, 0, 1} labels are valid (and hold a -1)
    leaves = jax.tree_util.tree_leaves(out)
    assert leaves and all(np.all(np.isfinite(np.asarray(leaf, np.float64))) for leaf in leaves)


@pytest.mark.parametrize("name", sorted(FULL_CASES))
def test_full_ground_truth_outside_0_1_is_rejected(name):
    fn, argument = FULL_CASES[name]
    where = name.split("/")[0]
    with pytest.raises(errors.InputError) as info:
        fn(BAD)
    message = str(info.value)
    assert message.startswith(f"{where}: {argument} must contain only 0 and 1")
    assert "full ground truth in {0, 1} (1 present, 0 absent" in message
    assert f"found {argument}[0, 1] = 2." in message
    with pytest.raises(errors.InputError, match=r"partial_label_metrics"):
        fn(LABELS)  # partial labels (-1) are not full ground truth
    fn(FULL)
    fn(FULL.astype(bool))


def test_soft_targets_are_accepted_where_documented():
    soft = np.array([[0.3, -1.0, 0.0], [0.0, 1.0, -0.7], [-1.0, 0.0, 1.0], [1.0, 0.5, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses.partial_bce(LOGITS, soft)
        losses.sigmoid_difference_asl(-LOGITS, LOGITS, soft)
    match = r"or soft targets in \[-1, 1\]; found targets\[0, 0\] = 1.5"
    with pytest.raises(errors.InputError, match=match):
        losses.partial_bce(LOGITS, np.where(soft == 0.3, 1.5, soft))
    with pytest.raises(errors.InputError, match=r"found labels\[0, 0\] = 0.3"):
        losses.asymmetric_loss(LOGITS, soft)  # not a soft-target loss
    with pytest.raises(errors.InputError, match=r"= nan"):
        losses.partial_bce(LOGITS, np.where(soft == 0.3, np.nan, soft))
    with pytest.raises(errors.InputError, match="got dtype <U1"):
        losses.an(LOGITS, np.full((B, C), "a"))


def test_float_or_bool_zero_one_labels_warn_and_integer_ones_do_not():
    full01 = FULL.astype(np.float32)
    match = r"hold only 0 and 1.*2 \* y - 1"
    with pytest.warns(checks.LabelConventionWarning, match=match) as rec:
        losses.partial_bce(LOGITS, full01)
    assert rec[0].filename == __file__  # points at the caller's line
    with pytest.warns(checks.LabelConventionWarning, match="as partial labels"):
        metrics.partial_label_metrics(LOGITS, FULL.astype(bool))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        losses.partial_bce(LOGITS, FULL)  # int8 {0, 1}: positive-only partial labels (PPL)
        losses.partial_bce(LOGITS, FULL.astype(np.int64))
        losses.partial_bce(LOGITS, np.ones((B, C), np.float32))  # no 0: nothing ambiguous
        losses.partial_bce(LOGITS, np.where(FULL == 1, 0.8, 0.0))  # soft positives
        jax.jit(lambda y: losses.partial_bce(LOGITS, y))(full01)  # traced: never checked


@pytest.mark.parametrize("name", JAX_CASES)
def test_jitted_calls_do_not_check(name):
    fn, _ = PARTIAL_CASES[name]
    jax.block_until_ready(jax.jit(fn)(BAD))  # out-of-range traced labels are not checked
    jax.block_until_ready(jax.jit(fn)(LABELS))


@pytest.mark.parametrize("name", JAX_CASES)
def test_checks_add_nothing_to_the_traced_program(name, monkeypatch):
    fn, _ = PARTIAL_CASES[name]
    with_checks = jax.make_jaxpr(fn)(LABELS)
    monkeypatch.setattr(checks, "partial_labels", lambda *a, **k: None)
    monkeypatch.setattr(checks, "full_labels", lambda *a, **k: None)
    without = jax.make_jaxpr(fn)(LABELS)
    assert len(with_checks.jaxpr.eqns) == len(without.jaxpr.eqns)
    assert str(with_checks) == str(without)


def test_concrete_jax_arrays_are_checked_under_the_transfer_guard():
    bad, good, logits = jnp.asarray(BAD), jnp.asarray(LABELS), jnp.asarray(LOGITS)
    loss = jax.jit(lambda x, y: losses.partial_bce(x, y)[0])
    loss(logits, good)
    with jax.transfer_guard("disallow"):
        checks.partial_labels(good, where="test")
        with pytest.raises(errors.InputError):
            checks.partial_labels(bad, where="test")
        loss(logits, good)


def test_ops_do_not_import_losses_and_metrics_do_not_import_jax():
    code = (
        "import sys\n"
        "import mlrpl_jax.metrics\n"
        "assert 'jax' not in sys.modules, 'metrics imported jax'\n"
        "import mlrpl_jax.ops.pseudo_labels\n"
        "assert not [m for m in sys.modules if m.startswith('mlrpl_jax.losses')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert cooccurrence.pair_indices is pl.pair_indices
    assert cooccurrence.pair_index_matrix is pl.pair_index_matrix
