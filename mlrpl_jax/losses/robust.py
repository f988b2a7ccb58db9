"""Losses that treat unknown labels as negatives and then distrust the largest of them:
LargeLoss (Kim et al., CVPR 2022: LL-R, LL-Ct, LL-Cp), SPLC and Hill (Zhang et al. 2021).

Notation: x (B, C) logits, p = sigmoid(x), labels y in {-1, 0, 1}. References and their quirks:
`shared/reference/baselines_notes.md` §7-8.

LargeLoss (`snucml/LargeLossMatters` `losses.py`): the base loss is BCE(x, y~) with y~ the observed
labels clipped to {0, 1} (unknown entries negative); the correction is BCE(x, 1 - y~) on the
unobserved entries (flipped to positive). Per batch, U = the base loss on unobserved entries (0
on observed positives), t = the k-th largest value of U (flattened), and entries with U >= t are
rejected (LL-R: loss 0) or corrected (LL-Ct / LL-Cp: loss BCE(x, 1 - y~)). k = ceil(B C (1 -
clean_rate)) with clean_rate = 1 - epoch * delta_rel (no modification in epoch 0). Reduction:
**mean over all B C entries**. The code's edge case is kept: entries equal to t count as
rejected/corrected, so when k exceeds the number of non-zero U (t = 0) every zero entry, observed
positives included, is rejected or corrected. `large_loss` also returns the masks of the
rejected / corrected unobserved entries (for LL-Cp's permanent relabelling, done by the method).

SPLC (`xinyu1205/robust-loss-mlml`): x' = x - m on positives; from `change_epoch` on, unknown /
negative entries with sigmoid(x) > tau become positives (without the margin); focal BCE with
gamma 2 whose weights keep their gradient; **sum**. `splc` also returns the mask of the entries it
turned positive (the method's pseudo positives, scored by its diagnostics).

Hill: positives -(1 - p_m)^gamma log p_m with p_m = sigmoid(x - m) (weight with gradient);
non-positive entries (lambda - p) p^2; **sum**.

Each loss checks concrete labels on entry (`checks.partial_labels`: errors.InputError outside
{-1, 0, 1}); traced labels (inside jit) are not checked.
"""

import jax
import jax.numpy as jnp

from mlrpl_jax import checks
from mlrpl_jax.losses.asymmetric import focusing_weight


def _bce_with_logits(x: jax.Array, t: jax.Array) -> jax.Array:
    """Element-wise BCE of logits x against targets t in [0, 1] (PyTorch's stable form)."""
    return -(t * jax.nn.log_sigmoid(x) + (1.0 - t) * jax.nn.log_sigmoid(-x))


def large_loss_budget(num_entries: int, epoch: jax.Array | int, delta_rel: float) -> jax.Array:
    """k = ceil(B C (1 - clean_rate)), clean_rate = max(1 - epoch delta_rel, 0) (LL-R, LL-Ct): the
    number of unobserved entries of a batch of B C entries rejected or corrected in `epoch`.

    Epoch 0 (0-based) has clean_rate 1, k = 0 (no modification); the rate of modified entries
    then grows by delta_rel per epoch. `epoch` may be traced (the rule training uses, inside the
    jitted step). Returns an int32 scalar."""
    fraction = jnp.minimum(jnp.asarray(epoch, jnp.float32) * delta_rel, 1.0)
    return jnp.ceil(num_entries * fraction - 1e-6).astype(jnp.int32)


