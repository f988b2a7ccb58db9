"""Focusing losses: ASL (Ridnik et al. 2021) and its partial-label forms, focal loss.

Notation: x (B, C) logits, p = sigmoid(x), labels y in {-1, 0, 1} (+1 known positive, -1 known
negative, 0 unknown). Every loss here returns (loss, metrics) and states its reduction. Focusing
weights are computed under `jax.lax.stop_gradient` wherever the reference computes them with
autograd disabled (ASL's `disable_torch_grad_focal_loss=True`, DualCoOp's and TaI-DPT's ASL), and
with their gradient where the reference keeps it (`stop_focal_gradient=False`). Concrete labels
are checked on entry (`checks.partial_labels`: errors.InputError outside {-1, 0, 1}); traced
labels are not.

Reference forms (`shared/reference/baselines_notes.md` §3-4):

* `asymmetric_loss`: ASL, Alibaba-MIIL/ASL `AsymmetricLoss`: per entry
  L+ = (1 - p)^g+ log(max(p, eps)), L- = p_m^g- log(max(1 - p_m, eps)) with the shifted negative
  probability p_m = max(p - m, 0) (1 - p_m computed as min(1 - p + m, 1)); loss = -sum over entries
  of y+ L+ + y- L- (**sum**, no division). `unknown='ignore'` scores only known entries (HCP-MLR-PL's
  `loss/SST.py::AsymmetricLoss`, the HST paper's ASL baseline); `unknown='negative'` treats unknown
  entries as negatives (the imbalance paper's ASL baseline, robust-loss-mlml).
* `focal_loss`: robust-loss-mlml's `--loss Focal`: ASL with g+ = g- = 2, m = 0 (no alpha
  balancing), unknown entries negative, sum.
* `softmax_pair_asl`: DualCoOp's official loss: per class the probabilities are a softmax over the
  pair (negative logit, positive logit), unknown entries are removed, eps 1e-6, g- 2, g+ 1, m 0.05,
  weights without gradient, sum.
* `sigmoid_difference_asl`: the TaI-DPT / TRM-ML author form: p = sigmoid(pos - neg logit), masks
  y > 0.9 / y < -0.9 (so soft targets in between are ignored), g+ 1, g- 2, m 0.05, eps 1e-8,
  weights without gradient, -sum / B.
"""

import jax
import jax.numpy as jnp

from mlrpl_jax import checks

UNKNOWN_MODES = ("ignore", "negative")


def _masks(labels: jax.Array, unknown: str) -> tuple[jax.Array, jax.Array]:
    """(positive mask, negative mask) float32 of {-1, 0, 1} labels; unknowns per `unknown`."""
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown must be one of {UNKNOWN_MODES}, got {unknown!r}")
    y = labels.astype(jnp.float32)
    pos = (y > 0).astype(jnp.float32)
    neg = (y < 0).astype(jnp.float32) if unknown == "ignore" else 1.0 - pos
    return pos, neg


def focusing_weight(base: jax.Array, gamma: float) -> jax.Array | float:
    """base ** gamma for a Python-float exponent; at gamma = 0 the constant 1, without gradient, as
    torch's pow backward (lax.pow's derivative is 0 * 0^-1 = NaN where the base is 0)."""
    return base**gamma if gamma else 1.0


def _asl_terms(
    p: jax.Array, gamma_pos: float, gamma_neg: float, clip: float, eps: float, stop: bool
) -> tuple[jax.Array, jax.Array]:
    """ASL's element losses (positive, negative) >= 0 of probabilities p, before masking."""
    not_p = 1.0 - p
    if clip > 0:
        not_p = jnp.minimum(not_p + clip, 1.0)  # 1 - p_m, p_m = max(p - clip, 0)
    log_pos = jnp.log(jnp.maximum(p, eps))
    log_neg = jnp.log(jnp.maximum(not_p, eps))
    maybe_stop = jax.lax.stop_gradient if stop else (lambda a: a)
    w_pos = maybe_stop(focusing_weight(1.0 - p, gamma_pos))
    w_neg = maybe_stop(focusing_weight(1.0 - not_p, gamma_neg))
    return -w_pos * log_pos, -w_neg * log_neg


