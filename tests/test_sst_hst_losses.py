"""SST/HST losses and pseudo-label rules against the equations written out with Python loops.

References are float64 numpy with explicit loops over batch, classes and pairs (notes §2.2, §2.3, §7,
§9); nothing is copied from another implementation's output.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import torch_asl

from mlrpl_jax.losses import contrastive
from mlrpl_jax.losses.contrastive import instance_contrastive_loss, prototype_contrastive_loss
from mlrpl_jax.losses.cooccurrence import (
    intra_asymmetric_loss,
    pair_index_matrix,
    pair_indices,
    pair_targets,
)
from mlrpl_jax.ops.pseudo_labels import (
    complete_labels,
    cooccurrence_matrix,
    hst_soft_scores,
    indicator,
    intra_scores,
    mean_cosine_to_set,
    pseudo_label_quality,
    sst_threshold,
    update_bank,
)

EPS = 1e-9

# One compiled program per function (op-by-op eager dispatch compiles every primitive separately).
intra_asymmetric_loss = jax.jit(intra_asymmetric_loss)
instance_contrastive_loss = jax.jit(instance_contrastive_loss, static_argnames="subsample")
prototype_contrastive_loss = jax.jit(prototype_contrastive_loss, static_argnames="paper_sign")
cooccurrence_matrix = jax.jit(cooccurrence_matrix, static_argnums=1)
intra_scores = jax.jit(intra_scores)
mean_cosine_to_set = jax.jit(mean_cosine_to_set)
sst_threshold = jax.jit(sst_threshold)
indicator = jax.jit(indicator, static_argnames="strict")
hst_soft_scores = jax.jit(hst_soft_scores)
complete_labels = jax.jit(complete_labels)
pseudo_label_quality = jax.jit(pseudo_label_quality)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _torch17_cos(x, y, eps=EPS):
    """torch 1.7 CosineSimilarity: x.y / sqrt(max(|x|^2 |y|^2, eps^2))."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(x @ y / np.sqrt(max((x @ x) * (y @ y), eps * eps)))


def _labels(rng, shape, p=(0.35, 0.3, 0.35)):
    return rng.choice([-1, 0, 1], size=shape, p=p).astype(np.int8)


# ---------------------------------------------------------------------------------------------------
# Pairs and the co-occurrence ASL (notes §2.3)


@pytest.mark.parametrize("num_classes", [2, 4, 5])
def test_pair_order_and_index_formula(num_classes):
    i, j = pair_indices(num_classes)
    expected = [(a, b) for a in range(num_classes - 1) for b in range(a + 1, num_classes)]
    assert list(zip(i.tolist(), j.tolist())) == expected
    # numpy's order is jnp.triu_indices' order (jnp mirrors numpy; numpy avoids eager compiles here).
    np.testing.assert_array_equal(np.stack([i, j]), np.stack(np.triu_indices(num_classes, k=1)))
    index = pair_index_matrix(num_classes)
    for a in range(num_classes):
        for b in range(num_classes):
            if a == b:
                continue
            lo, hi = min(a, b), max(a, b)
            assert index[a, b] == lo * (num_classes - 1) - lo * (lo - 1) // 2 + (hi - lo - 1)
            assert expected[index[a, b]] == (lo, hi)


def test_pair_targets_unknown_or_negative_member_is_negative():
    rng = np.random.default_rng(1)
    t = _labels(rng, (5, 5))
    y = np.asarray(pair_targets(jnp.asarray(t)))
    p = 0
    for a in range(5):
        for b in range(a + 1, 5):
            for n in range(5):
                assert y[n, p] == float(t[n, a] == 1 and t[n, b] == 1)
            p += 1
    assert y.shape == (5, 10)


