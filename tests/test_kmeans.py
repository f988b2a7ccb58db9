"""Tests of `mlrpl_jax.ops.kmeans`, with scikit-learn's KMeans as the oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import dot_precisions
from sklearn.cluster import KMeans

from mlrpl_jax.ops.kmeans import accumulate_by_class, batched_kmeans, pad_by_class

# One shape for the batched tests that can share a compilation: C classes, N padded points.
C, N, D, K = 4, 64, 6, 5
COUNTS = (64, 50, 33, 20)


def _mixture(rng, n, dim, k, spread, noise):
    """n points around k random centres (scale `spread`) with Gaussian noise; float32."""
    centres = rng.normal(size=(k, dim)) * spread
    return (centres[rng.integers(k, size=n)] + rng.normal(size=(n, dim)) * noise).astype(np.float32)


def _padded(rng, counts, n_max, dim, interleave=False, **mixture):
    """(C, n_max, dim) points and (C, n_max) mask; padding is NaN (must be ignored)."""
    points = np.full((len(counts), n_max, dim), np.nan, np.float32)
    mask = np.zeros((len(counts), n_max), bool)
    for c, n in enumerate(counts):
        pos = np.sort(rng.permutation(n_max)[:n]) if interleave else np.arange(n)
        mask[c, pos] = True
        points[c, pos] = _mixture(rng, n, dim, **mixture)
    return points, mask


def _real(result, points, mask, c):
    """Class c's real points and their assignments."""
    return points[c][mask[c]], np.asarray(result.assignments[c])[mask[c]]


def test_recovers_separated_blobs():
    rng = np.random.default_rng(0)
    true = np.stack([np.eye(K, D) * 10.0 * (c + 1) for c in range(C)])  # (C, K, D), far apart
    points = np.zeros((C, N, D), np.float32)
    mask = np.arange(N)[None] < np.array(COUNTS)[:, None]
    truth = []
    for c, n in enumerate(COUNTS):
        truth.append(np.arange(n) % K)
        points[c, :n] = true[c, truth[c]] + rng.normal(size=(n, D)) * 0.1
    result = batched_kmeans(jnp.asarray(points), jnp.asarray(mask), K, jax.random.key(0))
    for c in range(C):
        found = np.asarray(result.centroids[c])
        perm = np.linalg.norm(true[c][:, None] - found[None], axis=-1).argmin(axis=1)
        assert sorted(perm) == list(range(K))  # each true centre has its own cluster
        np.testing.assert_array_equal(result.assignments[c, : COUNTS[c]], perm[truth[c]])
        means = [points[c, : COUNTS[c]][truth[c] == k].mean(0) for k in range(K)]
        np.testing.assert_allclose(found[perm], means, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(result.counts).sum(-1), COUNTS)


def test_inertia_close_to_sklearn_and_consistent():
    rng = np.random.default_rng(1)
    points, mask = _padded(rng, COUNTS, N, D, k=K, spread=2.0, noise=1.0)
    result = batched_kmeans(jnp.asarray(points), jnp.asarray(mask), K, jax.random.key(1))
    ratios = []
    for c, n in enumerate(COUNTS):
        x, labels = _real(result, points, mask, c)
        centroids = np.asarray(result.centroids[c])
        inertia = float(result.inertia[c])
        # The reported inertia, assignments and counts belong to the reported centroids.
        np.testing.assert_allclose(inertia, ((x - centroids[labels]) ** 2).sum(), rtol=1e-5)
        np.testing.assert_array_equal(
            labels, np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
        )
        np.testing.assert_array_equal(result.counts[c], np.bincount(labels, minlength=K))
        assert np.all(np.asarray(result.assignments[c])[~mask[c]] == -1)
        assert int(result.num_points[c]) == n
        ratios.append(inertia / KMeans(K, n_init=10, random_state=c).fit(x).inertia_)
    assert max(ratios) < 1.05, ratios
    assert np.mean(ratios) < 1.02, ratios