def asymmetric_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
    eps: float = 1e-8,
    unknown: str = "ignore",
    stop_focal_gradient: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ASL summed over the scored entries (module docstring). Defaults: ASL's training script
    (g+ 0, g- 4, m 0.05, eps 1e-8, weights without gradient).

    Args:
      logits: (B, C) logits. labels: (B, C) {-1, 0, 1}.
      unknown: 'ignore' (known entries only) or 'negative' (unknown entries as negatives).

    Returns:
      (sum over scored entries, {'known_fraction': scored entries / B C}).
    """
    checks.partial_labels(labels, where="asymmetric_loss")
    return _asymmetric_loss(
        logits, labels, gamma_pos, gamma_neg, clip, eps, unknown, stop_focal_gradient
    )


def _asymmetric_loss(logits, labels, gamma_pos, gamma_neg, clip, eps, unknown, stop_focal_gradient):
    """`asymmetric_loss` without the label check."""
    pos, neg = _masks(labels, unknown)
    p = jax.nn.sigmoid(logits.astype(jnp.float32))
    l_pos, l_neg = _asl_terms(p, gamma_pos, gamma_neg, clip, eps, stop_focal_gradient)
    loss = jnp.sum(pos * l_pos + neg * l_neg)
    return loss, {"known_fraction": jnp.sum(pos + neg) / pos.size}


def focal_loss(
    logits: jax.Array, labels: jax.Array, *, gamma: float = 2.0, unknown: str = "negative"
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Focal loss as the imbalance paper's baselines run it (robust-loss-mlml `--loss Focal`):
    -sum[(1 - p)^g y+ log p + p^g y- log(1 - p)], no alpha balancing, weights without gradient,
    eps 1e-8, unknown entries negative by default; **sum**."""
    checks.partial_labels(labels, where="focal_loss")
    return _asymmetric_loss(logits, labels, gamma, gamma, 0.0, 1e-8, unknown, True)


def softmax_pair_asl(
    neg_logits: jax.Array,
    pos_logits: jax.Array,
    labels: jax.Array,
    *,
    gamma_pos: float = 1.0,
    gamma_neg: float = 2.0,
    clip: float = 0.05,
    eps: float = 1e-6,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """DualCoOp's ASL: p = softmax([neg, pos])[pos] per class, unknown entries removed; **sum**.

    Args:
      neg_logits, pos_logits: (B, C) the negative and positive prompt logits.
      labels: (B, C) {-1, 0, 1} (DualCoOp's own encoding 1 / 0 / -1 is converted at its boundary).
    """
    checks.partial_labels(labels, where="softmax_pair_asl")
    p = jax.nn.softmax(jnp.stack([neg_logits, pos_logits], axis=-1).astype(jnp.float32), axis=-1)[
        ..., 1
    ]
    pos, neg = _masks(labels, "ignore")
    return _pair_asl_sum(p, pos, neg, gamma_pos, gamma_neg, clip, eps, 1.0)


def sigmoid_difference_asl(
    neg_logits: jax.Array,
    pos_logits: jax.Array,
    targets: jax.Array,
    *,
    gamma_pos: float = 1.0,
    gamma_neg: float = 2.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The TaI-DPT / TRM-ML author ASL: p = sigmoid(pos - neg), positives where target > 0.9,
    negatives where target < -0.9; **-sum / B** (B = batch size). targets: (B, C) partial labels
    {-1, 0, 1} or soft targets in [-1, 1] (checked when concrete)."""
    checks.partial_labels(targets, where="sigmoid_difference_asl", name="targets", soft=True)
    p = jax.nn.sigmoid((pos_logits - neg_logits).astype(jnp.float32))
    t = targets.astype(jnp.float32)
    pos, neg = (t > 0.9).astype(jnp.float32), (t < -0.9).astype(jnp.float32)
    return _pair_asl_sum(p, pos, neg, gamma_pos, gamma_neg, clip, eps, t.shape[0])


def _pair_asl_sum(p, pos, neg, gamma_pos, gamma_neg, clip, eps, divisor):
    """The two prompt-pair ASLs' reduction: (sum of the masked ASL terms) / divisor, with the
    focusing weights under stop-gradient, and the known fraction."""
    l_pos, l_neg = _asl_terms(p, gamma_pos, gamma_neg, clip, eps, True)
    loss = jnp.sum(pos * l_pos + neg * l_neg) / divisor
    return loss, {"known_fraction": jnp.sum(pos + neg) / pos.size}
