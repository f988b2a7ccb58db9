"""Batched K-means: the points of every class clustered at once, in one jit-compiled program.

The SARB/HST/DSRB prototype refresh (reference notes §8.4, §9.2) runs, per class c, scikit-learn's
`KMeans(n_clusters=K)` (k-means++ init, n_init=10, max_iter=300, tol=1e-4) over the semantic
features (D = 1024) of every known-positive training example of c. `batched_kmeans` does this for
all C classes in one program; each class's points are padded to a common length N and masked.

Shapes: points (C, N, D) float32, mask (C, N) bool -> centroids (C, K, D).

Algorithm, per class (batched over classes and restarts; no Python loop over either):

1. The class's points are centred on their mean (as scikit-learn does, for the float32 precision of
   the ||x||^2 - 2 x.c + ||c||^2 distances); the centroids are shifted back at the end.
2. Initialisation: scikit-learn's *greedy* k-means++. The first centre is a uniformly drawn real
   point; each further centre is the best (lowest potential sum_x min_k ||x - c_k||^2 afterwards)
   of 2 + floor(log K) candidates drawn with probability proportional to D^2, the squared distance
   to the closest centre so far. The `n_init` restarts run side by side, folded into the centre
   axis: each distance computation is one (N, D) x (D, n_init * K) matmul per class.
3. Lloyd iterations in one `lax.while_loop` of at most `num_iters` steps, until every (class,
   restart) run has converged; converged runs are frozen. scikit-learn's stopping rule, per run:
   stop when the labels did not change ("strict convergence") or when the squared centre shift
   sum_k ||c_k^new - c_k^old||^2 <= tol * mean_d Var(x_d), the mean per-feature variance (ddof 0)
   of that class's real points. A last assignment step makes labels and inertia match the final
   centres. `iterations` counts the Lloyd steps as scikit-learn's `n_iter_` does.
4. Empty-cluster repair, as scikit-learn's `_relocate_empty_clusters_dense`: when clusters are empty
   after an assignment step, the j-th empty cluster (in index order) is moved onto the real point
   with the j-th largest distance to its assigned centre, and that point is taken out of its old
   cluster's mean. No repair when every point sits exactly on its centre. Deterministic (ties go
   to the lowest index).
5. The restart with the lowest inertia is kept; its inertia is then computed exactly, as
   sum ||x - c_label(x)||^2.

Differences from scikit-learn:
- Random numbers come from `jax.random` (one key per class, see `batched_kmeans`): results differ
  from any scikit-learn `random_state`, but do not depend on the padding length, the padding
  positions or the other classes in the batch.
- D^2 sampling takes the first point whose cumulative weight exceeds the draw (searchsorted
  'right'; scikit-learn: 'left'), so a point of weight 0 (padding, or already a centre) is never
  drawn while any point has positive weight.
- scikit-learn keeps a later restart only if its inertia is lower *and* its clustering differs;
  here simply the lowest inertia (ties: the first restart).
- A non-empty cluster that loses its only point to a repair keeps its previous centre
  (scikit-learn moves it to the data mean).
- Matmuls run at `precision=HIGHEST` by default (JAX's default on GPUs may use TF32).
- Classes with fewer real points than K (scikit-learn raises) follow the small-class rule below.

Small-class rule: a class with 0 < n < K real points gets centroid k = its real point number
(k mod n) in mask order, i.e. its n points repeated cyclically; point j is assigned to cluster j;
counts are 1 for k < n and 0 for k >= n; inertia 0; iterations 0. A class with no real point gets
zero centroids, counts 0, assignments -1, inertia 0. `KMeansResult.num_points` lets the caller spot
both (`num_points < K`). A class with n >= K points but fewer than K distinct ones runs as usual
and may get duplicate centroids (and zero counts). Nothing is ever NaN.

Memory: O(C N D) for the centred points and O(C N n_init K) for distances; no (C, N, K, D) tensor.

`pad_by_class` and `accumulate_by_class` build the padded (C, N, D) input from (B, C, D) features
and a (B, C) positive mask: all at once, or batch by batch during a pass over the training set.
"""

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class KMeansResult(NamedTuple):
    """Result of `batched_kmeans` (C classes, K clusters, N padded points, D features)."""

    centroids: jax.Array  # (C, K, D) float32, in the input's coordinates
    inertia: jax.Array  # (C,) float32: sum over real points of ||x - centroid(x)||^2
    assignments: jax.Array  # (C, N) int32 cluster of each point; -1 for padding
    counts: jax.Array  # (C, K) int32 number of real points per cluster
    iterations: jax.Array  # (C,) int32 Lloyd iterations of the kept restart (0: small class)
    num_points: jax.Array  # (C,) int32 real points per class (< K: the small-class rule applied)


