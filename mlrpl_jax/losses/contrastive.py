"""Contrastive losses on the category-specific semantic features v (B, C, D) of SST and HST.

`instance_contrastive_loss`: the reference's `ContrastiveLoss` (SST, SARB, DSRB) and
`InstanceContrastiveLoss` (HST), notes §2.2; HST paper §3.3 Eq. 9-11 (SST's cross-image loss). For
every batch pair i < j and class c, with the torch-1.7 cosine (eps 1e-9, see `ops/pseudo_labels.py`):
  pos-pos (t_i = t_j = +1):              1 - cos
  pos-neg (both known, exactly one +1):  1 + cos
  neg-neg (t_i = t_j = -1):              1 + cos
Where the code differs from the paper we follow the code:
- Eq. 11 gives 1 + s to "otherwise", i.e. every pair that is not pos-pos, unknown members included;
  the code only uses pairs whose two labels are known.
- The code sub-samples the pos-neg and neg-neg terms (random + hardest, below); Eq. 10 sums them all.
- The value is a mean over the kept terms (Eq. 10: a sum).

`prototype_contrastive_loss`: HST's `PrototypeContrastiveLoss` (notes §9.4), a code-only term (the
paper has no prototype loss; its Eq. 10-11 are the instance loss). The coded sign pushes known positives
away from their class prototypes; `paper_sign=True` gives the evidently intended sign.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax import checks
from mlrpl_jax.ops.pseudo_labels import COSINE_EPS, mean_cosine_to_set


def _pair_cosine(features: jax.Array, i: np.ndarray, j: np.ndarray) -> jax.Array:
    """cos(v[i_p, c], v[j_p, c]) = x.y / sqrt(max(|x|^2 |y|^2, eps^2)) (torch 1.7), shape (P_B, C).

    Dot products come from one (B, B, C) Gram einsum; the (P_B, C, D) pair tensor is never built.
    """
    gram = jnp.einsum("icd,jcd->ijc", features, features)  # (B, B, C)
    squared_norm = jnp.sum(features * features, axis=-1)  # (B, C)
    denominator = jnp.sqrt(jnp.maximum(squared_norm[i] * squared_norm[j], COSINE_EPS**2))
    return gram[i, j] / denominator


def _ranks(sort_key: jax.Array) -> jax.Array:
    """rank[n] = position of entry n in the stable ascending order of sort_key (1-D)."""
    order = jnp.argsort(sort_key, stable=True)
    return (
        jnp.zeros(sort_key.shape, jnp.int32)
        .at[order]
        .set(jnp.arange(sort_key.size, dtype=jnp.int32))
    )


def _subsample_weights(
    valid: jax.Array, loss: jax.Array, num_pos_pos: jax.Array, key: jax.Array
) -> jax.Array:
    """Multiplicity weights (0, 1 or 2) of the reference's random + hardest sub-sampling of one set.

    Random part: a uniformly random subset of min(2 N_pp, n) valid entries (random keys -> rank; the
    reference takes a `randperm` prefix). Hard part: the min(N_pp, n) valid entries with the largest
    loss (ties broken by position). An entry in both parts counts twice, as in the reference's concat.
    """
    flat_valid = valid.reshape(-1)
    flat_loss = jax.lax.stop_gradient(loss).reshape(-1)
    uniform = jax.random.uniform(key, flat_valid.shape)
    random_rank = _ranks(jnp.where(flat_valid, uniform, 2.0))  # invalid entries sort last
    hard_rank = _ranks(jnp.where(flat_valid, -flat_loss, jnp.inf))
    keep_random = flat_valid & (random_rank < 2 * num_pos_pos)
    keep_hard = flat_valid & (hard_rank < num_pos_pos)
    weights = keep_random.astype(jnp.float32) + keep_hard.astype(jnp.float32)
    return weights.reshape(valid.shape)


def instance_contrastive_loss(
    features: jax.Array,
    labels: jax.Array,
    key: jax.Array,
    *,
    subsample: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Instance contrastive loss over batch pairs, as coded (notes §2.2; module docstring).

    Terms: for every pair i < j of the batch (row-major) and class c, the pos-pos, pos-neg and neg-neg
    terms of the module docstring. Sub-sampling (subsample=True, the reference; only when N_pp, the
    number of pos-pos terms, is > 0): the pos-neg set and, independently, the neg-neg set are each
    replaced by up to 2 N_pp entries drawn uniformly without replacement **plus** their N_pp largest
    terms (the hardest; an entry drawn by both counts twice). With N_pp = 0 both sets are kept whole.
    loss = sum(w * term) / sum(w) over [pos-pos, pos-neg', neg-neg'] with multiplicity weights w.
    If no term qualifies at all the reference returns NaN (mean of an empty tensor); here it returns 0
    with zero gradient.

    The sub-sampling weights are constants (the reference's index selection has no gradient); gradients
    flow through the cosines into v.

    Args:
      features: (B, C, D) float semantic features v (pre-GNN in the reference).
      labels: (B, C) int8 partial labels in {-1, 0, 1}.
      key: PRNG key of the random part of the sub-sampling.
      subsample: False keeps every pos-neg and neg-neg term (weights 0/1).

    Returns:
      (loss, metrics): scalar loss and float32 counts {'num_pos_pos', 'num_pos_neg', 'num_neg_neg'
      (terms before sub-sampling), 'num_terms' (sum of the weights)}.

    Raises:
      errors.InputError: concrete labels outside {-1, 0, 1} (traced labels are not checked).
    """
    checks.partial_labels(labels, where="instance_contrastive_loss")
    i, j = np.triu_indices(features.shape[0], k=1)
    cos = _pair_cosine(features.astype(jnp.float32), i, j)  # (P_B, C)
    ti, tj = labels[i], labels[j]
    pos_pos = (ti == 1) & (tj == 1)
    pos_neg = (ti != 0) & (tj != 0) & (ti != tj)
    neg_neg = (ti == -1) & (tj == -1)
    pull = 1.0 - cos
    push = 1.0 + cos
    w_pp = pos_pos.astype(jnp.float32)
    w_pn = pos_neg.astype(jnp.float32)
    w_nn = neg_neg.astype(jnp.float32)
    num_pp = jnp.sum(pos_pos, dtype=jnp.int32)
    if subsample:
        key_nn, key_pn = jax.random.split(key)
        active = num_pp > 0
        w_nn = jnp.where(active, _subsample_weights(neg_neg, push, num_pp, key_nn), w_nn)
        w_pn = jnp.where(active, _subsample_weights(pos_neg, push, num_pp, key_pn), w_pn)
    total = jnp.sum(w_pp * pull) + jnp.sum((w_pn + w_nn) * push)
    num_terms = jnp.sum(w_pp) + jnp.sum(w_pn) + jnp.sum(w_nn)
    loss = total / jnp.maximum(num_terms, 1.0)  # weights are integers: num_terms is 0 or >= 1
    metrics = {
        "num_pos_pos": num_pp.astype(jnp.float32),
        "num_pos_neg": jnp.sum(pos_neg, dtype=jnp.float32),
        "num_neg_neg": jnp.sum(neg_neg, dtype=jnp.float32),
        "num_terms": num_terms,
    }
    return loss, metrics


