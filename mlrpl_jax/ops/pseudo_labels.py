"""Pseudo-label rules of SST and HST, and SST's positive-feature bank, as pure functions of arrays.

Labels t are int8 partial labels in {-1, 0, 1} (known negative, unknown, known positive).

Intra-image transfer (IST; HST paper §3.2 Eq. 3-4; notes §7.3, §9.3): `cooccurrence_matrix` turns the
IST pair logits into a per-image symmetric matrix S, `intra_scores` averages S over the known positives.
The IST head's pair order is `pair_indices` / `pair_index_matrix`: p(i, j) = i (C - 1) -
i (i - 1) / 2 + (j - i - 1) for i < j (`losses.cooccurrence` re-exports both).
Cross-image transfer (CST; HST paper §3.3 Eq. 7-8): `mean_cosine_to_set` is the mean cosine between a
category feature and a set of vectors of that category (SST: the FIFO bank of `update_bank`, notes
§7.2-7.3; HST: the K-means prototypes, notes §9.3).
Thresholds: `sst_threshold` (SST code), `indicator` (paper Eq. 4 and 8), `hst_soft_scores` (HST's
differentiable relaxation, DTL §3.4 Eq. 12-15, as coded), and `complete_labels` adds the pseudo
positives to the known labels. `pseudo_label_quality` counts hits for precision/recall logging.

Cosine semantics. The reference uses `torch.nn.CosineSimilarity(eps=1e-9)` of torch 1.7:
cos(x, y) = x.y / sqrt(max(|x|^2 |y|^2, eps^2)) = x.y / max(|x| |y|, eps). `mean_cosine_to_set` uses the
exact shortcut mean_n cos(x, y_n) = (x / |x|) . mean_n (y_n / |y_n|), each vector divided by
max(|.|, eps) (a zero vector gives cosine 0 and still counts in the mean). This equals the torch formula
whenever |x| |y_n| >= eps and |x|, |y_n| >= eps (or one of them is exactly zero); it differs only for
nonzero vectors with |x| |y_n| < 1e-9, where torch returns x.y / 1e-9 (a shrunk cosine) and the shortcut
the true cosine. Tested against the per-pair formula to float32 tolerance.

The rules that take labels check concrete ones on entry (`checks.partial_labels`, and
`checks.full_labels` for the full ground truth of `pseudo_label_quality`): errors.InputError
outside {-1, 0, 1} (resp. {0, 1}). Traced labels (inside jit) are not checked, so a jitted step
compiles to the same program.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mlrpl_jax import checks

COSINE_EPS = 1e-9  # torch.nn.CosineSimilarity(eps=1e-9) in every reference loss and rule


def pair_indices(num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Class indices of the unordered pairs, in the IST head's order.

    Args:
      num_classes: C.

    Returns:
      (i, j): two (P,) int32 numpy arrays, P = C (C - 1) / 2, with i < j, row-major (the order of
      `jnp.triu_indices(C, k=1)`). Static constants: usable as gather indices inside jit.
    """
    i, j = np.triu_indices(num_classes, k=1)
    return i.astype(np.int32), j.astype(np.int32)


def pair_index_matrix(num_classes: int) -> np.ndarray:
    """(C, C) int32 numpy matrix M with M[i, j] = M[j, i] = p(min(i, j), max(i, j)); diagonal 0.

    The diagonal has no pair; it holds 0 so that the matrix is a valid gather index everywhere
    (callers overwrite the diagonal).
    """
    i, j = pair_indices(num_classes)
    index = np.zeros((num_classes, num_classes), np.int32)
    p = np.arange(i.size, dtype=np.int32)
    index[i, j] = p
    index[j, i] = p
    return index


def _clamp(x: jax.Array, lo: float, hi: float) -> jax.Array:
    """torch.clamp with torch's backward: gradient 1 where lo <= x <= hi (inclusive), else 0.

    `jnp.clip` is a min/max composition whose gradient can be split at ties; the reference's learnable
    HST margins sit exactly on the boundary at initialisation (notes §9.3), so the tie matters.
    """
    return jnp.where(x < lo, lo, jnp.where(x > hi, hi, x))