def _class_keys(key: jax.Array, num_classes: int) -> jax.Array:
    """One key per class from a single key, or per-class keys passed through; (C,) typed keys."""
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    if key.ndim == 0:
        return jax.random.split(key, num_classes)
    if key.shape != (num_classes,):
        raise ValueError(f"key: expected one key or {num_classes} keys, got shape {key.shape}")
    return key


def _sq_distances(x, x_sq, centres, precision):
    """x (C, N, D), x_sq (C, N), centres (C, M, D) -> (C, N, M) squared distances, clamped at 0."""
    dots = jnp.einsum("cnd,cmd->cnm", x, centres, precision=precision)
    c_sq = jnp.sum(centres * centres, axis=-1)
    return jnp.maximum(x_sq[:, :, None] - 2.0 * dots + c_sq[:, None, :], 0.0)


def _gather_points(x, idx):
    """x (C, N, D), idx (C, ...) int -> (C, ..., D): x[c, idx[c, ...]]."""
    return jax.vmap(lambda xc, ic: xc[ic])(x, idx)


def _kmeans_plusplus(x, x_sq, mask, keys, num_clusters, n_local_trials, precision):
    """Greedy k-means++ for every (class, restart).

    Args: x (C, N, D) centred points (padding zeroed), x_sq (C, N), mask (C, N) bool, keys (C, I).
    Returns: centres (C, I, K, D).
    """
    num_classes, n, _ = x.shape
    num_init = keys.shape[1]
    maskf = mask.astype(jnp.float32)
    n_real = jnp.sum(mask, axis=-1).astype(jnp.int32)
    rank = jnp.cumsum(mask, axis=-1).astype(jnp.int32)  # (C, N): 1 + rank of a real point
    first_real = jnp.argmax(mask, axis=-1).astype(jnp.int32)  # (C,)

    def uniform(j, shape):
        """(C, I, *shape) uniforms from the keys folded with j."""
        draw = lambda k: jax.random.uniform(jax.random.fold_in(k, j), shape)
        return jax.vmap(jax.vmap(draw))(keys)

    # First centre: the floor(u * n)-th real point, u ~ U[0, 1) (independent of padding).
    u0 = uniform(0, ())
    target = jnp.clip(
        jnp.floor(u0 * n_real[:, None]).astype(jnp.int32), 0, jnp.maximum(n_real - 1, 0)[:, None]
    )  # (C, I)
    first = jnp.sum(rank[:, None, :] <= target[:, :, None], axis=-1)
    first = jnp.minimum(first, n - 1)
    centre0 = _gather_points(x, first)  # (C, I, D)
    closest = jnp.swapaxes(_sq_distances(x, x_sq, centre0, precision), 1, 2) * maskf[:, None, :]
    centres = jnp.zeros((num_classes, num_init, num_clusters, x.shape[-1]), x.dtype)
    centres = centres.at[:, :, 0].set(centre0)
    positions = jnp.arange(n)

    def add_centre(j, carry):
        centres, closest = carry  # (C, I, K, D), (C, I, N) masked min squared distances
        pot = jnp.sum(closest, axis=-1)
        draws = uniform(j, (n_local_trials,)) * pot[..., None]  # (C, I, L)
        cum = jnp.cumsum(closest, axis=-1)
        # searchsorted(cum, draw, 'right'): lands on a point of positive weight.
        cand = jnp.sum(cum[:, :, None, :] <= draws[..., None], axis=-1)  # (C, I, L)
        positive = closest > 0
        last_pos = jnp.max(jnp.where(positive, positions, -1), axis=-1)  # (C, I)
        cand = jnp.minimum(cand, last_pos[..., None])
        # No point of positive weight left (duplicates or fewer than K points): repeat a real point.
        cand = jnp.where(last_pos[..., None] >= 0, cand, first_real[:, None, None])
        cand_x = _gather_points(x, cand.reshape(num_classes, -1))  # (C, I * L, D)
        d = _sq_distances(x, x_sq, cand_x, precision)  # (C, N, I * L)
        d = jnp.moveaxis(d.reshape(num_classes, n, num_init, n_local_trials), 1, -1)
        d = jnp.minimum(d, closest[:, :, None, :]) * maskf[:, None, None, :]  # (C, I, L, N)
        best = jnp.argmin(jnp.sum(d, axis=-1), axis=-1)  # (C, I)
        closest = jnp.take_along_axis(d, best[:, :, None, None], axis=2)[:, :, 0]
        chosen = jnp.take_along_axis(cand, best[..., None], axis=-1)[..., 0]
        centres = lax.dynamic_update_index_in_dim(
            centres, _gather_points(x, chosen)[:, :, None], j, axis=2
        )
        return centres, closest

    centres, _ = lax.fori_loop(1, num_clusters, add_centre, (centres, closest))
    return centres