def _asl_numpy(logits, t, gamma_neg=2.0, gamma_pos=1.0, clip=0.05, eps=1e-8):
    """notes §2.3 with loops: per pair base * focusing weight, mean over B * P."""
    batch, num_classes = t.shape
    terms = []
    for n in range(batch):
        p = 0
        for a in range(num_classes):
            for b in range(a + 1, num_classes):
                y = 1.0 if (t[n, a] > 0 and t[n, b] > 0) else 0.0
                q = _sigmoid(logits[n, p])
                q_neg = min(1.0 - q + clip, 1.0)
                if y == 1.0:
                    terms.append(-np.log(max(q, eps)) * (1.0 - q) ** gamma_pos)
                else:
                    terms.append(-np.log(max(q_neg, eps)) * (1.0 - q_neg) ** gamma_neg)
                p += 1
    return np.mean(terms)


def _asl_case():
    rng = np.random.default_rng(2)
    t = _labels(rng, (4, 5), p=(0.2, 0.3, 0.5))
    logits = rng.normal(size=(4, 10)) * 2.5
    # Keep every logit away from the clip kink sigmoid(l) = 0.05 (l = -2.944) for finite differences,
    # while several negatives stay in the clipped region (q < 0.05, weight 0).
    logits = np.where(np.abs(logits + 2.944) < 0.2, logits + 0.5, logits)
    assert np.any(_sigmoid(logits) < 0.05) and np.any(pair_targets(jnp.asarray(t)) == 1)
    return logits, t


def test_intra_asymmetric_loss_value():
    logits, t = _asl_case()
    loss, metrics = intra_asymmetric_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(t))
    np.testing.assert_allclose(float(loss), _asl_numpy(logits, t), rtol=1e-5)
    np.testing.assert_allclose(
        float(metrics["positive_pair_fraction"]), np.mean(np.asarray(pair_targets(jnp.asarray(t))))
    )
    loss4, _ = intra_asymmetric_loss(
        jnp.asarray(logits, jnp.float32), jnp.asarray(t), gamma_neg=4.0, clip=0.1
    )
    np.testing.assert_allclose(
        float(loss4), _asl_numpy(logits, t, gamma_neg=4.0, clip=0.1), rtol=1e-5
    )


def test_intra_asymmetric_loss_gradient_flows_through_focusing_weight():
    logits, t = _asl_case()
    grad = np.asarray(
        jax.jit(jax.grad(lambda x: intra_asymmetric_loss(x, jnp.asarray(t))[0]))(
            jnp.asarray(logits, jnp.float32)
        )
    )
    h = 1e-6
    fd = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (_asl_numpy(up, t) - _asl_numpy(down, t)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-3, atol=1e-7)
    # Hand-derived positive-pair gradient with the weight not detached:
    # d/dl[-(1 - q) log q] = -(1 - q)^2 + q (1 - q) log q. A detached weight would give -(1 - q)^2.
    y = np.asarray(pair_targets(jnp.asarray(t)))
    q = _sigmoid(logits)
    hand = (-((1 - q) ** 2) + q * (1 - q) * np.log(q)) / logits.size
    np.testing.assert_allclose(grad[y == 1], hand[y == 1], rtol=1e-4)
    assert np.all(grad[(y == 0) & (q < 0.05)] == 0)  # clipped negatives: zero loss, zero gradient


# ---------------------------------------------------------------------------------------------------
# Instance contrastive loss (notes §2.2)


def _contrastive_sets(v, t):
    """Loop over pairs i < j and classes: lists of (term value) per category."""
    batch, num_classes, _ = v.shape
    pp, pn, nn = [], [], []
    for i in range(batch):
        for j in range(i + 1, batch):
            for c in range(num_classes):
                cos = _torch17_cos(v[i, c], v[j, c])
                a, b = t[i, c], t[j, c]
                if a == 1 and b == 1:
                    pp.append(1.0 - cos)
                elif a != 0 and b != 0 and a != b:
                    pn.append(1.0 + cos)
                elif a == -1 and b == -1:
                    nn.append(1.0 + cos)
    return pp, pn, nn


def test_instance_contrastive_without_subsampling_and_zero_vector():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(4, 4, 3))
    v[2, 1] = 0.0  # torch-1.7 eps: a zero vector has cosine 0 with everything
    t = _labels(rng, (4, 4))
    pp, pn, nn = _contrastive_sets(v, t)
    loss, metrics = instance_contrastive_loss(
        jnp.asarray(v, jnp.float32), jnp.asarray(t), jax.random.key(0), subsample=False
    )
    np.testing.assert_allclose(float(loss), np.mean(pp + pn + nn), rtol=1e-5)
    assert (metrics["num_pos_pos"], metrics["num_pos_neg"], metrics["num_neg_neg"]) == (
        len(pp),
        len(pn),
        len(nn),
    )
    assert float(metrics["num_terms"]) == len(pp + pn + nn)