@pytest.mark.parametrize("tol", [1e-4, 0.1, 0.0])
def test_lloyd_matches_sklearn_from_same_init(tol):
    rng = np.random.default_rng(2)
    x = _mixture(rng, 60, D, k=K, spread=1.0, noise=1.0)
    init = x[:K] + 0.5  # a poor start: several Lloyd iterations
    ours = batched_kmeans(
        jnp.asarray(x[None]),
        jnp.ones((1, 60), bool),
        K,
        None,
        init=jnp.asarray(init[None]),
        tol=tol,
    )
    sk = KMeans(K, init=init, n_init=1, tol=tol).fit(x)
    np.testing.assert_array_equal(ours.assignments[0], sk.labels_)
    np.testing.assert_allclose(ours.centroids[0], sk.cluster_centers_, atol=1e-5)
    np.testing.assert_allclose(ours.inertia[0], sk.inertia_, rtol=1e-5)
    assert int(ours.iterations[0]) == sk.n_iter_
    if tol == 0.1:  # this tolerance does stop the run before the labels settle
        assert sk.n_iter_ < KMeans(K, init=init, n_init=1, tol=0.0).fit(x).n_iter_


def test_empty_cluster_repair_matches_sklearn():
    rng = np.random.default_rng(3)
    x = _mixture(rng, 60, D, k=K, spread=1.0, noise=1.0)
    init = x[:K].copy()
    init[1] = 100.0  # two centres far from every point: empty after the first assignment
    init[3] = -100.0
    ours = batched_kmeans(
        jnp.asarray(x[None]), jnp.ones((1, 60), bool), K, None, init=jnp.asarray(init[None])
    )
    sk = KMeans(K, init=init, n_init=1).fit(x)
    np.testing.assert_array_equal(ours.assignments[0], sk.labels_)
    np.testing.assert_allclose(ours.centroids[0], sk.cluster_centers_, atol=1e-5)
    assert int(ours.iterations[0]) == sk.n_iter_
    assert np.all(np.asarray(ours.counts[0]) > 0)
    assert np.abs(np.asarray(ours.centroids[0])).max() < 10
    # The same at 1/64 of the scale (exact in float32), where every squared distance is below 1:
    # the repair still runs and gives the same clustering, scaled.
    small = batched_kmeans(
        jnp.asarray(x[None] / 64), jnp.ones((1, 60), bool), K, None,
        init=jnp.asarray(init[None] / 64),
    )  # fmt: skip
    np.testing.assert_array_equal(small.assignments, ours.assignments)
    np.testing.assert_array_equal(small.centroids, np.asarray(ours.centroids) / 64)


def test_padding_and_other_classes_do_not_matter():
    rng = np.random.default_rng(4)
    points, mask = _padded(rng, COUNTS, N, D, interleave=True, k=K, spread=2.0, noise=1.0)
    key = jax.random.key(4)
    result = batched_kmeans(jnp.asarray(points), jnp.asarray(mask), K, key)
    class_keys = jax.random.split(key, C)
    for c in (1, 3):  # two of the classes, each alone, unpadded
        x, labels = _real(result, points, mask, c)
        alone = batched_kmeans(
            jnp.asarray(x[None]), jnp.ones((1, len(x)), bool), K, class_keys[c : c + 1]
        )
        np.testing.assert_array_equal(alone.assignments[0], labels)
        np.testing.assert_allclose(alone.centroids[0], result.centroids[c], atol=1e-5)
        np.testing.assert_allclose(alone.inertia[0], result.inertia[c], rtol=1e-5)
        assert int(alone.iterations[0]) == int(result.iterations[c])