def _assign(x, x_sq, mask, centres, precision):
    """E-step. centres (C, I, K, D) -> labels (C, I, N) int32, masked min distances (C, I, N)."""
    num_classes, n, _ = x.shape
    _, num_init, num_clusters, dim = centres.shape
    d = _sq_distances(
        x, x_sq, centres.reshape(num_classes, num_init * num_clusters, dim), precision
    )
    d = d.reshape(num_classes, n, num_init, num_clusters)
    labels = jnp.argmin(d, axis=-1).astype(jnp.int32)
    mind = jnp.min(d, axis=-1) * mask[:, :, None]
    return jnp.swapaxes(labels, 1, 2), jnp.swapaxes(mind, 1, 2)


def _update_centres(x, mask, centres, labels, mind, precision):
    """M-step with scikit-learn's empty-cluster relocation. Returns new centres (C, I, K, D)."""
    num_classes, n, _ = x.shape
    _, num_init, num_clusters, dim = centres.shape
    onehot = (labels[..., None] == jnp.arange(num_clusters)) & mask[
        :, None, :, None
    ]  # (C, I, N, K)
    onehot = jnp.swapaxes(onehot, 1, 2).reshape(num_classes, n, num_init * num_clusters)
    onehot = onehot.astype(x.dtype)
    sums = jnp.einsum("cnm,cnd->cmd", onehot, x, precision=precision)
    sums = sums.reshape(num_classes, num_init, num_clusters, dim)
    counts = jnp.sum(onehot, axis=1).reshape(num_classes, num_init, num_clusters)

    # Relocation: j-th empty cluster <- j-th farthest real point from its assigned centre.
    empty = counts == 0
    n_real = jnp.sum(mask, axis=-1)
    far_d = jnp.where(mask[:, None, :], mind, -1.0)
    _, far_idx = lax.top_k(far_d, min(num_clusters, n))  # (C, I, min(K, N)), descending
    slot = jnp.cumsum(empty, axis=-1) - 1  # rank among the empty clusters
    moved = jnp.take_along_axis(far_idx, jnp.clip(slot, 0, far_idx.shape[-1] - 1), axis=-1)
    relocate = (
        empty
        & (jnp.max(mind, axis=-1) > 0)[..., None]
        & (slot < jnp.minimum(n_real, far_idx.shape[-1])[:, None, None])
    )
    moved_x = _gather_points(x, moved.reshape(num_classes, -1)).reshape(sums.shape)
    old = jnp.take_along_axis(labels, moved, axis=-1)  # (C, I, K) old cluster of each moved point
    leave = (old[..., None] == jnp.arange(num_clusters)) & relocate[
        ..., None
    ]  # (C, I, K_new, K_old)
    leave = leave.astype(x.dtype)
    sums = sums - jnp.einsum("cijk,cijd->cikd", leave, moved_x, precision=precision)
    counts = counts - jnp.sum(leave, axis=2)
    sums = jnp.where(relocate[..., None], moved_x, sums)
    counts = jnp.where(relocate, 1.0, counts)
    new = sums / jnp.maximum(counts, 1.0)[..., None]
    return jnp.where((counts > 0)[..., None], new, centres)