def test_instance_contrastive_cosine_floor_on_tiny_features():
    """torch 1.7's floor is on |x|^2 |y|^2 at eps^2 = 1e-18: class 1's vectors of norm ~1e-3
    (products ~1e-12) are above it (their true cosines), class 2's of norm ~3e-6 (products
    ~1e-22) below it (x.y / 1e-9)."""
    rng = np.random.default_rng(4)
    v = rng.normal(size=(5, 4, 3))  # B = 5 != C = 4: the pairs are over images
    v[:, 1] *= 1e-3
    v[:, 2] *= 3e-6
    t = np.array(
        [[1, 1, 1, 0], [1, -1, 1, -1], [-1, 1, -1, 1], [0, -1, 1, 1], [1, 1, -1, -1]], np.int8
    )
    pp, pn, nn = _contrastive_sets(v.astype(np.float32), t)
    loss, _ = instance_contrastive_loss(
        jnp.asarray(v, jnp.float32), jnp.asarray(t), jax.random.key(0), subsample=False
    )
    np.testing.assert_allclose(float(loss), np.mean(pp + pn + nn), rtol=1e-5)


# N_pp = 3, n_pn = 6, n_nn = 4: 2 N_pp >= both set sizes, so the random part keeps every entry.
_HARD_LABELS = np.array([[1, 1, -1, 1], [0, 1, 0, -1], [-1, 0, -1, -1], [0, 1, 1, -1]], np.int8)


def test_instance_contrastive_hard_part_counts_twice():
    rng = np.random.default_rng(4)
    v = rng.normal(size=(4, 4, 3))
    pp, pn, nn = _contrastive_sets(v, _HARD_LABELS)
    n_pp = len(pp)
    assert (n_pp, len(pn), len(nn)) == (3, 6, 4)
    # Weights: every entry once (random part), plus once more for the N_pp largest (hard part).
    total, count = sum(pp), n_pp
    for terms in (pn, nn):
        hard = sorted(terms, reverse=True)[:n_pp]
        total += sum(terms) + sum(hard)
        count += len(terms) + len(hard)
    for seed in range(3):  # the random part keeps everything whatever the key
        loss, metrics = instance_contrastive_loss(
            jnp.asarray(v, jnp.float32), jnp.asarray(_HARD_LABELS), jax.random.key(seed)
        )
        np.testing.assert_allclose(float(loss), total / count, rtol=1e-5)
        assert float(metrics["num_terms"]) == count == 3 + (6 + 3) + (4 + 3)


