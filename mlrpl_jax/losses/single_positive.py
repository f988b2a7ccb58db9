"""Losses of the single-positive / missing-label baselines of Cole et al. (CVPR 2021), BCE-LS,
and Durand et al.'s normalised partial BCE.

Notation: x (B, C) logits, p = sigmoid(x), labels y in {-1, 0, 1} (+1 observed positive, -1
observed negative, 0 unobserved). Cole et al.'s code (`elijahcole/single-positive-multi-label`
`losses.py`; `shared/reference/baselines_notes.md` §5-6) is followed exactly:

* `neg_log(a) = -log(a + 1e-5)` (an epsilon added, not a clamp) in every Cole loss;
* the main term fills a (B, C) matrix M and is reduced as **sum(M) / (B C)**, a mean over all
  entries including the zeros; regularisers are added unscaled;
* `assume negative` treats unobserved *and* observed negatives as negatives.

Losses:

* `an`: M = neg_log(p) on positives, neg_log(1 - p) elsewhere.
* `wan`: as `an` with the non-positive entries divided by (C - 1).
* `an_ls` / `bce_ls`: label smoothing with coefficient e (0.1): a positive entry costs
  (1 - e) neg_log(p) + e neg_log(1 - p), a negative one (1 - e) neg_log(1 - p) + e neg_log(p). `an_ls`
  treats unobserved entries as negatives; `bce_ls` scores the known entries only (clean labels in
  the paper's use) and divides by B C as well.
* `epr`: M = neg_log(p) on positives only, plus the expected-positive regulariser
  R(p) = ((1/B) sum_{i, c} p_ic - k)^2 / C^2 with k the expected number of positives per image.
* `role`: Cole's regularised online label estimation with a label-estimate table q (the batch's
  rows, probabilities): M = 0.5 [neg_log(p) + neg_log(q)] on positives + 0.5 [BCE(p; sg(q)) +
  BCE(q; sg(p))] on all entries, BCE(a; t) = t neg_log(a) + (1 - t) neg_log(1 - a), sg = stop
  gradient; plus 0.5 [R(p) + R(q)].
* `normalized_partial_bce`: Durand et al. (CVPR 2019): per image
  l = g(p_y) / C * sum_c BCE over its known labels, p_y = (known labels of the image) / C,
  g(p) = alpha p^gamma + beta (alpha -4.45, beta 5.45, gamma 1: g(1) = 1, g(0.1) = 5); the batch
  loss is the mean of l over the images. (The reference code's reduction, a mean over the known
  entries of the batch, is `losses.partial_bce`.)

Every loss checks concrete labels on entry (`checks.partial_labels`: errors.InputError outside
{-1, 0, 1}); traced labels (inside jit) are not checked.
"""

import jax
import jax.numpy as jnp

from mlrpl_jax import checks

_COLE_EPS = 1e-5


def neg_log(a: jax.Array) -> jax.Array:
    """Cole et al.'s -log(a + 1e-5)."""
    return -jnp.log(a + _COLE_EPS)


def _probs_and_masks(logits, labels, where: str):
    """(sigmoid(logits), positive mask, negative mask), after checking concrete labels."""
    checks.partial_labels(labels, where=where)
    p = jax.nn.sigmoid(logits.astype(jnp.float32))
    y = labels.astype(jnp.float32)
    return p, (y > 0).astype(jnp.float32), (y < 0).astype(jnp.float32)


def _mean_all(matrix: jax.Array) -> jax.Array:
    """Cole's reduction: sum over all B C entries / (B C)."""
    return jnp.sum(matrix) / matrix.size