def _lloyd(x, x_sq, mask, centres, tol_abs, num_iters, precision):
    """Lloyd iterations until every run converged -> centres (C, I, K, D), iterations (C, I)."""
    num_classes, n, _ = x.shape
    num_init = centres.shape[1]
    labels0 = jnp.full((num_classes, num_init, n), -1, jnp.int32)
    done0 = jnp.zeros((num_classes, num_init), bool)
    iters0 = jnp.zeros((num_classes, num_init), jnp.int32)

    def cond(carry):
        it, _, _, done, _ = carry
        return (it < num_iters) & ~jnp.all(done)

    def body(carry):
        it, centres, labels_old, done, iters = carry
        labels, mind = _assign(x, x_sq, mask, centres, precision)
        new = _update_centres(x, mask, centres, labels, mind, precision)
        shift = jnp.sum(jnp.square(new - centres), axis=(-2, -1))
        strict = jnp.all((labels == labels_old) | ~mask[:, None, :], axis=-1)
        converged = strict | (shift <= tol_abs[:, None])
        active = ~done
        centres = jnp.where(active[..., None, None], new, centres)
        labels = jnp.where(active[..., None], labels, labels_old)
        return it + 1, centres, labels, done | converged, iters + active

    _, centres, _, _, iters = lax.while_loop(cond, body, (0, centres, labels0, done0, iters0))
    return centres, iters


@partial(
    jax.jit,
    static_argnames=("num_clusters", "num_iters", "tol", "n_init", "n_local_trials", "precision"),
)
def batched_kmeans(
    points: jax.Array,
    mask: jax.Array,
    num_clusters: int,
    key: jax.Array | None,
    *,
    num_iters: int = 300,
    tol: float = 1e-4,
    n_init: int = 10,
    n_local_trials: int | None = None,
    init: jax.Array | None = None,
    precision: lax.Precision = lax.Precision.HIGHEST,
) -> KMeansResult:
    """K-means (k-means++ init, Lloyd, best of `n_init`) for every class at once.

    See the module docstring for the algorithm, the convergence rule and the small-class rule.
    Compiled once per (shapes, static arguments: every keyword except `init`); the data are traced.

    Args:
      points: (C, N, D) float points of each class, padded to a common N; padding values are
        ignored (any value, NaN included).
      mask: (C, N) bool, True for real points (anywhere in the N axis).
      num_clusters: K.
      key: a PRNG key (typed or raw) split into one key per class, or (C,) per-class keys. Class c's
        result depends only on its points and its key. Ignored (may be None) when `init` is given.
      num_iters: maximum Lloyd iterations per run (scikit-learn's max_iter).
      tol: relative tolerance: a run stops when its squared centre shift <= tol * mean per-feature
        variance of the class's points (scikit-learn's tol).
      n_init: restarts of k-means++ + Lloyd per class; the lowest-inertia run is kept.
      n_local_trials: k-means++ candidates per centre; default 2 + floor(log K) (scikit-learn's).
      init: optional (C, K, D) initial centres (then one run, no k-means++; as scikit-learn's
        `init=array, n_init=1`).
      precision: matmul precision of the distance and centre computations.

    Returns:
      `KMeansResult` (centroids (C, K, D), inertia (C,), assignments (C, N), counts (C, K),
      iterations (C,), num_points (C,)).
    """
    num_classes, n, dim = points.shape
    if mask.shape != (num_classes, n):
        raise ValueError(f"mask: expected shape {(num_classes, n)}, got {mask.shape}")
    mask = mask.astype(bool)
    points = jnp.where(mask[..., None], points.astype(jnp.float32), 0.0)  # padding may hold NaN
    maskf = mask.astype(jnp.float32)
    n_real = jnp.sum(mask, axis=-1).astype(jnp.int32)
    denom = jnp.maximum(n_real, 1).astype(jnp.float32)

    mean = jnp.sum(points * maskf[..., None], axis=1) / denom[:, None]  # (C, D)
    x = (points - mean[:, None]) * maskf[..., None]
    x_sq = jnp.sum(x * x, axis=-1)
    tol_abs = tol * jnp.sum(x_sq, axis=-1) / denom / dim  # tol * mean_d Var(x_d)

    if init is None:
        trials = n_local_trials if n_local_trials is not None else 2 + int(math.log(num_clusters))
        keys = jax.vmap(lambda k: jax.random.split(k, n_init))(_class_keys(key, num_classes))
        centres = _kmeans_plusplus(x, x_sq, mask, keys, num_clusters, trials, precision)
    else:
        centres = (init.astype(jnp.float32) - mean[:, None])[:, None]  # (C, 1, K, D)
    centres, iters = _lloyd(x, x_sq, mask, centres, tol_abs, num_iters, precision)

    labels, mind = _assign(x, x_sq, mask, centres, precision)
    best = jnp.argmin(jnp.sum(mind, axis=-1), axis=-1)  # (C,)
    centres = jnp.take_along_axis(centres, best[:, None, None, None], axis=1)[:, 0]  # (C, K, D)
    labels = jnp.take_along_axis(labels, best[:, None, None], axis=1)[:, 0]  # (C, N)
    iters = jnp.take_along_axis(iters, best[:, None], axis=1)[:, 0]
    diff = x - jnp.take_along_axis(centres, labels[..., None], axis=1)
    inertia = jnp.sum(jnp.sum(diff * diff, axis=-1) * maskf, axis=-1)
    counts = jnp.sum(
        (labels[..., None] == jnp.arange(num_clusters)) & mask[..., None], axis=1, dtype=jnp.int32
    )
    centroids = centres + mean[:, None]
    assignments = jnp.where(mask, labels, -1)

    # Small-class rule (fewer than K real points): the real points, repeated cyclically.
    rank = jnp.cumsum(mask, axis=-1, dtype=jnp.int32)  # 1 + rank of each real point
    k_rank = jnp.arange(num_clusters)[None] % jnp.maximum(n_real, 1)[:, None]  # (C, K)
    k_idx = jnp.minimum(jnp.sum(rank[:, None, :] <= k_rank[..., None], axis=-1), n - 1)
    small_centroids = _gather_points(points, k_idx)  # zeros when the class has no point
    small = n_real < num_clusters
    return KMeansResult(
        centroids=jnp.where(small[:, None, None], small_centroids, centroids),
        inertia=jnp.where(small, 0.0, inertia),
        assignments=jnp.where(small[:, None], jnp.where(mask, rank - 1, -1), assignments),
        counts=jnp.where(
            small[:, None], (jnp.arange(num_clusters) < n_real[:, None]).astype(jnp.int32), counts
        ),
        iterations=jnp.where(small, 0, iters),
        num_points=n_real,
    )