def test_subsample_weights_random_part_is_uniform_without_replacement():
    valid = jnp.asarray(np.arange(12) % 3 != 0)  # 8 valid entries
    loss = jnp.asarray(np.linspace(0.1, 1.9, 12), jnp.float32)  # hardest = last valid entries
    num_pp = jnp.asarray(2)
    weights = jax.jit(jax.vmap(lambda k: contrastive._subsample_weights(valid, loss, num_pp, k)))(
        jax.random.split(jax.random.key(5), 2000)
    )
    weights = np.asarray(weights)
    valid_np = np.asarray(valid)
    hard = np.zeros(12, bool)
    hard[[10, 11]] = True  # the two largest valid losses
    assert np.all(weights[:, ~valid_np] == 0)
    assert set(np.unique(weights).tolist()) <= {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(weights.sum(axis=1), min(4, 8) + min(2, 8))
    random_part = weights - hard[None, :]
    assert np.all(random_part >= 0) and np.all(random_part <= 1)
    np.testing.assert_array_equal(random_part.sum(axis=1), 4)  # exactly 2 N_pp distinct entries
    # Each valid entry is drawn with probability 2 N_pp / n = 1/2.
    np.testing.assert_allclose(random_part[:, valid_np].mean(axis=0), 0.5, atol=0.05)


def test_instance_contrastive_random_counts_and_value_bounds():
    # Few pos-pos terms: the random part is a strict subset; its size is fixed.
    t = np.array([[1, -1, -1, 0], [1, -1, -1, -1], [-1, -1, 1, -1], [-1, 0, -1, -1]], np.int8)
    rng = np.random.default_rng(6)
    v = rng.normal(size=(4, 4, 3))
    pp, pn, nn = _contrastive_sets(v, t)
    n_pp = len(pp)
    assert n_pp == 1 and len(pn) > 2 and len(nn) > 2
    expected_count = n_pp + sum(min(2 * n_pp, len(s)) + min(n_pp, len(s)) for s in (pn, nn))
    values = []
    for seed in range(5):
        loss, metrics = instance_contrastive_loss(
            jnp.asarray(v, jnp.float32), jnp.asarray(t), jax.random.key(seed)
        )
        assert float(metrics["num_terms"]) == expected_count
        values.append(float(loss))
    # Each draw must be one of the enumerable subset means.
    hardest = [max(pn), max(nn)]
    candidates = set()
    for a in range(len(pn)):
        for b in range(a + 1, len(pn)):
            for c in range(len(nn)):
                for d in range(c + 1, len(nn)):
                    s = pp[0] + pn[a] + pn[b] + nn[c] + nn[d] + sum(hardest)
                    candidates.add(round(s / expected_count, 5))
    assert all(round(x, 5) in candidates for x in values)
    assert len({round(x, 6) for x in values}) > 1  # the key matters


def test_instance_contrastive_empty_sets():
    rng = np.random.default_rng(7)
    v = jnp.asarray(rng.normal(size=(4, 4, 3)), jnp.float32)
    # N_pp = 0: both lists kept whole, whatever the key.
    t = np.array([[1, -1, 0, -1], [-1, 1, -1, 0], [-1, -1, 1, -1], [0, -1, -1, 1]], np.int8)
    t = jnp.asarray(t)  # at most one known positive per class
    assert _contrastive_sets(np.asarray(v), np.asarray(t))[0] == []
    whole, _ = instance_contrastive_loss(v, t, jax.random.key(0), subsample=False)
    for seed in range(3):
        loss, _ = instance_contrastive_loss(v, t, jax.random.key(seed))
        np.testing.assert_allclose(float(loss), float(whole), rtol=1e-6)
    # No term at all (everything unknown): 0 with zero gradient (the reference would give NaN).
    unknown = jnp.zeros((4, 4), jnp.int8)
    loss, grad = jax.jit(
        jax.value_and_grad(lambda x: instance_contrastive_loss(x, unknown, jax.random.key(0))[0])
    )(v)
    assert float(loss) == 0.0 and np.all(np.asarray(grad) == 0)


def test_instance_contrastive_jits_once_for_any_labels():
    rng = np.random.default_rng(8)
    fn = instance_contrastive_loss  # the module-level jit
    v = jnp.asarray(rng.normal(size=(4, 4, 3)), jnp.float32)
    sizes = []
    for seed in range(3):
        t = jnp.asarray(_labels(np.random.default_rng(seed), (4, 4)))
        loss, _ = fn(v, t, jax.random.key(seed))
        assert np.isfinite(float(loss))
        sizes.append(fn._cache_size())
    assert sizes[0] == sizes[-1]  # no retrace for new label patterns or keys


# ---------------------------------------------------------------------------------------------------
# Prototype contrastive loss and mean cosines (notes §7.3, §9.3, §9.4)


def _mean_cos_loops(v, sets):
    batch, num_classes, _ = v.shape
    d = np.zeros((batch, num_classes))
    for b in range(batch):
        for c in range(num_classes):
            d[b, c] = np.mean([_torch17_cos(v[b, c], row) for row in sets[c]])
    return d


def test_mean_cosine_to_set_matches_per_row_formula_with_zero_rows():
    rng = np.random.default_rng(9)
    v = rng.normal(size=(4, 5, 3))
    v[1, 2] = 0.0
    bank = rng.normal(size=(5, 6, 3)) * rng.uniform(0.01, 10, size=(5, 6, 1))
    bank[:, 4:] = 0.0  # unfilled bank rows: cosine 0, still in the mean
    d = mean_cosine_to_set(jnp.asarray(v, jnp.float32), jnp.asarray(bank, jnp.float32))
    np.testing.assert_allclose(np.asarray(d), _mean_cos_loops(v, bank), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("paper_sign", [False, True])
def test_prototype_contrastive_loss_both_signs(paper_sign):
    rng = np.random.default_rng(10)
    v = rng.normal(size=(5, 4, 3))
    t = _labels(rng, (5, 4))
    protos = rng.normal(size=(4, 3, 3))
    protos[2, 1] = 0.0
    d = _mean_cos_loops(v, protos)
    sign = -1.0 if paper_sign else 1.0
    expected = np.mean([1.0 + sign * t[b, c] * d[b, c] for b in range(5) for c in range(4)])
    loss, metrics = prototype_contrastive_loss(
        jnp.asarray(v, jnp.float32),
        jnp.asarray(t),
        jnp.asarray(protos, jnp.float32),
        paper_sign=paper_sign,
    )
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["mean_prototype_cosine"]), d[t == 1].mean(), rtol=1e-5)
    # Direction: the gradient step moves a known positive toward its prototypes only with paper_sign.
    grad = jax.jit(
        jax.grad(
            lambda x: prototype_contrastive_loss(
                x, jnp.asarray(t), jnp.asarray(protos, jnp.float32), paper_sign=paper_sign
            )[0]
        )
    )(jnp.asarray(v, jnp.float32))
    b, c = np.argwhere(t == 1)[0]
    moved = v.copy()
    moved[b, c] -= 1e-3 * np.asarray(grad)[b, c]
    change = _mean_cos_loops(moved, protos)[b, c] - d[b, c]
    assert change > 0 if paper_sign else change < 0