def normalize(x: jax.Array, eps: float = COSINE_EPS) -> jax.Array:
    """x / max(|x|, eps) along the last axis; a zero vector stays zero (with a finite gradient)."""
    squared_norm = jnp.sum(x * x, axis=-1, keepdims=True)
    return x / jnp.sqrt(jnp.maximum(squared_norm, eps * eps))


def cooccurrence_matrix(pair_logits: jax.Array, num_classes: int) -> jax.Array:
    """Per-image co-occurrence matrix of the IST head (notes §7.3; HST paper Eq. 3, P_n).

    S[b, i, i] = 1 and S[b, i, j] = S[b, j, i] = sigmoid(l[b, p(min(i, j), max(i, j))]).

    Args:
      pair_logits: (B, P) float IST logits, P = C (C - 1) / 2, pairs in `pair_indices` order.
      num_classes: C.

    Returns:
      (B, C, C) float32, symmetric, unit diagonal; differentiable w.r.t. the off-diagonal logits.
    """
    batch = pair_logits.shape[0]
    if num_classes < 2:
        return jnp.ones((batch, num_classes, num_classes), jnp.float32)
    probs = jax.nn.sigmoid(pair_logits.astype(jnp.float32))
    s = probs[:, pair_index_matrix(num_classes)]
    return jnp.where(np.eye(num_classes, dtype=bool), 1.0, s)


def intra_scores(s: jax.Array, labels: jax.Array) -> jax.Array:
    """Known-positive average of the co-occurrence matrix (notes §7.3/§9.3; HST paper Eq. 4, 12).

    score[b, i] = sum_{j: t[b, j] = +1} S[b, i, j] / max(#known positives of b, 1), clamped to [-1, 1]
    (a no-op clamp kept from the reference; it passes gradient everywhere in range). The sum includes
    the self term S_ii = 1 when i is a known positive. An image without known positives scores 0.
    Paper vs code: Eq. 4 and 12 write the plain sum sum_j p_ij y_j over the known positives; the
    reference (SST and HST) divides it by their number, as here.

    Args:
      s: (B, C, C) float co-occurrence matrices (`cooccurrence_matrix`).
      labels: (B, C) int8 partial labels in {-1, 0, 1}.

    Returns:
      (B, C) float32 scores in [0, 1]; differentiable w.r.t. S.
    """
    checks.partial_labels(labels, where="intra_scores")
    positive = (labels == 1).astype(jnp.float32)
    total = jnp.einsum("bij,bj->bi", s.astype(jnp.float32), positive)
    count = jnp.maximum(jnp.sum(positive, axis=-1, keepdims=True), 1.0)
    return _clamp(total / count, -1.0, 1.0)


def mean_cosine_to_set(features: jax.Array, sets: jax.Array) -> jax.Array:
    """Mean cosine between each category feature and all vectors of that category's set.

    d[b, c] = mean_{n < N} cos(v[b, c], sets[c, n]) with the torch-1.7 eps 1e-9 cosine (module docstring).
    Zero rows (unfilled SST bank slots) give cosine 0 but still count in the mean (notes §7.3). Used for
    SST's inter-image scores (sets = bank, (C, N, D)) and HST's CST similarities (HST paper Eq. 7-8,
    13; sets = prototypes, (C, K, D)). Computed as normalize(v) . mean_n normalize(sets[c, n]): O(B C D +
    C N D), never a (B, C, N, D) tensor.

    Args:
      features: (B, C, D) float semantic features v.
      sets: (C, N, D) float vectors per class.

    Returns:
      (B, C) float32 mean cosines; differentiable w.r.t. both inputs.
    """
    v = normalize(features.astype(jnp.float32))
    centre = jnp.mean(normalize(sets.astype(jnp.float32)), axis=1)  # (C, D)
    return jnp.einsum("bcd,cd->bc", v, centre)


