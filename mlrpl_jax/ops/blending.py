"""Representation blending of SARB (AAAI 2022) and DSRB (ESWA 2024), as pure functions of arrays.

Paper: DSRB (``shared/papers/001_7fe829472d2c0cd1.txt``) §4.3-4.4, eq. 6-13; reference behaviour:
``shared/reference/hcp_mlr_pl_notes.md`` §8 (SARB) and §10 (DSRB).

Shapes: B batch, C classes, H x W map, D feature dim. "Features" are the category features of the
SSGRL core: either the pooled vectors v (B, C, D) or the category-specific maps F (B, C, H, W, D)
with v = sum_{h,w} F (semantic decoupling and semantic attention both pool by a spatial sum).
Every blend here takes features of shape (B, C, ...) and works on either.

**Maps are never needed.** Every blend below is F' = m F + (1 - m) G with a coefficient m that is
constant over (h, w) for each (b, c). The spatial sum is linear, so
sum_{h,w} F' = m sum F + (1 - m) sum G = m v + (1 - m) g: blending the maps and then pooling equals
blending the pooled vectors. This holds for IPRB (G = the partner's maps, eq. 6/8) and for PPRB
(G = the prototype map P_c^k, with g = its spatial sum, eq. 10/12), so the methods call these
functions on v (B, C, D) and never build the (B, C, H, W, D) maps; the tests check that the map
form pooled and the vector form agree. (It does not hold for the mixup baseline in backbone
feature-map space: the head's attention is recomputed on the mixed map, so `mixup` is applied to
the map before the head.)

Functions:
* `instance_blend` — IPRB / SARB's ILRB (eq. 6-9): partner = the batch reversed.
* `select_unknown_classes` — the classes blended with a prototype: `top_k` unknown classes per image,
  drawn uniformly (eq. 10, "random({c | y_c = 0})").
* `prototype_blend` — PPRB / SARB's PLRB (eq. 10-13) given the selected classes and prototypes.
* `attention_quadrants`, `other_quadrants` — DSRB's location-sensitive prototype choice (notes §10.3).
* `accumulate_location_sums`, `location_prototypes` — DSRB's prototypes per (class, quadrant)
  (notes §10.4), as C x 4 vectors.
* `mixup` — pixel- or feature-map-space mixup with the reversed batch (DSRB Table 2 baselines).
"""

import jax
import jax.numpy as jnp

NUM_QUADRANTS = 4  # DSRB's one level of spatial split: 0 top-left, 1 top-right, 2 bottom-left, 3 BR


def _expand(x: jax.Array, ndim: int) -> jax.Array:
    """(B, C) -> (B, C, 1, ..., 1) with `ndim` dimensions in all."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def partner_mask(labels: jax.Array) -> jax.Array:
    """(B, C) bool: y_c^n = 0 and y_c^m = +1, where the partner m of image n is image B - 1 - n
    (the batch reversed, `torch.flip(y, dims=[0])`; with odd B the middle image is its own partner,
    so it is never blended). The condition of eq. 6-7."""
    return (labels == 0) & (labels[::-1] == 1)


def instance_blend(
    features: jax.Array, labels: jax.Array, alpha: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Instance-perspective blending (IPRB, DSRB eq. 6-9; SARB's ILRB, notes §8.2, §10.2).

    With m[b, c] = alpha_c where `partner_mask` holds and 1 elsewhere (eq. 8's A, per class):
      F^[b, c] = m F[b, c] + (1 - m) F[B-1-b, c]                       (eq. 6 / 8)
      y^[b, c] = m y[b, c] + (1 - m) y[B-1-b, c]  = 1 - alpha_c on blended entries, y elsewhere
                                                                       (eq. 7 / 9)
    (DSRB's Algorithm 1 writes the partner's coefficient as ones outside the blended entries; the
    equations and the released code use 1 - m, as here.)

    Linear in F with a coefficient constant over any trailing axes, so pooling commutes with it:
    `instance_blend(maps).sum(spatial)` equals `instance_blend(maps.sum(spatial))` (module docstring).

    Args:
      features: (B, C, ...) float: vectors v (B, C, D) or maps (B, C, H, W, D).
      labels: (B, C) partial labels in {-1, 0, 1}.
      alpha: () or (C,) blending coefficients (learnable; gradients flow through both outputs).

    Returns:
      (blended features, same shape and dtype as `features`; targets (B, C) float32 in [-1, 1]).
    """
    blend = partner_mask(labels)
    m = jnp.where(blend, jnp.broadcast_to(alpha, labels.shape), 1.0).astype(jnp.float32)
    t = labels.astype(jnp.float32)
    mf = _expand(m, features.ndim).astype(features.dtype)
    blended = mf * features + (1 - mf) * features[::-1]
    return blended, m * t + (1 - m) * t[::-1]