@pytest.mark.parametrize("gammas", [(0.0, 1.0), (2.0, 0.0), (0.0, 0.0), (2.0, 1.0)])
def test_intra_asymmetric_loss_matches_torch_at_zero_exponents_and_saturated_logits(gammas):
    """The reference's ASL in torch (pt = q y + q_neg (1 - y), torch.pow(1 - pt, gamma_pos y +
    gamma_neg (1 - y))) on logits whose probabilities saturate in float32 (+-40: 1 - pt = 0):
    same loss and gradient. torch's pow backward gives no gradient where the exponent is 0;
    lax.pow once gave 0 * 0^-1 = NaN there."""
    torch = pytest.importorskip("torch")
    gamma_neg, gamma_pos = gammas
    logits, t = _asl_case()
    t[0] = [1, 1, 1, -1, 0]  # pairs (0, 1), (0, 2) positive; (0, 3), (0, 4) negative
    logits[0, :4] = [40.0, -40.0, 40.0, -40.0]
    y = np.asarray(pair_targets(jnp.asarray(t)), np.float32)
    np.testing.assert_array_equal(y[0, :4], [1, 1, 0, 0])

    def theirs(x):
        return torch_asl(x, torch.tensor(y), gamma_pos=gamma_pos, gamma_neg=gamma_neg).mean()

    xt = torch.tensor(logits, dtype=torch.float32, requires_grad=True)
    want = theirs(xt)
    want.backward()
    kwargs = {"gamma_neg": gamma_neg, "gamma_pos": gamma_pos}
    fn = jax.value_and_grad(lambda x: intra_asymmetric_loss(x, jnp.asarray(t), **kwargs)[0])
    got, grad = fn(jnp.asarray(logits, jnp.float32))
    assert np.isfinite(np.asarray(grad)).all()
    np.testing.assert_allclose(float(got), want.item(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(grad), xt.grad.numpy(), rtol=1e-4, atol=1e-9)


def test_intra_asymmetric_loss_clamps_pass_gradient_on_their_boundary():
    """torch.clamp's backward passes the gradient where the value sits exactly on the bound. With
    clip = eps = 0.0625 and q = 0.0625 exactly (float32 sigmoid of -2.7080503), the positive pair
    has q = eps and the negative pairs 1 - q + clip = 1; at gamma 0 the loss is
    mean(-[y log q + (1 - y) log(1 - q + clip)]), whose gradient by hand is -(1 - q) / P on the
    positive pair and q (1 - q) / P on each negative one."""
    edge = np.float32(-2.7080503)
    assert float(jax.nn.sigmoid(jnp.float32(edge))) == 0.0625
    t = jnp.asarray([[1, 1, -1]], jnp.int8)  # pair (0, 1) positive, (0, 2) and (1, 2) negative
    kwargs = {"gamma_neg": 0.0, "gamma_pos": 0.0, "clip": 0.0625, "eps": 0.0625}
    grad = jax.grad(lambda x: intra_asymmetric_loss(x, t, **kwargs)[0])(jnp.full((1, 3), edge))
    q = 0.0625
    np.testing.assert_allclose(
        np.asarray(grad), [[-(1 - q) / 3, q * (1 - q) / 3, q * (1 - q) / 3]], rtol=1e-6
    )


def test_intra_asymmetric_loss_names_the_expected_pair_shape():
    with pytest.raises(ValueError, match=r"^pair_logits \(2, 9\) != \(B, P\) = \(2, 10\)"):
        intra_asymmetric_loss(jnp.zeros((2, 9)), jnp.zeros((2, 5), jnp.int8))


# ---------------------------------------------------------------------------------------------------
# IST pseudo-label scores (notes §7.3, §9.3)


def test_cooccurrence_matrix():
    rng = np.random.default_rng(11)
    logits = rng.normal(size=(3, 10))
    s = np.asarray(cooccurrence_matrix(jnp.asarray(logits, jnp.float32), 5))
    for b in range(3):
        p = 0
        for i in range(5):
            assert s[b, i, i] == 1.0
            for j in range(i + 1, 5):
                np.testing.assert_allclose(s[b, i, j], _sigmoid(logits[b, p]), rtol=1e-6)
                np.testing.assert_allclose(s[b, j, i], _sigmoid(logits[b, p]), rtol=1e-6)
                p += 1


def test_cooccurrence_matrix_of_one_and_two_classes():
    """C = 1 has no pair (P = 0): the (B, 1, 1) matrix is its unit diagonal. C = 2 has one pair:
    S[b, 0, 1] = S[b, 1, 0] = sigmoid(l[b, 0])."""
    s = np.asarray(cooccurrence_matrix(jnp.zeros((3, 0), jnp.float32), 1))
    assert s.shape == (3, 1, 1) and s.dtype == np.float32
    np.testing.assert_array_equal(s, 1.0)
    logits = np.asarray([[-2.0], [0.5], [3.0]])
    s = np.asarray(cooccurrence_matrix(jnp.asarray(logits, jnp.float32), 2))
    assert s.shape == (3, 2, 2)
    for b in range(3):
        np.testing.assert_array_equal(np.diag(s[b]), [1.0, 1.0])
        np.testing.assert_allclose(s[b, 0, 1], _sigmoid(logits[b, 0]), rtol=1e-6)
        np.testing.assert_allclose(s[b, 1, 0], _sigmoid(logits[b, 0]), rtol=1e-6)


def test_intra_scores_with_and_without_known_positives():
    rng = np.random.default_rng(12)
    logits = rng.normal(size=(4, 10))
    t = _labels(rng, (4, 5))
    t[3] = [-1, 0, -1, 0, 0]  # no known positive: every score 0
    t[0] = [1, 0, 0, -1, 0]  # a single known positive: its own score is exactly 1
    s = np.asarray(cooccurrence_matrix(jnp.asarray(logits, jnp.float32), 5), np.float64)
    scores = np.asarray(intra_scores(jnp.asarray(s), jnp.asarray(t)))
    for b in range(4):
        known = [j for j in range(5) if t[b, j] == 1]
        for i in range(5):
            expected = sum(s[b, i, j] for j in known) / max(len(known), 1)
            np.testing.assert_allclose(scores[b, i], expected, rtol=1e-6, atol=1e-7)
    assert np.all(scores[3] == 0) and scores[0, 0] == 1.0


# ---------------------------------------------------------------------------------------------------
# Threshold rules and label completion


def test_sst_threshold_two_step_rule():
    scores = jnp.asarray([[0.2, 0.5, 0.7, 1.0, -0.3, 0.49999]])
    np.testing.assert_array_equal(sst_threshold(scores, 0.5), [[0, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(sst_threshold(scores, 0.5), indicator(scores, 0.5))
    for theta in (1.0, 1.2):  # theta >= 1: the 1s of step 1 are <= theta -> no pseudo label at all
        np.testing.assert_array_equal(sst_threshold(scores, theta), np.zeros((1, 6)))
    traced = jax.jit(sst_threshold)(scores, jnp.asarray(0.7))
    np.testing.assert_array_equal(traced, [[0, 0, 1, 1, 0, 0]])
    assert np.all(
        np.asarray(jax.jit(jax.grad(lambda x: jnp.sum(sst_threshold(x, 0.5))))(scores)) == 0
    )


def test_indicator_strict_and_non_strict():
    scores = jnp.asarray([0.3, 0.5, 0.8])
    np.testing.assert_array_equal(indicator(scores, 0.5), [0, 1, 1])
    np.testing.assert_array_equal(indicator(scores, 0.5, strict=True), [0, 0, 1])
    soft = hst_soft_scores(scores, 0.5)
    np.testing.assert_array_equal(indicator(soft, 0.0, strict=True), [0, 0, 1])


def test_hst_soft_scores_value_and_torch_clamp_gradient():
    scores = jnp.asarray([1.0, 0.3, 1.4, 2.5, 2.0, -0.5])
    margin = 1.0
    np.testing.assert_allclose(hst_soft_scores(scores, margin), [0.0, 0.0, 0.4, 1.0, 1.0, 0.0])
    g_margin = jax.jit(jax.grad(lambda m: hst_soft_scores(scores, m)[0]))(margin)
    assert float(g_margin) == -1.0  # x = 0 exactly (lower boundary): torch passes the gradient
    per_entry = jax.jit(
        jax.vmap(jax.grad(lambda s, m: hst_soft_scores(s, m), argnums=(0, 1)), (0, None))
    )
    g_score, g_m = per_entry(scores, margin)
    np.testing.assert_array_equal(g_score, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0])  # x = 1: upper boundary
    np.testing.assert_array_equal(g_m, [-1.0, 0.0, -1.0, 0.0, -1.0, 0.0])


def test_complete_labels():
    t = jnp.asarray([[1, 0, -1, 0], [0, 0, 1, -1]], jnp.int8)
    ind = jnp.asarray([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    y = complete_labels(t, ind)
    assert y.dtype == jnp.int8
    np.testing.assert_array_equal(y, [[1, 1, -1, 0], [0, 1, 1, -1]])


# ---------------------------------------------------------------------------------------------------
# SST bank and pseudo-label quality


def _bank_python(bank, v, t):
    """notes §7.2 / `updateFeature`: per class, cat((positives in batch order, old rows))[:N]."""
    num_classes, num_rows, _ = bank.shape
    out = bank.copy()
    for c in range(num_classes):
        new = [v[b, c] for b in range(v.shape[0]) if t[b, c] == 1]
        rows = new + [bank[c, n] for n in range(num_rows)]
        out[c] = np.stack(rows[:num_rows])
    return out


def test_update_bank_fifo_order_over_several_updates():
    rng = np.random.default_rng(13)
    num_classes, num_rows, dim, batch = 4, 3, 3, 5
    bank = np.zeros((num_classes, num_rows, dim), np.float32)
    fn = jax.jit(update_bank)
    for step in range(5):
        v = rng.normal(size=(batch, num_classes, dim)).astype(np.float32)
        t = _labels(rng, (batch, num_classes))
        if step == 1:
            t[:, 0] = 1  # 5 positives of class 0 in one batch > N = 3: keep the first 3
            t[:, 1] = -1  # no positive of class 1: unchanged
        expected = _bank_python(bank, v, t)
        new_bank = np.asarray(fn(jnp.asarray(bank), jnp.asarray(v), jnp.asarray(t)))
        np.testing.assert_array_equal(new_bank, expected)
        if step == 1:
            np.testing.assert_array_equal(new_bank[0], v[:3, 0])  # first image at row 0
            np.testing.assert_array_equal(new_bank[1], bank[1])
        bank = new_bank
    assert fn._cache_size() == 1


def test_update_bank_larger_than_the_batch():
    """A bank of more rows than the batch has images (N = 9 > B = 7 > C = 3): a class whose every
    image is positive, one with more positives than there are classes, one with none."""
    rng = np.random.default_rng(17)
    bank = rng.normal(size=(3, 9, 4)).astype(np.float32)
    v = rng.normal(size=(7, 3, 4)).astype(np.float32)
    t = np.full((7, 3), -1, np.int8)
    t[:, 0] = 1
    t[[0, 2, 3, 5, 6], 1] = 1
    new_bank = np.asarray(update_bank(jnp.asarray(bank), jnp.asarray(v), jnp.asarray(t)))
    np.testing.assert_array_equal(new_bank, _bank_python(bank, v, t))
    np.testing.assert_array_equal(new_bank[0, :7], v[:, 0])


def test_update_bank_keeps_batch_order_in_a_large_batch():
    """The positives enter the bank in batch order at any batch size: B = 40 (above 16, where an
    unstable sort reorders ties on XLA:CPU), half the entries positive, N = 24 rows."""
    rng = np.random.default_rng(19)
    bank = rng.normal(size=(3, 24, 2)).astype(np.float32)
    v = rng.normal(size=(40, 3, 2)).astype(np.float32)
    t = np.where(rng.random((40, 3)) < 0.5, 1, -1).astype(np.int8)
    new_bank = np.asarray(update_bank(jnp.asarray(bank), jnp.asarray(v), jnp.asarray(t)))
    np.testing.assert_array_equal(new_bank, _bank_python(bank, v, t))


def test_prototype_contrastive_default_sign_and_a_single_positive_by_hand():
    """The default is the authors' coded sign, mean(1 + t d); the logged mean cosine of a batch
    with a single known positive is that entry's d (cosines written out in numpy)."""
    rng = np.random.default_rng(18)
    v = rng.normal(size=(2, 3, 4)).astype(np.float32)
    protos = rng.normal(size=(3, 2, 4)).astype(np.float32)
    t = np.array([[0, -1, 0], [1, 0, -1]], np.int8)
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)
    d = np.einsum("bcd,ckd->bck", unit(v.astype(np.float64)), unit(protos.astype(np.float64)))
    d = d.mean(-1)
    loss, metrics = prototype_contrastive_loss(v, t, protos)
    np.testing.assert_allclose(float(loss), np.mean(1 + t * d), rtol=1e-5)
    np.testing.assert_allclose(float(metrics["mean_prototype_cosine"]), d[1, 0], rtol=1e-5)


def test_pseudo_label_quality_counts():
    rng = np.random.default_rng(14)
    t = _labels(rng, (6, 5))
    full = rng.integers(0, 2, size=(6, 5))
    full = np.where(t == 1, 1, np.where(t == -1, 0, full))
    pseudo = np.where(t == 0, rng.choice([-1, 0, 1], size=(6, 5)), t).astype(np.int8)
    counts = {
        k: int(x) for k, x in pseudo_label_quality(*map(jnp.asarray, (pseudo, t, full))).items()
    }
    expected = dict.fromkeys(counts, 0)
    for b in range(6):
        for c in range(5):
            if t[b, c] != 0:
                continue
            expected["unknown"] += 1
            expected["unknown_positive"] += int(full[b, c] == 1)
            if pseudo[b, c] == 1:
                expected["pseudo_positive"] += 1
                expected["pseudo_positive_correct"] += int(full[b, c] == 1)
            if pseudo[b, c] == -1:
                expected["pseudo_negative"] += 1
                expected["pseudo_negative_correct"] += int(full[b, c] == 0)
    assert counts == expected