def test_fewer_points_than_clusters():
    rng = np.random.default_rng(5)
    counts = (0, 1, 3, K, 12)
    points, mask = _padded(rng, counts, 12, D, interleave=True, k=2, spread=1.0, noise=1.0)
    points[4] = points[4, np.arange(12) % 2]  # 12 points, 2 distinct: duplicate centroids
    result = batched_kmeans(jnp.asarray(points), jnp.asarray(mask), K, jax.random.key(5))
    for leaf in jax.tree.leaves(result):
        assert not np.any(np.isnan(np.asarray(leaf, float)))
    np.testing.assert_array_equal(result.num_points, counts)
    # No point: zero centroids, nothing assigned.
    np.testing.assert_array_equal(result.centroids[0], 0)
    np.testing.assert_array_equal(result.counts[0], 0)
    np.testing.assert_array_equal(result.assignments[0], -1)
    for c in (1, 2):  # 0 < n < K: the points repeated cyclically, point j in cluster j
        n, x = counts[c], points[c][mask[c]]
        np.testing.assert_array_equal(result.centroids[c], x[np.arange(K) % n])
        np.testing.assert_array_equal(np.asarray(result.assignments[c])[mask[c]], np.arange(n))
        np.testing.assert_array_equal(result.counts[c], np.arange(K) < n)
        assert float(result.inertia[c]) == 0 and int(result.iterations[c]) == 0
    # Exactly K points: ordinary K-means, every point its own cluster.
    np.testing.assert_array_equal(result.counts[3], 1)
    assert float(result.inertia[3]) == pytest.approx(0.0, abs=1e-6)
    # K or more points, fewer distinct ones: every centroid on a point, the others' counts 0.
    assert sorted(np.asarray(result.counts[4])) == [0] * (K - 2) + [6, 6]
    assert float(result.inertia[4]) == pytest.approx(0.0, abs=1e-6)
    dist = np.abs(np.asarray(result.centroids[4])[:, None] - points[4, :2][None]).max(-1)
    np.testing.assert_array_less(dist.min(axis=1), 1e-5)


def test_deterministic_for_fixed_key_and_compiled_once():
    rng = np.random.default_rng(6)
    points, mask = _padded(rng, COUNTS, N, D, k=K, spread=1.0, noise=1.0)
    args = (jnp.asarray(points) + 1000.0, jnp.asarray(mask), K + 1)  # shapes no other test uses
    before = batched_kmeans._cache_size()
    first = batched_kmeans(*args, jax.random.key(7))
    again = batched_kmeans(*args, jax.random.key(7))
    jax.tree.map(np.testing.assert_array_equal, first, again)
    other = batched_kmeans(args[0] * 2, *args[1:], jax.random.key(8))  # new data and key
    assert other.centroids.shape == (C, K + 1, D)
    assert batched_kmeans._cache_size() == before + 1


def test_pad_by_class_matches_loop():
    rng = np.random.default_rng(8)
    b, c, d, m = 23, 5, 3, 6
    features = rng.normal(size=(b, c, d)).astype(np.float32)
    positive = rng.random((b, c)) < np.array([0.0, 0.1, 0.3, 0.6, 1.0])  # from none to all
    points, mask = pad_by_class(jnp.asarray(features), jnp.asarray(positive), m)
    for j in range(c):
        rows = [features[i, j] for i in range(b) if positive[i, j]][:m]
        np.testing.assert_array_equal(mask[j], np.arange(m) < len(rows))
        np.testing.assert_array_equal(points[j, : len(rows)], np.reshape(rows, (-1, d)))
        np.testing.assert_array_equal(points[j, len(rows) :], 0)
    # More slots than examples.
    points, mask = pad_by_class(jnp.asarray(features), jnp.asarray(positive), b + 4)
    assert points.shape == (c, b + 4, d)
    np.testing.assert_array_equal(mask.sum(-1), positive.sum(0))

    # Batch by batch gives the same buffer.
    buffer, count = jnp.zeros((c, m, d)), jnp.zeros((c,), jnp.int32)
    for start in range(0, b, 4):
        buffer, count = accumulate_by_class(
            buffer, count, jnp.asarray(features[start : start + 4]), positive[start : start + 4]
        )
    expected, expected_mask = pad_by_class(jnp.asarray(features), jnp.asarray(positive), m)
    np.testing.assert_array_equal(count, positive.sum(0))
    np.testing.assert_array_equal(jnp.arange(m) < count[:, None], expected_mask)
    np.testing.assert_array_equal(buffer, expected)


