"""Partial binary cross-entropy: BCE over the known labels only.

The loss every MLR-PL paper starts from (HST paper Eq. 11; reference `loss/*.py::BCELoss`): logits are scored
against targets in [-1, 1] (+1 known positive, -1 known negative, 0 unknown), unknown entries are ignored and
the sum is divided by the number of known entries **in the whole batch** (not per image).
"""

import jax
import jax.numpy as jnp

from mlrpl_jax import checks


def partial_bce(
    logits: jax.Array, targets: jax.Array, *, margin: float = 0.0
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Partial BCE of the reference code, with soft targets allowed.

    For an entry with target y: positive if y > margin, negative if y < -margin, ignored otherwise.
      positive: -[y log s(x) + (1 - y) log s(-x)]          (= -log s(x) for y = 1)
      negative: -[(-y) log s(-x) + (1 + y) log s(x)]       (= -log s(-x) for y = -1)
    loss = sum over selected entries / number of selected entries (0 when none is selected).

    Args:
      logits: (B, C) float logits.
      targets: (B, C) targets in [-1, 1]: int8 partial labels {-1, 0, 1} or soft targets (e.g. blended).
      margin: entries with |y| <= margin are ignored (reference `BCELoss(margin)`; 0 ignores only unknowns).

    Returns:
      (loss, metrics): scalar loss and {'known_fraction': fraction of entries that entered the loss}.

    Raises:
      errors.InputError: concrete targets outside [-1, 1] (`checks.partial_labels`; traced targets
        are not checked).
    """
    checks.partial_labels(targets, where="partial_bce", name="targets", soft=True)
    logits = logits.astype(jnp.float32)
    y = targets.astype(jnp.float32)
    pos = (y > margin).astype(jnp.float32)
    neg = (y < -margin).astype(jnp.float32)
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    loss_pos = -(y * log_p + (1.0 - y) * log_not_p)
    loss_neg = -((-y) * log_not_p + (1.0 + y) * log_p)
    count = jnp.sum(pos + neg)
    total = jnp.sum(pos * loss_pos + neg * loss_neg)
    loss = total / jnp.maximum(count, 1.0)
    return loss, {"known_fraction": count / y.size}