def prototype_contrastive_loss(
    features: jax.Array,
    labels: jax.Array,
    prototypes: jax.Array,
    *,
    paper_sign: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """HST's prototype contrastive loss (notes §9.4; code only, see module docstring).

    d[b, c] = mean_k cos(v[b, c], prototypes[c, k]) (torch-1.7 cosine, eps 1e-9; computed with the exact
    normalised-mean shortcut of `mean_cosine_to_set`, zero prototypes counting as cosine 0; equal to the
    per-prototype torch formula to float32 tolerance unless |v| |p| < 1e-9 for nonzero vectors).
      as coded (paper_sign=False): loss = mean over all B * C entries of (1 + t d)
        (t = +1: 1 + d pushes positives away from their prototypes; t = -1: 1 - d pulls negatives in)
      paper_sign=True:               loss = mean over all B * C entries of (1 - t d)
        (pulls known positives toward, pushes known negatives away: the intent stated in the notes)
    Unknown entries (t = 0) contribute the constant 1 and count in the mean either way.

    Args:
      features: (B, C, D) float semantic features v.
      labels: (B, C) int8 partial labels in {-1, 0, 1}.
      prototypes: (C, K, D) float class prototypes (K-means centres; treated as constants by callers).
      paper_sign: use the intended sign instead of the coded one.

    Returns:
      (loss, metrics): scalar loss and {'mean_prototype_cosine': mean of d over the known positives}.

    Raises:
      errors.InputError: concrete labels outside {-1, 0, 1} (traced labels are not checked).
    """
    checks.partial_labels(labels, where="prototype_contrastive_loss")
    d = mean_cosine_to_set(features, prototypes)  # (B, C)
    t = labels.astype(jnp.float32)
    sign = -1.0 if paper_sign else 1.0
    loss = jnp.mean(1.0 + sign * t * d)
    positive = (labels == 1).astype(jnp.float32)
    mean_pos = jnp.sum(positive * d) / jnp.maximum(jnp.sum(positive), 1.0)
    return loss, {"mean_prototype_cosine": jax.lax.stop_gradient(mean_pos)}