def test_pad_by_class_keeps_the_features_dtype():
    features = jnp.ones((4, 2, 3), jnp.bfloat16)
    points, _ = pad_by_class(features, jnp.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool), 3)
    assert points.dtype == jnp.bfloat16


def test_keys_of_the_wrong_count_are_refused():
    points, mask = jnp.zeros((3, 4, 2)), jnp.ones((3, 4), bool)
    with pytest.raises(ValueError, match=r"^key: expected one key or 3 keys, got shape \(2,\)"):
        batched_kmeans(points, mask, 2, jax.random.split(jax.random.key(0), 2))


def _greedy_kmeans_plusplus_by_hand(x, mask, key, k, trials):
    """The module docstring's greedy k-means++ for one (class, restart), in float64 numpy, from
    the same uniforms: uniform j is jax.random.uniform(fold_in(key, j)); the first centre is the
    floor(u n)-th real point; each further one the best of `trials` D^2 draws (searchsorted 'right'
    over the cumulative weights, padding weighing 0)."""
    real = np.flatnonzero(mask)
    u0 = float(jax.random.uniform(jax.random.fold_in(key, 0), ()))
    chosen = [real[min(int(np.floor(u0 * len(real))), len(real) - 1)]]
    sq = lambda i: np.where(mask, np.sum((x - x[i]) ** 2, axis=-1), 0.0)
    closest = sq(chosen[0])
    for j in range(1, k):
        draws = np.asarray(jax.random.uniform(jax.random.fold_in(key, j), (trials,)), np.float64)
        if not (closest > 0).any():  # every real point is a centre already: repeat the first
            chosen.append(real[0])
            continue
        cand = np.searchsorted(np.cumsum(closest), draws * closest.sum(), side="right")
        cand = np.minimum(cand, np.flatnonzero(closest > 0).max())
        potentials = [np.minimum(closest, sq(c)).sum() for c in cand]
        best = cand[int(np.argmin(potentials))]
        chosen.append(best)
        closest = np.minimum(closest, sq(best))
    return x[chosen]


@pytest.mark.slow
@pytest.mark.mutation
def test_kmeans_plusplus_init_is_the_greedy_rule_by_hand():
    """The initial centres themselves (the final clustering hides most init details), four restarts
    each: classes with padding in the middle and at the end, one of two distinct points
    (duplicated) before padding, whose later centres repeat its first real point, and one whose
    only real points are the last two positions (first centres on either)."""
    from mlrpl_jax.ops import kmeans

    rng = np.random.default_rng(11)
    c, n, d, k, trials, restarts = 4, 40, 3, 5, 3, 4
    x = rng.normal(size=(c, n, d)) * np.array([1.0, 3.0, 0.5])
    mask = np.ones((c, n), bool)
    mask[0, 10:14] = False
    mask[1, 31:] = False
    mask[2, :3] = False
    mask[2, 11:] = False
    x[2, 3:11] = np.where(np.arange(8)[:, None] % 2, 1.0, -2.0)  # two distinct points, 4 times each
    mask[3, :-2] = False  # two real points, the last two positions
    x = np.where(mask[..., None], x, 0.0)
    keys = jax.random.split(jax.random.key(3), (c, restarts))
    xj = jnp.asarray(x, jnp.float32)
    got = kmeans._kmeans_plusplus(xj, jnp.sum(xj**2, axis=-1), jnp.asarray(mask), keys, k, trials,
                                  jax.lax.Precision.HIGHEST)  # fmt: skip
    x32 = np.asarray(xj, np.float64)
    for ci in range(c):
        for i in range(restarts):
            want = _greedy_kmeans_plusplus_by_hand(x32[ci], mask[ci], keys[ci, i], k, trials)
            np.testing.assert_allclose(np.asarray(got[ci, i]), want, rtol=0, atol=0)