def an(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Assume negative: every non-positive entry is a negative; mean over all B C entries."""
    p, pos, _ = _probs_and_masks(logits, labels, "an")
    m = pos * neg_log(p) + (1.0 - pos) * neg_log(1.0 - p)
    return _mean_all(m), {}


def wan(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weak assume negative: `an` with the non-positive entries weighted 1 / (C - 1)."""
    p, pos, _ = _probs_and_masks(logits, labels, "wan")
    num_classes = logits.shape[-1]
    m = pos * neg_log(p) + (1.0 - pos) * neg_log(1.0 - p) / (num_classes - 1)
    return _mean_all(m), {}


def _smoothed(p, pos, neg, coef):
    """Label-smoothed BCE matrix of positive and negative masks."""
    cost_pos = (1.0 - coef) * neg_log(p) + coef * neg_log(1.0 - p)
    cost_neg = (1.0 - coef) * neg_log(1.0 - p) + coef * neg_log(p)
    return pos * cost_pos + neg * cost_neg


def an_ls(
    logits: jax.Array, labels: jax.Array, *, coef: float = 0.1
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Assume negative with label smoothing (targets 1 - coef and coef); mean over B C."""
    p, pos, _ = _probs_and_masks(logits, labels, "an_ls")
    return _mean_all(_smoothed(p, pos, 1.0 - pos, coef)), {}


def bce_ls(
    logits: jax.Array, labels: jax.Array, *, coef: float = 0.1
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """BCE with label smoothing on the known entries (unknown entries cost 0); sum / (B C)."""
    p, pos, neg = _probs_and_masks(logits, labels, "bce_ls")
    return _mean_all(_smoothed(p, pos, neg, coef)), {
        "known_fraction": jnp.sum(pos + neg) / pos.size
    }


def expected_positive_regularizer(p: jax.Array, expected_positives: float) -> jax.Array:
    """R(p) = ((1/B) sum_{i, c} p_ic - k)^2 / C^2 (Cole et al. `expected_positive_regularizer`)."""
    batch, num_classes = p.shape
    return (jnp.sum(p) / batch - expected_positives) ** 2 / num_classes**2


def epr(
    logits: jax.Array, labels: jax.Array, *, expected_positives: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Expected positive regularisation: positives' neg_log(p) / (B C) + R(p)."""
    p, pos, _ = _probs_and_masks(logits, labels, "epr")
    reg = expected_positive_regularizer(p, expected_positives)
    return _mean_all(pos * neg_log(p)) + reg, {"epr_regularizer": reg}


def role(
    logits: jax.Array, labels: jax.Array, estimates: jax.Array, *, expected_positives: float
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ROLE's loss of the classifier logits and the batch's label estimates (module docstring).

    Args:
      logits: (B, C) classifier logits. labels: (B, C) {-1, 0, 1} observed labels.
      estimates: (B, C) the label-estimate table's rows for the batch, as *logits* (the table
        is learned in logit space and squashed by a sigmoid, as in Cole et al.).
      expected_positives: k of the regulariser.
    """
    p, pos, _ = _probs_and_masks(logits, labels, "role")
    q = jax.nn.sigmoid(estimates.astype(jnp.float32))

    def bce(a, t):
        return t * neg_log(a) + (1.0 - t) * neg_log(1.0 - a)

    observed = pos * (neg_log(p) + neg_log(q))
    cross = bce(p, jax.lax.stop_gradient(q)) + bce(q, jax.lax.stop_gradient(p))
    main = 0.5 * _mean_all(observed) + 0.5 * _mean_all(cross)
    reg = 0.5 * (
        expected_positive_regularizer(p, expected_positives)
        + expected_positive_regularizer(q, expected_positives)
    )
    return main + reg, {"epr_regularizer": reg, "estimate_mean": jnp.mean(q)}


def durand_g(known_proportion: jax.Array, alpha: float, beta: float, gamma: float) -> jax.Array:
    """g(p) = alpha p^gamma + beta."""
    return alpha * known_proportion**gamma + beta


def normalized_partial_bce(
    logits: jax.Array,
    labels: jax.Array,
    *,
    alpha: float = -4.45,
    beta: float = 5.45,
    gamma: float = 1.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Durand et al.'s partial BCE: mean over images of g(p_y) / C * sum of the image's known
    entries' BCE (module docstring). An image without known labels contributes 0."""
    checks.partial_labels(labels, where="normalized_partial_bce")
    x = logits.astype(jnp.float32)
    y = labels.astype(jnp.float32)
    pos, neg = (y > 0).astype(jnp.float32), (y < 0).astype(jnp.float32)
    per_entry = -(pos * jax.nn.log_sigmoid(x) + neg * jax.nn.log_sigmoid(-x))
    num_classes = x.shape[-1]
    known = jnp.sum(pos + neg, axis=-1)
    g = durand_g(known / num_classes, alpha, beta, gamma)
    per_image = jnp.where(known > 0, g / num_classes * jnp.sum(per_entry, axis=-1), 0.0)
    return jnp.mean(per_image), {"known_fraction": jnp.sum(known) / y.size}