def sst_threshold(scores: jax.Array, theta: jax.Array | float) -> jax.Array:
    """SST's two-step in-place thresholding, as coded (`loss/SST.py`; notes §7.3).

    Step 1 sets values >= theta to 1, step 2 then sets values <= theta to 0. For theta < 1 the result is
    the indicator [score >= theta] (paper Eq. 4/8); **for theta >= 1 every value ends up 0** (the 1s of
    step 1 are <= theta), so the config default margin 1.0 yields no pseudo labels. Reproduced on purpose;
    `indicator` is the paper's rule.

    Args:
      scores: (...,) float scores.
      theta: scalar threshold (may be traced, e.g. a scheduled value).

    Returns:
      float32 array of scores' shape in {0, 1} (NaN stays NaN, as in the reference); constant
      (stop_gradient: the in-place assignments cut the reference's graph).
    """
    x = jax.lax.stop_gradient(scores.astype(jnp.float32))
    x = jnp.where(x >= theta, 1.0, x)
    x = jnp.where(x <= theta, 0.0, x)
    return x


def indicator(scores: jax.Array, theta: jax.Array | float, *, strict: bool = False) -> jax.Array:
    """The paper's hard pseudo-label rule 1[score >= theta] (HST paper Eq. 4 IST, Eq. 8 CST).

    With strict=True it is 1[score > theta], the rule HST's code applies to its soft scores
    (`y = [clamp(score - m, 0, 1) > 0]`, notes §9.3): `indicator(hst_soft_scores(s, m), 0, strict=True)`
    equals `indicator(s, m, strict=True)` (float subtraction is exact at zero).

    Args:
      scores: (...,) float scores.
      theta: scalar threshold.
      strict: use > instead of >=.

    Returns:
      float32 array of scores' shape in {0, 1}; constant (stop_gradient).
    """
    x = jax.lax.stop_gradient(scores)
    hit = x > theta if strict else x >= theta
    return hit.astype(jnp.float32)


def hst_soft_scores(scores: jax.Array, margin: jax.Array | float) -> jax.Array:
    """HST's differentiable pseudo-label scores y_soft = clamp(score - margin, 0, 1) (notes §9.3).

    The reference's relaxation of the indicator for threshold learning (HST paper §3.4: Eq. 12-13 define
    the differences d = score - theta; the code clamps them to [0, 1] and feeds them as *logits* to the
    partial BCE against the known labels, Eq. 14-15). torch's clamp backward passes gradient 1 where
    0 <= score - margin <= 1 **inclusive**: at initialisation (margin 1) an image with a single known
    positive i has score_i = 1, so d/dmargin = -1 there, as in the reference.

    Args:
      scores: (B, C) float scores (`intra_scores` or `mean_cosine_to_set`).
      margin: scalar learnable threshold.

    Returns:
      (B, C) float in [0, 1]; differentiable w.r.t. scores and margin.
    """
    return _clamp(scores - margin, 0.0, 1.0)


def complete_labels(labels: jax.Array, indicator01: jax.Array) -> jax.Array:
    """Known labels plus pseudo positives on the unknowns: t + [t == 0] * indicator.

    SST (notes §7.3) zeroes the thresholded scores of known entries and adds t; HST (notes §9.3) writes
    t + eq(t, 0) * [y_soft > 0]. Paper: y^{n,intra}, y^{n,cross} of Eq. 4/8 with the known labels kept.

    Args:
      labels: (B, C) partial labels in {-1, 0, 1} (int8 or float).
      indicator01: (B, C) hard pseudo labels in {0, 1} (`sst_threshold`, `indicator`).

    Returns:
      (B, C) labels.dtype in {-1, 0, 1}; constant (stop_gradient on the indicator, as in the reference).
    """
    checks.partial_labels(labels, where="complete_labels")
    pseudo = jax.lax.stop_gradient(indicator01).astype(labels.dtype)
    return labels + (labels == 0).astype(labels.dtype) * pseudo