def test_result_dtypes_and_float32_matmuls():
    """KMeansResult's documented dtypes (iterations and counts are int32 counts, not floats), and
    every product of the program (k-means++, the Lloyd loop, the last assignment) asks for
    HIGHEST precision by default, which an accelerator would otherwise run in bf16 or tf32
    (XLA:CPU computes float32 at any precision, so only the program shows it)."""
    rng = np.random.default_rng(12)
    points, mask = _padded(rng, COUNTS, N, D, k=K, spread=1.0, noise=1.0)
    args = (jnp.asarray(points), jnp.asarray(mask))
    result = batched_kmeans(*args, K, jax.random.key(0))
    dtypes = {name: np.asarray(value).dtype.name for name, value in result._asdict().items()}
    assert dtypes == {"centroids": "float32", "inertia": "float32", "assignments": "int32",
                      "counts": "int32", "iterations": "int32", "num_points": "int32"}  # fmt: skip
    precisions = dot_precisions(lambda p, m: batched_kmeans(p, m, K, jax.random.key(0)), *args)
    highest = jax.lax.Precision.HIGHEST
    assert len(precisions) >= 6 and set(precisions) == {(highest, highest)}


def test_scaling_the_points_by_a_power_of_two_scales_the_result_exactly():
    """K-means is scale-equivariant, and a power-of-two scale is exact in float32 at every step
    (distances, D^2 weights and draws, the tolerance, the repairs): points / 64, whose squared
    distances all fall below 1, give the centroids / 64, the same assignments and iterations."""
    rng = np.random.default_rng(13)
    points, mask = _padded(rng, COUNTS, N, D, interleave=True, k=K, spread=1.0, noise=0.3)
    key = jax.random.key(4)
    big = batched_kmeans(jnp.asarray(points), jnp.asarray(mask), K, key)
    small = batched_kmeans(jnp.asarray(points / 64), jnp.asarray(mask), K, key)
    np.testing.assert_array_equal(small.centroids, np.asarray(big.centroids) / 64)
    np.testing.assert_array_equal(small.inertia, np.asarray(big.inertia) / 64**2)
    for name in ("assignments", "counts", "iterations"):
        np.testing.assert_array_equal(getattr(small, name), getattr(big, name))
    d2 = ((points[0][mask[0]][:, None] - points[0][mask[0]][None]) / 64) ** 2
    assert d2.sum(-1).max() < 1.0


def test_each_run_stops_by_its_own_rule_and_at_max_iter_as_sklearn():
    """Per (class, restart) convergence, as scikit-learn per fit: three classes from poor starts,
    each checked against its own KMeans fit, at tol 0.1 (the shift rule), tol 0 (labels
    unchanged), and at max_iter 3, which stops runs that have not converged; and a start whose
    first assignment puts every point in cluster 1 (cluster 0 is repaired)."""
    rng = np.random.default_rng(14)
    xs = np.stack([_mixture(rng, 60, D, k=K, spread=1.0, noise=s) for s in (1.0, 0.3, 2.0)])
    inits = xs[:, :K] + 0.5
    for tol, max_iter in ((0.1, 300), (0.0, 300), (1e-4, 3)):
        ours = batched_kmeans(jnp.asarray(xs), jnp.ones(xs.shape[:2], bool), K, None,
                              init=jnp.asarray(inits), tol=tol, num_iters=max_iter)  # fmt: skip
        iters = []
        for c in range(3):
            sk = KMeans(K, init=inits[c], n_init=1, tol=tol, max_iter=max_iter).fit(xs[c])
            np.testing.assert_array_equal(ours.assignments[c], sk.labels_)
            np.testing.assert_allclose(ours.centroids[c], sk.cluster_centers_, atol=1e-5)
            assert int(ours.iterations[c]) == sk.n_iter_
            iters.append(sk.n_iter_)
        if max_iter == 3:
            assert iters == [3, 3, 3]
        else:
            assert len(set(iters)) > 1, iters  # the runs stop at different iterations
    init = np.stack([np.full(D, 100.0), xs[0, 0]])  # every point nearer centre 1 at first
    ours = batched_kmeans(jnp.asarray(xs[:1]), jnp.ones((1, 60), bool), 2, None,
                          init=jnp.asarray(init[None]))  # fmt: skip
    sk = KMeans(2, init=init, n_init=1).fit(xs[0])
    np.testing.assert_array_equal(ours.assignments[0], sk.labels_)
    np.testing.assert_allclose(ours.centroids[0], sk.cluster_centers_, atol=1e-5)
    assert int(ours.iterations[0]) == sk.n_iter_ > 1