def select_unknown_classes(key: jax.Array, labels: jax.Array, top_k: int = 1) -> jax.Array:
    """(B, C) bool: the classes of each image blended with a prototype (eq. 10, notes §8.3, §10.3).

    As coded: r ~ U[0, 1)^(B x C), zeroed where the label is known, and the `top_k` largest entries
    of each row are selected, i.e. `top_k` unknown classes drawn uniformly without replacement. If an
    image has fewer than `top_k` unknown classes, the rest are the lowest-index known classes (ties
    at 0 go to the lowest index, the first index `torch.topk`/`argmax` returns); an image with no
    unknown class thus blends class 0 (top_k = 1), as the reference does.

    Args:
      key: PRNG key.
      labels: (B, C) partial labels.
      top_k: classes per image (DSRB ``topK``; SARB 1).
    """
    if not 1 <= top_k <= labels.shape[1]:
        raise ValueError(f"top_k={top_k} must be between 1 and the number of classes.")
    r = jax.random.uniform(key, labels.shape)
    r = jnp.where(labels == 0, r, 0.0)
    _, idx = jax.lax.top_k(r, top_k)  # ties: lower index first
    rows = jnp.arange(labels.shape[0])[:, None]
    return jnp.zeros(labels.shape, bool).at[rows, idx].set(True)


def prototype_blend(
    features: jax.Array, labels: jax.Array, beta: jax.Array, prototypes: jax.Array, selected
) -> tuple[jax.Array, jax.Array]:
    """Prototype-perspective blending (PPRB, DSRB eq. 10-13; SARB's PLRB, notes §8.3, §10.3).

      F~[b, c] = beta_c F[b, c] + (1 - beta_c) P[b, c]  if selected[b, c], else F[b, c]  (eq. 10/12)
      y~[b, c] = 1 - beta_c                             if selected[b, c], else y[b, c]  (eq. 11/13)

    computed as F + s (1 - beta)(P - F) (s = selected). The prototype is whatever the method draws
    for (b, c): SARB one K-means centre index k per step for all classes and images, DSRB the
    location-sensitive prototype of another quadrant. Linear in (F, P) with coefficients constant
    over trailing axes: with map prototypes P (B, C, H, W, D), pooling after blending equals
    blending the pooled features with the pooled prototypes (module docstring).

    Args:
      features: (B, C, ...) float: vectors or maps.
      labels: (B, C) partial labels.
      beta: () or (C,) blending coefficients (learnable).
      prototypes: same shape as `features` (broadcastable): the prototype of each (b, c).
      selected: (B, C) bool, `select_unknown_classes`.

    Returns:
      (blended features, same shape as `features`; targets (B, C) float32).
    """
    b = jnp.broadcast_to(beta, labels.shape).astype(jnp.float32)
    coef = _expand(jnp.where(selected, 1 - b, 0.0), features.ndim).astype(features.dtype)
    blended = features + coef * (prototypes - features)
    return blended, jnp.where(selected, 1 - b, labels.astype(jnp.float32))