def pad_by_class(
    features: jax.Array, positive: jax.Array, max_per_class: int
) -> tuple[jax.Array, jax.Array]:
    """Gathers each class's positive features into a padded (C, M, D) array.

    Keeps, per class, the first `max_per_class` positives in example order (stable argsort; no loop
    over classes). Padding slots are zero.

    Args:
      features: (B, C, D) per-example, per-class features.
      positive: (B, C) bool, True where example b is a (known) positive of class c.
      max_per_class: M, the padded length.

    Returns:
      (points (C, M, D), mask (C, M) bool), the input of `batched_kmeans`.
    """
    b = features.shape[0]
    positive = positive.astype(bool)
    order = jnp.argsort(~positive, axis=0, stable=True)[: min(max_per_class, b)]  # (M', C)
    points = jnp.take_along_axis(features, order[..., None], axis=0)  # (M', C, D)
    points = jnp.swapaxes(points, 0, 1)
    count = jnp.sum(positive, axis=0)
    mask = jnp.arange(max_per_class)[None] < count[:, None]  # (C, M)
    points = jnp.pad(points, ((0, 0), (0, max_per_class - points.shape[1]), (0, 0)))
    return jnp.where(mask[..., None], points, 0).astype(features.dtype), mask


def accumulate_by_class(
    buffer: jax.Array, count: jax.Array, features: jax.Array, positive: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Appends a batch's positive features to a per-class buffer (for a pass over the training set).

    Batch by batch this gives the same buffer as `pad_by_class` over the concatenated batches: the
    first M positives of each class in example order; later ones are dropped (`count` still counts
    them).

    Args:
      buffer: (C, M, D) features collected so far (start from zeros).
      count: (C,) int32 positives seen so far per class (start from zeros).
      features: (B, C, D) this batch's per-class features.
      positive: (B, C) bool positives of this batch.

    Returns:
      (buffer, count) updated; `jnp.arange(M) < count[:, None]` is the mask for `batched_kmeans`.
    """
    num_classes, m, _ = buffer.shape
    positive = positive.astype(bool)
    slot = count[None] + jnp.cumsum(positive, axis=0, dtype=count.dtype) - 1  # (B, C)
    slot = jnp.where(positive, slot, m)  # out of range: dropped
    cls = jnp.broadcast_to(jnp.arange(num_classes), slot.shape)
    buffer = buffer.at[cls, slot].set(features.astype(buffer.dtype), mode="drop")
    return buffer, count + jnp.sum(positive, axis=0, dtype=count.dtype)
