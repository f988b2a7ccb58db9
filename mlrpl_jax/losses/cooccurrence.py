"""Intra-image co-occurrence supervision of the IST head (SST and HST).

The IST head predicts one logit per unordered class pair p = (i, j), i < j, in row-major order
(i = 0..C-2, j = i+1..C-1), the order of `triu_indices(C, k=1)` and of the reference's
`getConcatIndex`. Its index is p(i, j) = i (C - 1) - i (i - 1) / 2 + (j - i - 1).

The loss is the asymmetric loss of the reference code (`loss/{SST,HST}.py::intraAsymmetricLoss`;
notes §2.3), which is the published ASL [Ridnik et al.] applied to the pair logits. HST paper Eq. 5-6
writes the same idea; where the code differs from the paper we follow the code:

- Pair targets come from the **partial** labels: y_p = [t_i > 0][t_j > 0]. A pair with an unknown or a
  negative member is a negative pair (no masking). Eq. 6 uses D^n, "the pairs that co-occur in image n".
- Negative term: the code shifts the probability, q_m = max(q - clip, 0), and uses log(1 - q_m) with the
  weight q_m^gamma_neg (written as q_neg = min(1 - q + clip, 1), weight (1 - q_neg)^gamma_neg). Eq. 6
  writes (q - m)^gamma_2 log(1 - q): no max(., 0), unshifted log.
- The value is the mean over all B * P entries (Eq. 5: a sum over images and pairs), with a leading
  minus sign (Eq. 6 omits it).
- The focusing weight is **not** detached: gradients flow through it, as in the reference.

The pair order (`pair_indices`, `pair_index_matrix`) is defined in `ops/pseudo_labels.py`, which
also builds the co-occurrence matrix from the pair logits; they are re-exported here. Concrete
labels are checked on entry (`checks.partial_labels`); traced labels are not.
"""

import jax
import jax.numpy as jnp

from mlrpl_jax import checks
from mlrpl_jax.ops.pseudo_labels import pair_index_matrix, pair_indices

__all__ = ["intra_asymmetric_loss", "pair_index_matrix", "pair_indices", "pair_targets"]


def pair_targets(labels: jax.Array) -> jax.Array:
    """Pair targets of the co-occurrence loss, y_p = [t_i > 0] [t_j > 0] (float32 0/1).

    As coded (notes §2.3): a pair with an unknown (0) or a negative (-1) member is a negative pair.

    Args:
      labels: (B, C) int8 partial labels in {-1, 0, 1}.

    Returns:
      (B, P) float32 in {0, 1}, pairs in `pair_indices` order.
    """
    checks.partial_labels(labels, where="pair_targets")
    return _pair_targets(labels)


def _pair_targets(labels: jax.Array) -> jax.Array:
    """`pair_targets` without the label check."""
    i, j = pair_indices(labels.shape[-1])
    positive = labels > 0
    return (positive[:, i] & positive[:, j]).astype(jnp.float32)


def intra_asymmetric_loss(
    pair_logits: jax.Array,
    labels: jax.Array,
    *,
    gamma_neg: float = 2.0,
    gamma_pos: float = 1.0,
    clip: float = 0.05,
    eps: float = 1e-8,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Asymmetric loss on the IST pair logits (notes §2.3; HST paper Eq. 5-6, see module docstring).

    With q = sigmoid(l), q_neg = min(1 - q + clip, 1) and y the pair target (`pair_targets`):
      base   = -[y log max(q, eps) + (1 - y) log max(q_neg, eps)]
      weight = (1 - q)^gamma_pos          if y = 1
               (1 - q_neg)^gamma_neg      if y = 0      (not detached)
      loss   = mean over all B * P entries of base * weight.
    The clamps pass gradient on their boundary (torch's clamp backward); an exponent of 0 gives the
    weight 1 without gradient (torch's pow backward), also where the base is 0. The defaults are
    the values the reference trainers pass (gamma_neg 2, gamma_pos 1, clip 0.05, eps 1e-8).

    Args:
      pair_logits: (B, P) float IST logits, P = C (C - 1) / 2 in `pair_indices` order.
      labels: (B, C) int8 partial labels in {-1, 0, 1}.
      gamma_neg, gamma_pos: focusing exponents of negative and positive pairs.
      clip: probability shift of the negative term (ASL's m).
      eps: floor inside the logarithms.

    Returns:
      (loss, metrics): scalar loss and {'positive_pair_fraction': fraction of pairs with target 1}.
    """
    checks.partial_labels(labels, where="intra_asymmetric_loss")
    num_classes = labels.shape[-1]
    num_pairs = num_classes * (num_classes - 1) // 2
    if pair_logits.shape != (labels.shape[0], num_pairs):
        raise ValueError(
            f"pair_logits {pair_logits.shape} != (B, P) = ({labels.shape[0]}, {num_pairs})"
        )
    y = _pair_targets(labels)
    q = jax.nn.sigmoid(pair_logits.astype(jnp.float32))
    shifted = 1.0 - q + clip
    q_neg = jnp.where(shifted > 1.0, 1.0, shifted)  # clamp(max=1), gradient 1 on the boundary
    log_q = jnp.log(jnp.where(q < eps, eps, q))
    log_q_neg = jnp.log(jnp.where(q_neg < eps, eps, q_neg))
    base = -(y * log_q + (1.0 - y) * log_q_neg)
    prob = q * y + q_neg * (1.0 - y)
    gamma = gamma_pos * y + gamma_neg * (1.0 - y)
    # torch's pow backward: no gradient where the exponent is 0 (lax.pow's is 0 * 0^-1 = NaN
    # where the base is 0, i.e. wherever a probability saturates in float32).
    zero = gamma == 0.0
    weight = jnp.where(zero, 1.0, jnp.power(jnp.where(zero, 1.0, 1.0 - prob), gamma))
    loss = jnp.mean(base * weight)
    return loss, {"positive_pair_fraction": jnp.mean(y)}