def large_loss(
    logits: jax.Array, labels: jax.Array, k: jax.Array | int, *, correct: bool
) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
    """LargeLoss rejection (`correct=False`, LL-R) or temporary correction (`correct=True`,
    LL-Ct/LL-Cp) of the k largest unobserved-entry losses of the batch (module docstring).

    Args:
      logits: (B, C). labels: (B, C) {-1, 0, 1}; 0 = unobserved, -1 = observed negative (kept as
        a negative, never rejected).
      k: number of entries to reject or correct (0: plain assume-negative BCE); may be traced.
      correct: flip instead of dropping.

    Returns:
      (mean over B C entries, metrics, masks): masks['hit'] (B, C) bool, the unobserved entries
      rejected / corrected in this batch (U >= t); masks['above_threshold'], those with U > t
      strictly (LL-Cp's permanent relabelling, as the code's rule).
    """
    checks.partial_labels(labels, where="large_loss")
    x = logits.astype(jnp.float32)
    y = labels.astype(jnp.float32)
    observed_pos = y > 0
    unobserved = y == 0
    base = _bce_with_logits(x, observed_pos.astype(jnp.float32))
    u = jnp.where(observed_pos, 0.0, jnp.where(unobserved, base, 0.0))
    flat = u.reshape(-1)
    k = jnp.asarray(k, jnp.int32)
    # t = k-th largest value of U (sorted descending, index k - 1); no entry when k = 0.
    t = jnp.sort(flat)[::-1][jnp.clip(k - 1, 0, flat.size - 1)]
    hit = (u >= t) & (k > 0)
    if correct:
        # BCE(x, 1 - y~): target 1 on unobserved entries (and, in the t = 0 edge case, target 0
        # on observed positives, as the code does).
        flipped = _bce_with_logits(x, 1.0 - observed_pos.astype(jnp.float32))
        loss_matrix = jnp.where(hit, flipped, base)
    else:
        loss_matrix = jnp.where(hit, 0.0, base)
    masks = {"hit": hit & unobserved, "above_threshold": (u > t) & unobserved & (k > 0)}
    metrics = {"large_loss_threshold": t, "large_loss_hits": jnp.sum(hit.astype(jnp.float32))}
    return jnp.mean(loss_matrix), metrics, masks


def splc(
    logits: jax.Array,
    labels: jax.Array,
    *,
    active: jax.Array | bool,
    tau: float = 0.6,
    margin: float = 1.0,
    gamma: float = 2.0,
) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
    """SPLC's loss (module docstring); `active`: epoch >= change_epoch (may be traced).

    Returns (loss, {'splc_corrected': number of entries turned positive}, that mask (B, C) bool)."""
    checks.partial_labels(labels, where="splc")
    x = logits.astype(jnp.float32)
    pos = (labels > 0).astype(jnp.float32)
    shifted = jnp.where(pos > 0, x - margin, x)
    corrected = jnp.where(
        jnp.asarray(active) & (jax.nn.sigmoid(shifted) > tau) & (pos == 0), 1.0, pos
    )
    p = jax.nn.sigmoid(shifted)
    loss_pos = corrected * focusing_weight(1.0 - p, gamma) * jax.nn.log_sigmoid(shifted)
    loss_neg = (1.0 - corrected) * focusing_weight(p, gamma) * jax.nn.log_sigmoid(-shifted)
    loss = -jnp.sum(loss_pos + loss_neg)
    return loss, {"splc_corrected": jnp.sum(corrected - pos)}, corrected > pos


def hill(
    logits: jax.Array,
    labels: jax.Array,
    *,
    lamb: float = 1.5,
    margin: float = 1.0,
    gamma: float = 2.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Hill loss (module docstring): margin-shifted focal BCE on positives, (lambda - p) p^2 on
    every other entry; **sum**."""
    checks.partial_labels(labels, where="hill")
    x = logits.astype(jnp.float32)
    pos = (labels > 0).astype(jnp.float32)
    p_m = jax.nn.sigmoid(x - margin)
    loss_pos = -focusing_weight(1.0 - p_m, gamma) * jax.nn.log_sigmoid(x - margin)
    p = jax.nn.sigmoid(x)
    loss_neg = (lamb - p) * p**2
    return jnp.sum(pos * loss_pos + (1.0 - pos) * loss_neg), {}