@pytest.mark.parametrize("scale", [1.0, 1 / 64])
def test_one_iteration_with_a_repair_matches_sklearn(scale):
    """The centres after exactly one Lloyd step with two empty clusters repaired (moved onto the
    farthest points, which leave their old clusters' means) equal scikit-learn's at max_iter=1;
    with padding between the real points, at a scale where every distance is below 1 (padding
    never counts as a far point)."""
    rng = np.random.default_rng(3)
    x = _mixture(rng, 60, D, k=K, spread=1.0, noise=1.0)
    init = x[:K].copy()
    init[1], init[3] = 100.0, -100.0
    sk = KMeans(K, init=init, n_init=1, max_iter=1).fit(x)
    points = np.zeros((1, 70, D), np.float32)
    mask = np.zeros((1, 70), bool)
    real = np.sort(rng.permutation(70)[:60])
    points[0, real], mask[0, real] = x * scale, True
    ours = batched_kmeans(jnp.asarray(points), jnp.asarray(mask), K, None,
                          init=jnp.asarray(init[None] * scale), num_iters=1)  # fmt: skip
    assert int(ours.iterations[0]) == sk.n_iter_ == 1
    np.testing.assert_allclose(ours.centroids[0], sk.cluster_centers_ * scale, atol=1e-5 * scale)
    np.testing.assert_array_equal(np.asarray(ours.assignments[0])[real], sk.labels_)


def test_a_cluster_that_loses_its_only_point_to_a_repair_keeps_its_centre():
    """The module docstring's difference from scikit-learn (which moves such a centre to the data
    mean): after one step, the centre whose single point was moved to an empty cluster stays."""
    rng = np.random.default_rng(15)
    x = np.concatenate([rng.normal(0, 0.1, (10, 2)), rng.normal(0, 0.1, (10, 2)) + [10, 0],
                        [[0.0, 30.0]]]).astype(np.float32)  # fmt: skip
    init = np.array([[0, 0], [10, 0], [0, 20], [100, 100]], np.float32)  # cluster 3 is empty
    ours = batched_kmeans(jnp.asarray(x[None]), jnp.ones((1, 21), bool), 4, None,
                          init=jnp.asarray(init[None]), num_iters=1)  # fmt: skip
    np.testing.assert_allclose(ours.centroids[0, 2], [0, 20], atol=1e-5)
    np.testing.assert_allclose(ours.centroids[0, 3], [0, 30], atol=1e-5)  # the moved point
    np.testing.assert_allclose(ours.centroids[0, :2], [x[:10].mean(0), x[10:20].mean(0)],
                               atol=1e-5)  # fmt: skip


def test_no_repair_while_every_point_sits_exactly_on_its_centre():
    """Two distinct points at +-e_1, 6 times each (distances computed exactly: 1 - 2 + 1 = 0):
    k-means++ puts two centres on them and repeats the first real point for the other three;
    those clusters stay empty without a repair (every squared distance is 0), even beside a
    class whose points do not sit on their centres."""
    rng = np.random.default_rng(16)
    points = np.zeros((2, 12, D), np.float32)
    points[0, :, 0] = np.where(np.arange(12) % 2, -1.0, 1.0)
    points[1] = _mixture(rng, 12, D, k=2, spread=1.0, noise=1.0)
    result = batched_kmeans(jnp.asarray(points), jnp.ones((2, 12), bool), K, jax.random.key(1))
    np.testing.assert_array_equal(result.centroids[0, 2:], np.broadcast_to(points[0, 0], (3, D)))
    assert sorted(np.asarray(result.counts[0])) == [0, 0, 0, 6, 6]
    assert float(result.inertia[0]) == 0 and float(result.inertia[1]) > 0