def update_bank(bank: jax.Array, features: jax.Array, labels: jax.Array) -> jax.Array:
    """SST's per-class FIFO bank of known-positive features (notes §7.2; `model/SST.py::updateFeature`).

    For every class c, the detached features v[b, c] of the images with t[b, c] = +1 are prepended to
    bank[c] in batch order and the first N rows kept: the reference's
    `cat((v[t[:, c] == 1, c], bank[c]))[:N]`. Row 0 is thus the first positive image of the newest
    batch; the oldest rows fall off the end; if a batch has more than N positives of a class, only its
    first N (in batch order) are kept. Vectorised with two gathers (no loop over classes).
    Code vs paper (notes §7.6): the code's inter-image transfer compares against this bank of the most
    recent known-positive features (unfilled zero rows included), not against learned prototypes; HST
    replaces it by K-means prototypes (HST paper §3.3).

    Args:
      bank: (C, N, D) float bank (zero-initialised; zero rows count in `mean_cosine_to_set`).
      features: (B, C, D) float semantic features (stop_gradient is applied).
      labels: (B, C) int8 partial labels in {-1, 0, 1}.

    Returns:
      (C, N, D) updated bank, bank.dtype.
    """
    checks.partial_labels(labels, where="update_bank")
    batch = features.shape[0]
    num_rows = bank.shape[1]
    v = jax.lax.stop_gradient(features).astype(bank.dtype).transpose(1, 0, 2)  # (C, B, D)
    positive = (labels == 1).T  # (C, B)
    num_new = jnp.sum(positive, axis=1, dtype=jnp.int32)[:, None]  # (C, 1)
    # Batch indices of each class's positives first, in batch order (stable sort on "not positive").
    order = jnp.argsort(~positive, axis=1, stable=True)  # (C, B)
    rows = jnp.arange(num_rows, dtype=jnp.int32)[None, :]  # (1, N)
    new_source = jnp.take_along_axis(order, jnp.minimum(rows, batch - 1), axis=1)  # (C, N)
    new_rows = jnp.take_along_axis(v, new_source[..., None], axis=1)
    old_source = jnp.clip(
        rows - num_new, 0, num_rows - 1
    )  # row r of the result <- old row r - n_new
    old_rows = jnp.take_along_axis(bank, old_source[..., None], axis=1)
    return jnp.where((rows < num_new)[..., None], new_rows, old_rows)


def pseudo_label_quality(
    pseudo: jax.Array, labels: jax.Array, full: jax.Array
) -> dict[str, jax.Array]:
    """Counts for pseudo-label precision/recall on the unknown entries (logging only).

    Counts, not ratios, so that sums over steps and devices aggregate exactly:
      precision = pseudo_positive_correct / pseudo_positive,
      recall    = pseudo_positive_correct / unknown_positive.
    Per-batch counts are int32; accumulate epochs on the host (Python ints or int64).

    Args:
      pseudo: (B, C) completed labels in {-1, 0, 1} (`complete_labels`).
      labels: (B, C) partial labels in {-1, 0, 1}; only entries with t = 0 are counted.
      full: (B, C) full ground truth in {0, 1}.

    Returns:
      dict of int32 scalars: 'unknown' (#t = 0), 'unknown_positive' (#t = 0 and full = 1),
      'pseudo_positive' (#t = 0 and pseudo = +1), 'pseudo_positive_correct' (... and full = 1),
      'pseudo_negative' (#t = 0 and pseudo = -1), 'pseudo_negative_correct' (... and full = 0).
    """
    checks.partial_labels(pseudo, where="pseudo_label_quality", name="pseudo")
    checks.partial_labels(labels, where="pseudo_label_quality")
    checks.full_labels(full, where="pseudo_label_quality", name="full")
    unknown = labels == 0
    truth = full > 0
    pos = unknown & (pseudo == 1)
    neg = unknown & (pseudo == -1)

    def count(mask):
        return jnp.sum(mask, dtype=jnp.int32)

    return {
        "unknown": count(unknown),
        "unknown_positive": count(unknown & truth),
        "pseudo_positive": count(pos),
        "pseudo_positive_correct": count(pos & truth),
        "pseudo_negative": count(neg),
        "pseudo_negative_correct": count(neg & ~truth),
    }