def attention_quadrants(attention: jax.Array, feature_sum: jax.Array) -> jax.Array:
    """(B, C) int32 quadrant of each class's location peak (DSRB, notes §10.3).

    The location statistic is R[b, h, w, c] = sum_d F[b, c, h, w, d] = a[b, h, w, c] sum_d x[b, h, w, d]
    (F = a x: semantic decoupling's softmax attention or semantic attention's sigmoid CAM times the
    transformed map x), so it needs the (B, H, W, C) attention and the (B, H, W) channel sum of x,
    never F. row* = argmax over rows of the per-row maximum, col* likewise for columns (first index
    on ties); quadrant = 2 [row* >= H // 2] + [col* >= W // 2] (0 TL, 1 TR, 2 BL, 3 BR).

    Args:
      attention: (B, H, W, C) float.
      feature_sum: (B, H, W) float, sum over channels of the transformed map.
    """
    r = attention * feature_sum[..., None]
    _, h, w, _ = r.shape
    row = jnp.argmax(jnp.max(r, axis=2), axis=1)  # (B, C): argmax over H of max over W
    col = jnp.argmax(jnp.max(r, axis=1), axis=1)  # (B, C): argmax over W of max over H
    return (2 * (row >= h // 2) + (col >= w // 2)).astype(jnp.int32)


def other_quadrants(key: jax.Array, quadrants: jax.Array) -> jax.Array:
    """(B, C) int32: q' = (q - r) mod 4 with r ~ U{1, 2, 3} per entry: one of the three other
    quadrants, uniformly (notes §10.3)."""
    r = jax.random.randint(key, quadrants.shape, 1, NUM_QUADRANTS)
    return (quadrants - r) % NUM_QUADRANTS


def accumulate_location_sums(
    sums: jax.Array,
    counts: jax.Array,
    features: jax.Array,
    quadrants: jax.Array,
    positive: jax.Array,
    cap: int,
) -> tuple[jax.Array, jax.Array]:
    """Adds one batch to DSRB's per-(class, quadrant) buckets (notes §10.4, vectorised).

    Bucket (c, q) receives the pooled features v[b, c] (= sum_{h,w} F[b, c]: only spatial sums of
    the prototype maps are ever used) of every known positive (b, c) whose peak lies in quadrant q,
    in loader order, only while it holds fewer than `cap` of them (the reference keeps the first 100
    met; its zero placeholder row is accounted for in `location_prototypes`).

    Args:
      sums: (C, 4, D) float running sums.
      counts: (C, 4) int32 running counts.
      features: (B, C, D) pooled category features.
      quadrants: (B, C) int32, `attention_quadrants`.
      positive: (B, C) bool, known positives.
      cap: maps kept per bucket (the reference's 100: `config.method_config.location_cap`).

    Returns:
      (sums, counts) updated; the sums accumulate in their own dtype (float32), whatever the
      features' (bfloat16 under mixed precision).
    """
    onehot = positive[..., None] & (quadrants[..., None] == jnp.arange(NUM_QUADRANTS))  # (B, C, 4)
    order = jnp.cumsum(onehot, axis=0, dtype=jnp.int32)  # 1-based rank of each entry in the batch
    accept = onehot & (counts[None] + order <= cap)
    sums = sums + jnp.einsum("bcq,bcd->cqd", accept.astype(sums.dtype), features.astype(sums.dtype))
    return sums, counts + jnp.sum(accept, axis=0, dtype=jnp.int32)


def location_prototypes(sums: jax.Array, counts: jax.Array) -> jax.Array:
    """(C, 4, D) pooled location-sensitive prototypes pi[c, q] from the bucket sums (notes §10.4).

    As coded: a non-empty bucket gives sum / (n + 1) (its mean *including* the zero placeholder row,
    a shrink by n / (n + 1)); an empty bucket gives the class mean over all its real maps. A class
    with no known positive at all (the reference crashes) gets zero prototypes.
    """
    n = counts.astype(sums.dtype)[..., None]
    class_mean = sums.sum(1, keepdims=True) / jnp.maximum(n.sum(1, keepdims=True), 1)
    return jnp.where(n > 0, sums / (n + 1), class_mean)


def mixup(x: jax.Array, labels: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mixup with the reversed batch (DSRB Table 2's "IP-Mixup" on images, "FM-Mixup" on backbone
    feature maps): x' = lam x + (1 - lam) x[::-1].

    Targets, for the soft partial BCE (`losses.partial_bce`, which trains the probability towards
    y for a target y > 0 and towards 0 for y = -1): where the label is known in both images, the
    mixed probability p = lam [y = 1] + (1 - lam) [y_partner = 1] as a soft positive target, or -1
    (a known negative) when p = 0; where either label is unknown, 0 (ignored). (Mixing the
    {-1, 0, 1} labels linearly would not do: the partial BCE reads a target in (-1, 0) as "the
    probability is 1 + y", and an unknown would count as a half label.)

    Args:
      x: (B, ...) images or feature maps.
      labels: (B, C) partial labels.
      lam: () mixing weight in [0, 1].

    Returns:
      (mixed x, same shape and dtype; targets (B, C) float32 in {-1, 0} or (0, 1]).
    """
    lam = jnp.asarray(lam, jnp.float32)
    mixed = lam.astype(x.dtype) * x + (1 - lam).astype(x.dtype) * x[::-1]
    partner = labels[::-1]
    p = lam * (labels == 1) + (1 - lam) * (partner == 1)
    known = (labels != 0) & (partner != 0)
    return mixed, jnp.where(known, jnp.where(p > 0, p, -1.0), 0.0)
