"""Representation blending ops (SARB/DSRB) against the equations written out with Python loops.

References are float64 numpy with explicit loops over images, classes, rows and columns: DSRB eq. 6-9
(instance-perspective blending), eq. 10-13 (prototype-perspective blending) and the reference-code
notes §8.2, §8.3, §10.2-§10.4 (partner = the reversed batch, class selection, quadrants, capped
location buckets with the n + 1 placeholder). Nothing is copied from the functions' own output.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlrpl_jax.losses import partial_bce
from mlrpl_jax.ops.blending import (
    accumulate_location_sums,
    attention_quadrants,
    instance_blend,
    location_prototypes,
    mixup,
    other_quadrants,
    partner_mask,
    prototype_blend,
    select_unknown_classes,
)

# One compiled program per function (op-by-op eager dispatch compiles every primitive separately).
partner_mask = jax.jit(partner_mask)
instance_blend = jax.jit(instance_blend)
prototype_blend = jax.jit(prototype_blend)
select_unknown_classes = jax.jit(select_unknown_classes, static_argnames="top_k")
attention_quadrants = jax.jit(attention_quadrants)
other_quadrants = jax.jit(other_quadrants)
accumulate_location_sums = jax.jit(accumulate_location_sums, static_argnames="cap")
location_prototypes = jax.jit(location_prototypes)
mixup = jax.jit(mixup)

# Hand-made partial labels, B = 4, C = 5. Partner of row b is row 3 - b.
#   row 0 <-> row 3: c0 (0 | 1) blended in row 0; c3 (1 | 0) blended in row 3; c4 (0 | 0) not.
#   row 1 <-> row 2: c1 (0 | 1) blended in row 1; c2 (-1 | 1) not (known negative); c4 (1 | 0) row 2.
LABELS_4 = np.array(
    [
        [0, 1, 0, 1, 0],
        [-1, 0, -1, 0, 1],
        [1, 1, 1, -1, 0],
        [1, -1, -1, 0, 0],
    ],
    np.int8,
)
BLENDED_4 = {(0, 0), (3, 3), (1, 1), (2, 4)}  # (b, c) pairs read off by hand from LABELS_4

# Odd batch, B = 5: the middle row 2 is its own partner and is never blended, even with zeros.
LABELS_5 = np.array(
    [
        [0, 1, 0, -1],
        [1, 0, 0, 0],
        [0, 0, 1, 0],
        [0, 1, 1, 1],
        [1, 0, -1, 0],
    ],
    np.int8,
)
#   row 0 <-> row 4: c0 (0 | 1) row 0; c1 (1 | 0) row 4; c3 (-1 | 0) not.
#   row 1 <-> row 3: c1 (0 | 1) row 1; c2 (0 | 1) row 1; c3 (0 | 1) row 1; c0 (1 | 0) row 3.
BLENDED_5 = {(0, 0), (4, 1), (1, 1), (1, 2), (1, 3), (3, 0)}


# ---------------------------------------------------------------------------------------------------
# Oracles


def _partner_mask_ref(labels):
    batch, num_classes = labels.shape
    mask = np.zeros((batch, num_classes), bool)
    for b in range(batch):
        partner = batch - 1 - b
        for c in range(num_classes):
            mask[b, c] = labels[b, c] == 0 and labels[partner, c] == 1
    return mask


def _instance_blend_ref(features, labels, alpha):
    """Eq. 6-7 per (b, c): alpha F + (1 - alpha) F_partner and 1 - alpha where y=0, y_partner=1."""
    batch, num_classes = labels.shape
    alpha = np.broadcast_to(np.asarray(alpha, np.float64), (num_classes,))
    features = np.asarray(features, np.float64)
    out = features.copy()
    targets = labels.astype(np.float64)
    for b in range(batch):
        partner = batch - 1 - b
        for c in range(num_classes):
            if labels[b, c] == 0 and labels[partner, c] == 1:
                a = alpha[c]
                out[b, c] = a * features[b, c] + (1 - a) * features[partner, c]
                targets[b, c] = 1 - a
    return out, targets


def _prototype_blend_ref(features, labels, beta, prototypes, selected):
    """Eq. 10-11 per (b, c): beta F + (1 - beta) P and 1 - beta on selected entries."""
    batch, num_classes = labels.shape
    beta = np.broadcast_to(np.asarray(beta, np.float64), (num_classes,))
    features = np.asarray(features, np.float64)
    prototypes = np.broadcast_to(np.asarray(prototypes, np.float64), features.shape)
    out = features.copy()
    targets = labels.astype(np.float64)
    for b in range(batch):
        for c in range(num_classes):
            if selected[b, c]:
                out[b, c] = beta[c] * features[b, c] + (1 - beta[c]) * prototypes[b, c]
                targets[b, c] = 1 - beta[c]
    return out, targets


def _quadrants_ref(attention, feature_sum):
    """Notes §10.3 with loops: R = a * sum_d x; row* / col* = first argmax of per-row / per-column max."""
    batch, h, w, num_classes = attention.shape
    q = np.zeros((batch, num_classes), np.int64)
    for b in range(batch):
        for c in range(num_classes):
            r = [[0.0] * w for _ in range(h)]
            for i in range(h):
                for j in range(w):
                    r[i][j] = float(attention[b, i, j, c]) * float(feature_sum[b, i, j])
            row_max = [max(r[i]) for i in range(h)]
            col_max = [max(r[i][j] for i in range(h)) for j in range(w)]
            row = next(i for i in range(h) if row_max[i] == max(row_max))
            col = next(j for j in range(w) if col_max[j] == max(col_max))
            q[b, c] = 2 * int(row >= h // 2) + int(col >= w // 2)
    return q


def _location_buckets_ref(batches, num_classes, cap):
    """Notes §10.4: loader order, image by image; append v[b, c] to bucket (c, q) while len < cap."""
    buckets = [[[] for _ in range(4)] for _ in range(num_classes)]
    for features, quadrants, positive in batches:
        for b in range(features.shape[0]):
            for c in range(num_classes):
                if positive[b, c]:
                    bucket = buckets[c][quadrants[b, c]]
                    if len(bucket) < cap:
                        bucket.append(np.asarray(features[b, c], np.float64))
    return buckets


def _location_prototypes_ref(buckets, dim):
    num_classes = len(buckets)
    sums = np.zeros((num_classes, 4, dim))
    counts = np.zeros((num_classes, 4), np.int64)
    protos = np.zeros((num_classes, 4, dim))
    for c in range(num_classes):
        kept = [v for q in range(4) for v in buckets[c][q]]
        for q in range(4):
            n = len(buckets[c][q])
            counts[c, q] = n
            for v in buckets[c][q]:
                sums[c, q] += v
            if n > 0:
                # Mean including the all-zero placeholder row: sum / (n + 1).
                protos[c, q] = sums[c, q] / (n + 1)
            elif kept:
                protos[c, q] = sum(kept) / len(kept)
            # else: a class with no known positive at all keeps zero prototypes.
    return sums, counts, protos


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# ---------------------------------------------------------------------------------------------------
# Instance-perspective blending (eq. 6-9, notes §8.2, §10.2)


@pytest.mark.parametrize("labels, blended", [(LABELS_4, BLENDED_4), (LABELS_5, BLENDED_5)])
def test_partner_mask_is_reversed_batch_condition(labels, blended):
    mask = np.asarray(partner_mask(jnp.asarray(labels)))
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, _partner_mask_ref(labels))
    assert {tuple(int(i) for i in bc) for bc in np.argwhere(mask)} == blended
    if labels.shape[0] % 2:
        assert not mask[labels.shape[0] // 2].any()  # the middle image is its own partner


@pytest.mark.parametrize("labels", [LABELS_4, LABELS_5], ids=["B4", "B5"])
@pytest.mark.parametrize("alpha_kind", ["scalar", "per_class"])
@pytest.mark.parametrize("trailing", [(3,), (2, 3, 2)], ids=["vectors", "maps"])
def test_instance_blend_matches_eq_6_to_9(labels, alpha_kind, trailing):
    rng = np.random.default_rng(10)
    batch, num_classes = labels.shape
    features = rng.normal(size=(batch, num_classes) + trailing).astype(np.float32)
    if alpha_kind == "scalar":
        alpha = np.float32(0.3)
    else:
        alpha = rng.uniform(0.1, 0.9, size=num_classes).astype(np.float32)
    out, targets = instance_blend(jnp.asarray(features), jnp.asarray(labels), jnp.asarray(alpha))
    out, targets = np.asarray(out), np.asarray(targets)
    ref_out, ref_targets = _instance_blend_ref(features, labels, alpha)
    assert out.shape == features.shape and out.dtype == np.float32
    assert targets.shape == labels.shape and targets.dtype == np.float32
    np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-6, atol=1e-7)
    # Entries outside the blend condition are untouched bit for bit.
    mask = _partner_mask_ref(labels)
    np.testing.assert_array_equal(out[~mask], features[~mask])
    np.testing.assert_array_equal(targets[~mask], labels[~mask].astype(np.float32))
    # Blended targets are exactly the hand value 1 - alpha_c.
    alpha_c = np.broadcast_to(alpha, (num_classes,))
    for b, c in np.argwhere(mask):
        np.testing.assert_allclose(targets[b, c], 1 - alpha_c[c], rtol=1e-6)
    if batch % 2:
        middle = batch // 2
        np.testing.assert_array_equal(out[middle], features[middle])
        np.testing.assert_array_equal(targets[middle], labels[middle].astype(np.float32))


def test_instance_blend_alpha_one_is_identity_and_alpha_zero_copies_partner():
    rng = np.random.default_rng(11)
    features = rng.normal(size=(4, 5, 3)).astype(np.float32)
    labels = jnp.asarray(LABELS_4)
    out, targets = instance_blend(jnp.asarray(features), labels, jnp.float32(1.0))
    np.testing.assert_array_equal(np.asarray(out), features)
    np.testing.assert_array_equal(np.asarray(targets), LABELS_4.astype(np.float32))
    out, targets = instance_blend(jnp.asarray(features), labels, jnp.float32(0.0))
    out, targets = np.asarray(out), np.asarray(targets)
    for b, c in BLENDED_4:
        np.testing.assert_allclose(out[b, c], features[3 - b, c], rtol=1e-6)
        assert targets[b, c] == 1.0  # the partner's known positive is transferred whole


def test_instance_blend_keeps_bfloat16_features():
    features = jnp.ones((4, 5, 2), jnp.bfloat16)
    out, targets = instance_blend(features, jnp.asarray(LABELS_4), jnp.float32(0.25))
    assert out.dtype == jnp.bfloat16 and targets.dtype == jnp.float32


# ---------------------------------------------------------------------------------------------------
# Pooling commutes with both blends (module docstring; notes §10.2, §10.3 low-memory form)


@pytest.mark.parametrize("alpha_kind", ["scalar", "per_class"])
def test_instance_blend_maps_then_pool_equals_pooled_blend(alpha_kind):
    rng = np.random.default_rng(20)
    labels = LABELS_5
    maps = rng.normal(size=(5, 4, 3, 2, 3)).astype(np.float32)  # (B, C, H, W, D)
    alpha = (
        np.float32(0.4) if alpha_kind == "scalar" else np.array([0.2, 0.5, 0.7, 0.9], np.float32)
    )
    blended_maps, t_maps = instance_blend(jnp.asarray(maps), jnp.asarray(labels), alpha)
    blended_vecs, t_vecs = instance_blend(jnp.asarray(maps.sum((2, 3))), jnp.asarray(labels), alpha)
    np.testing.assert_allclose(
        np.asarray(blended_maps).sum((2, 3)), np.asarray(blended_vecs), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(t_maps), np.asarray(t_vecs))
    # And both equal the loop oracle on the pooled vectors.
    ref, _ = _instance_blend_ref(maps.astype(np.float64).sum((2, 3)), labels, alpha)
    np.testing.assert_allclose(np.asarray(blended_vecs), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beta_kind", ["scalar", "per_class"])
def test_prototype_blend_maps_then_pool_equals_pooled_blend(beta_kind):
    rng = np.random.default_rng(21)
    labels = LABELS_4
    maps = rng.normal(size=(4, 5, 3, 3, 2)).astype(np.float32)
    proto_maps = rng.normal(size=(4, 5, 3, 3, 2)).astype(np.float32)
    selected = np.zeros((4, 5), bool)
    selected[0, 2] = selected[1, 1] = selected[2, 4] = selected[3, 3] = True
    beta = (
        np.float32(0.35) if beta_kind == "scalar" else rng.uniform(0.1, 0.9, 5).astype(np.float32)
    )
    args = (jnp.asarray(labels), jnp.asarray(beta))
    blended_maps, t_maps = prototype_blend(
        jnp.asarray(maps), *args, jnp.asarray(proto_maps), jnp.asarray(selected)
    )
    blended_vecs, t_vecs = prototype_blend(
        jnp.asarray(maps.sum((2, 3))),
        *args,
        jnp.asarray(proto_maps.sum((2, 3))),
        jnp.asarray(selected),
    )
    np.testing.assert_allclose(
        np.asarray(blended_maps).sum((2, 3)), np.asarray(blended_vecs), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(np.asarray(t_maps), np.asarray(t_vecs))
    ref, _ = _prototype_blend_ref(
        maps.astype(np.float64).sum((2, 3)),
        labels,
        beta,
        proto_maps.astype(np.float64).sum((2, 3)),
        selected,
    )
    np.testing.assert_allclose(np.asarray(blended_vecs), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------
# Class selection for prototype blending (eq. 10 "random({c | y_c = 0})", notes §8.3, §10.3)


def test_select_unknown_classes_counts_and_only_unknowns():
    rng = np.random.default_rng(30)
    labels = rng.choice([-1, 0, 1], size=(6, 8), p=(0.3, 0.4, 0.3)).astype(np.int8)
    labels[:, :3] = 0  # every row has >= 3 unknowns
    for top_k in (1, 2, 3):
        for seed in range(5):
            sel = np.asarray(
                select_unknown_classes(jax.random.key(seed), jnp.asarray(labels), top_k=top_k)
            )
            assert sel.dtype == bool and sel.shape == labels.shape
            for b in range(labels.shape[0]):
                assert sel[b].sum() == top_k
                for c in range(labels.shape[1]):
                    if sel[b, c]:
                        assert labels[b, c] == 0


def test_select_unknown_classes_rows_short_of_unknowns_fall_back_to_lowest_known():
    labels = np.array(
        [
            [1, -1, 1, -1, 1],  # no unknown
            [1, -1, 0, 1, -1],  # one unknown (c2)
            [-1, 0, 1, 0, 1],  # two unknowns (c1, c3)
            [0, 0, 0, 0, 0],  # all unknown
        ],
        np.int8,
    )
    for seed in range(4):
        key = jax.random.key(seed)
        sel1 = np.asarray(select_unknown_classes(key, jnp.asarray(labels), top_k=1))
        assert sel1[0].tolist() == [True, False, False, False, False]  # no unknown: class 0
        assert sel1[1].tolist() == [False, False, True, False, False]  # the only unknown
        assert sel1[2].sum() == 1 and (sel1[2, 1] or sel1[2, 3])
        sel2 = np.asarray(select_unknown_classes(key, jnp.asarray(labels), top_k=2))
        assert sel2[0].tolist() == [True, True, False, False, False]  # classes 0..k-1
        assert sel2[1].tolist() == [True, False, True, False, False]  # c2 + lowest known c0
        assert sel2[2].tolist() == [False, True, False, True, False]  # exactly the two unknowns
        sel3 = np.asarray(select_unknown_classes(key, jnp.asarray(labels), top_k=3))
        assert sel3[0].tolist() == [True, True, True, False, False]
        assert sel3[1].tolist() == [True, True, True, False, False]  # c2 + known c0, c1
        assert sel3[2].tolist() == [True, True, False, True, False]  # c1, c3 + known c0
        for sel, k in ((sel1, 1), (sel2, 2), (sel3, 3)):
            assert sel[3].sum() == k


def test_select_unknown_classes_rejects_bad_top_k_and_defaults_to_one():
    labels = jnp.zeros((2, 3), jnp.int8)
    for top_k in (0, 4):
        with pytest.raises(ValueError, match=rf"^top_k={top_k} must be between 1 and the number"):
            select_unknown_classes(jax.random.key(0), labels, top_k=top_k)
    np.testing.assert_array_equal(select_unknown_classes(jax.random.key(0), labels).sum(1), [1, 1])


@pytest.mark.parametrize("top_k", [1, 2])
def test_select_unknown_classes_uniform_and_independent_per_image(top_k):
    labels = np.array(
        [
            [1, 0, 0, -1, 0, 0],  # four unknowns: c1, c2, c4, c5
            [0, 0, 0, 0, 0, 0],  # six unknowns
            [1, 0, 0, -1, 0, 0],  # same as row 0: must be drawn independently of it
        ],
        np.int8,
    )
    draws = 2000
    keys = jax.random.split(jax.random.key(31), draws)
    sel = jax.jit(jax.vmap(lambda k: select_unknown_classes(k, jnp.asarray(labels), top_k=top_k)))(
        keys
    )
    sel = np.asarray(sel)  # (draws, B, C)
    freq = sel.mean(0)
    for c in (1, 2, 4, 5):
        assert abs(freq[0, c] - top_k / 4) < 0.05, freq[0]
        assert abs(freq[2, c] - top_k / 4) < 0.05, freq[2]
    assert freq[0, 0] == 0 and freq[0, 3] == 0
    for c in range(6):
        assert abs(freq[1, c] - top_k / 6) < 0.05, freq[1]
    # Rows 0 and 2 have the same labels; independent draws agree on the set with probability
    # 1 / C(4, top_k) (1/4 for top_k = 1, 1/6 for top_k = 2), a shared draw would always agree.
    same = np.mean(np.all(sel[:, 0] == sel[:, 2], axis=1))
    assert abs(same - {1: 1 / 4, 2: 1 / 6}[top_k]) < 0.05, same


# ---------------------------------------------------------------------------------------------------
# Prototype-perspective blending (eq. 10-13, notes §8.3, §10.3)


@pytest.mark.parametrize("beta_kind", ["scalar", "per_class"])
@pytest.mark.parametrize("trailing", [(3,), (2, 2, 3)], ids=["vectors", "maps"])
def test_prototype_blend_matches_eq_10_to_13(beta_kind, trailing):
    rng = np.random.default_rng(40)
    labels = LABELS_4
    features = rng.normal(size=(4, 5) + trailing).astype(np.float32)
    prototypes = rng.normal(size=(4, 5) + trailing).astype(np.float32)
    selected = np.zeros((4, 5), bool)
    selected[0, 0] = selected[0, 4] = True  # unknowns
    selected[1, 3] = True  # unknown
    selected[2, 1] = True  # a known positive (fallback selection): target overwritten
    selected[3, 2] = True  # a known negative: target overwritten
    beta = np.float32(0.6) if beta_kind == "scalar" else rng.uniform(0.1, 0.9, 5).astype(np.float32)
    out, targets = prototype_blend(
        jnp.asarray(features),
        jnp.asarray(labels),
        jnp.asarray(beta),
        jnp.asarray(prototypes),
        jnp.asarray(selected),
    )
    out, targets = np.asarray(out), np.asarray(targets)
    ref_out, ref_targets = _prototype_blend_ref(features, labels, beta, prototypes, selected)
    assert out.shape == features.shape and out.dtype == np.float32
    assert targets.dtype == np.float32
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targets, ref_targets, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(out[~selected], features[~selected])
    np.testing.assert_array_equal(targets[~selected], labels[~selected].astype(np.float32))
    beta_c = np.broadcast_to(beta, (5,))
    assert targets[2, 1] == np.float32(1 - beta_c[1]) and targets[3, 2] == np.float32(1 - beta_c[2])


def test_prototype_blend_broadcast_class_prototypes():
    """A (C, D) prototype table (SARB: one centre per class) broadcasts over the batch."""
    rng = np.random.default_rng(41)
    features = rng.normal(size=(4, 5, 3)).astype(np.float32)
    table = rng.normal(size=(5, 3)).astype(np.float32)
    selected = np.eye(4, 5, dtype=bool)
    out, _ = prototype_blend(
        jnp.asarray(features),
        jnp.asarray(LABELS_4),
        jnp.float32(0.5),
        jnp.asarray(table),
        jnp.asarray(selected),
    )
    ref, _ = _prototype_blend_ref(
        features, LABELS_4, 0.5, np.broadcast_to(table, features.shape), selected
    )
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)


def test_prototype_blend_and_mixup_keep_bfloat16_features():
    """Under mixed precision the blended features keep the features' dtype (bfloat16) and the
    targets are float32, whatever the dtype of beta or lam; values as in float32 to bfloat16's
    precision."""
    rng = np.random.default_rng(43)
    features = rng.normal(size=(4, 5, 3)).astype(np.float32)
    table = rng.normal(size=(5, 3)).astype(np.float32)
    selected = np.eye(4, 5, dtype=bool)
    out, targets = prototype_blend(
        jnp.asarray(features, jnp.bfloat16), jnp.asarray(LABELS_4), jnp.bfloat16(0.25),
        jnp.asarray(table, jnp.bfloat16), jnp.asarray(selected),
    )  # fmt: skip
    assert out.dtype == jnp.bfloat16 and targets.dtype == jnp.float32
    ref, ref_t = _prototype_blend_ref(
        features, LABELS_4, 0.25, np.broadcast_to(table, features.shape), selected
    )
    np.testing.assert_allclose(np.asarray(out, np.float32), ref, rtol=0.02, atol=0.02)
    np.testing.assert_array_equal(targets, ref_t)
    labels = np.array([[1, 0, -1], [0, 1, 1], [-1, 1, 0]], np.int8)
    mixed, targets = mixup(jnp.asarray(features[:3], jnp.bfloat16), jnp.asarray(labels),
                           jnp.bfloat16(0.25))  # fmt: skip
    assert mixed.dtype == jnp.bfloat16 and targets.dtype == jnp.float32
    want = 0.25 * features[:3] + 0.75 * features[:3][::-1]
    np.testing.assert_allclose(np.asarray(mixed, np.float32), want, rtol=0.02, atol=0.02)
    np.testing.assert_array_equal(targets, [[0.25, 0.0, 0.0], [0.0, 1.0, 1.0], [0.75, 0.0, 0.0]])


# ---------------------------------------------------------------------------------------------------
# Gradients w.r.t. alpha and beta (through features and targets; notes §8.2 last bullet)

# B = 4, C = 3. Blended (instance): (0, 0), (2, 0), (1, 1); class 2 never blended.
GRAD_LABELS = np.array([[0, 1, 0], [1, 0, -1], [0, 1, 1], [1, 0, 0]], np.int8)
GRAD_SELECTED = np.array(
    [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0]], bool
)  # class 2 never selected; (2, 1) is a known positive


def _grad_case():
    rng = np.random.default_rng(50)
    features = rng.normal(size=(4, 3, 5)).astype(np.float32)
    prototypes = rng.normal(size=(4, 3, 5)).astype(np.float32)
    weight = (0.5 * rng.normal(size=(3, 5))).astype(np.float32)
    bias = (0.1 * rng.normal(size=3)).astype(np.float32)
    return features, prototypes, weight, bias


def _bce_ref(logits, targets):
    """Notes §2.1 with loops (soft targets, margin 0)."""
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for c in range(logits.shape[1]):
            y, x = float(targets[b, c]), float(logits[b, c])
            if y > 0:
                total += -(y * np.log(_sigmoid(x)) + (1 - y) * np.log(_sigmoid(-x)))
            elif y < 0:
                total += -((-y) * np.log(_sigmoid(-x)) + (1 + y) * np.log(_sigmoid(x)))
            else:
                continue
            count += 1
    return total / max(count, 1)


def _central_difference(fn, x, eps=1e-3):
    x = np.asarray(x, np.float32)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (float(fn(jnp.asarray(up))) - float(fn(jnp.asarray(down)))) / (2 * eps)
    return grad


def _instance_loss_fn():
    features, _, weight, bias = _grad_case()

    def loss(alpha):
        blended, targets = instance_blend(jnp.asarray(features), jnp.asarray(GRAD_LABELS), alpha)
        logits = jnp.einsum("bcd,cd->bc", blended, weight) + bias
        return partial_bce(logits, targets)[0]

    return jax.jit(loss)


def _prototype_loss_fn():
    features, prototypes, weight, bias = _grad_case()

    def loss(beta):
        blended, targets = prototype_blend(
            jnp.asarray(features),
            jnp.asarray(GRAD_LABELS),
            beta,
            jnp.asarray(prototypes),
            jnp.asarray(GRAD_SELECTED),
        )
        logits = jnp.einsum("bcd,cd->bc", blended, weight) + bias
        return partial_bce(logits, targets)[0]

    return jax.jit(loss)


def test_instance_blend_loss_value_matches_loops():
    features, _, weight, bias = _grad_case()
    alpha = np.array([0.3, 0.6, 0.45], np.float32)
    blended, targets = _instance_blend_ref(features, GRAD_LABELS, alpha)
    logits = np.einsum("bcd,cd->bc", blended, weight.astype(np.float64)) + bias
    np.testing.assert_allclose(
        float(_instance_loss_fn()(jnp.asarray(alpha))), _bce_ref(logits, targets), rtol=1e-5
    )


def test_alpha_gradient_matches_finite_differences():
    loss = _instance_loss_fn()
    alpha = np.array([0.3, 0.6, 0.45], np.float32)
    grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(alpha)))
    fd = _central_difference(loss, alpha)
    assert np.all(np.abs(grad[:2]) > 1e-3), grad  # classes 0 and 1 have blended entries
    assert grad[2] == 0.0  # class 2 has none: exactly zero
    np.testing.assert_allclose(grad, fd, rtol=1e-2, atol=2e-4)
    # Scalar alpha: the gradient is the sum of the per-class ones.
    g_scalar = float(jax.jit(jax.grad(loss))(jnp.float32(0.45)))
    fd_scalar = float(_central_difference(loss, np.float32(0.45)))
    assert abs(g_scalar) > 1e-3
    np.testing.assert_allclose(g_scalar, fd_scalar, rtol=1e-2, atol=2e-4)


def test_beta_gradient_matches_finite_differences():
    loss = _prototype_loss_fn()
    beta = np.array([0.4, 0.7, 0.55], np.float32)
    grad = np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(beta)))
    fd = _central_difference(loss, beta)
    assert np.all(np.abs(grad[:2]) > 1e-3), grad  # classes 0 and 1 are selected somewhere
    assert grad[2] == 0.0  # class 2 never selected: exactly zero
    np.testing.assert_allclose(grad, fd, rtol=1e-2, atol=2e-4)
    g_scalar = float(jax.jit(jax.grad(loss))(jnp.float32(0.55)))
    fd_scalar = float(_central_difference(loss, np.float32(0.55)))
    assert abs(g_scalar) > 1e-3
    np.testing.assert_allclose(g_scalar, fd_scalar, rtol=1e-2, atol=2e-4)


# ---------------------------------------------------------------------------------------------------
# Location quadrants (notes §10.3)

# (row, col) of the peak -> quadrant, read off by hand: split at 3 for H = W = 7, at 1 for 3.
PEAKS_7 = [
    ((0, 0), 0),
    ((2, 2), 0),
    ((2, 3), 1),
    ((0, 6), 1),
    ((3, 2), 2),
    ((6, 0), 2),
    ((3, 3), 3),
    ((6, 6), 3),
    ((5, 1), 2),
    ((1, 4), 1),
]
PEAKS_3 = [
    ((0, 0), 0),
    ((0, 1), 1),
    ((0, 2), 1),
    ((1, 0), 2),
    ((2, 0), 2),
    ((1, 1), 3),
    ((2, 2), 3),
]


@pytest.mark.parametrize("size, peaks", [(7, PEAKS_7), (3, PEAKS_3)], ids=["7x7", "3x3"])
def test_attention_quadrants_hand_peaks(size, peaks):
    rng = np.random.default_rng(60)
    num_classes = 2
    batch = len(peaks)
    attention = rng.uniform(0.0, 0.4, size=(batch, size, size, num_classes)).astype(np.float32)
    feature_sum = rng.uniform(0.9, 1.1, size=(batch, size, size)).astype(np.float32)
    expected = np.zeros((batch, num_classes), np.int64)
    for b, ((row, col), q) in enumerate(peaks):
        attention[b, row, col, 0] = 1.0  # class 0: the listed peak
        other = peaks[(b + 3) % batch]  # class 1: another listed peak in the same image
        attention[b, other[0][0], other[0][1], 1] = 1.0
        expected[b] = (q, other[1])
    quadrants = np.asarray(attention_quadrants(jnp.asarray(attention), jnp.asarray(feature_sum)))
    assert quadrants.dtype == np.int32 and quadrants.shape == (batch, num_classes)
    np.testing.assert_array_equal(quadrants, expected)
    np.testing.assert_array_equal(quadrants, _quadrants_ref(attention, feature_sum))


def test_attention_quadrants_channel_sum_moves_the_peak():
    attention = np.full((2, 7, 7, 1), 0.1, np.float32)
    attention[:, 1, 1, 0] = 1.0  # attention alone peaks top-left
    attention[:, 5, 5, 0] = 0.8  # second peak bottom-right
    feature_sum = np.ones((2, 7, 7), np.float32)
    feature_sum[1, 5, 5] = 2.0  # image 1: R(5, 5) = 1.6 > R(1, 1) = 1.0
    quadrants = np.asarray(attention_quadrants(jnp.asarray(attention), jnp.asarray(feature_sum)))
    assert quadrants.tolist() == [[0], [3]]
    # Negative channel sums: R = a * s; the largest R is where a is smallest.
    feature_sum_neg = -np.ones((2, 7, 7), np.float32)
    attention_neg = np.full((2, 7, 7, 1), 0.5, np.float32)
    attention_neg[0, 0, 6, 0] = 0.01  # top-right has the least attention -> largest R = -0.01
    attention_neg[1, 6, 0, 0] = 0.01  # bottom-left
    quadrants = np.asarray(
        attention_quadrants(jnp.asarray(attention_neg), jnp.asarray(feature_sum_neg))
    )
    assert quadrants.tolist() == [[1], [2]]


def test_attention_quadrants_ties_take_first_row_and_column():
    attention = np.zeros((2, 7, 7, 1), np.float32)
    attention[0] = 0.5  # constant map: row* = col* = 0
    attention[1, 0, 5, 0] = attention[1, 4, 1, 0] = 1.0  # row* = 0 (first), col* = 1 (first)
    feature_sum = np.ones((2, 7, 7), np.float32)
    quadrants = np.asarray(attention_quadrants(jnp.asarray(attention), jnp.asarray(feature_sum)))
    assert quadrants.tolist() == [[0], [0]]
    np.testing.assert_array_equal(quadrants, _quadrants_ref(attention, feature_sum))


def test_attention_quadrants_random_non_square_against_loops():
    rng = np.random.default_rng(61)
    attention = rng.uniform(size=(3, 5, 4, 3)).astype(np.float32)
    feature_sum = rng.normal(size=(3, 5, 4)).astype(np.float32)
    quadrants = np.asarray(attention_quadrants(jnp.asarray(attention), jnp.asarray(feature_sum)))
    np.testing.assert_array_equal(quadrants, _quadrants_ref(attention, feature_sum))


def test_other_quadrants_never_same_and_uniform():
    n = 3000
    quadrants = np.repeat(np.arange(4, dtype=np.int32)[:, None], n, axis=1)  # (4, n): row q is q
    out = np.asarray(other_quadrants(jax.random.key(70), jnp.asarray(quadrants)))
    assert out.dtype == np.int32 and out.shape == quadrants.shape
    assert np.all((out >= 0) & (out < 4))
    assert not np.any(out == quadrants)
    # Exactly the notes' q' = (q - r) mod 4 of the key's r ~ U{1, 2, 3} (not (q + r): the same
    # distribution, a different quadrant per draw).
    r = np.asarray(jax.random.randint(jax.random.key(70), quadrants.shape, 1, 4))
    np.testing.assert_array_equal(out, (quadrants - r) % 4)
    for q in range(4):
        for other in range(4):
            if other != q:
                freq = np.mean(out[q] == other)
                assert abs(freq - 1 / 3) < 0.05, (q, other, freq)


# ---------------------------------------------------------------------------------------------------
# Location-sensitive prototypes (notes §10.4)


def _location_batches():
    """Three batches, B = 3, C = 4, D = 2, hand-made quadrants and positives.

    Class 0: positive everywhere, always quadrant 0 -> bucket (0, 0) overflows within batch 0.
    Class 1: quadrants 1 and 2 only -> buckets (1, 0) and (1, 3) empty (class-mean prototypes).
    Class 2: never positive -> zero prototypes.
    Class 3: mixed; includes unknown/negative entries whose quadrants must be ignored.
    """
    rng = np.random.default_rng(80)
    quadrants = [
        np.array([[0, 1, 3, 2], [0, 2, 0, 2], [0, 1, 1, 2]], np.int32),
        np.array([[0, 1, 2, 3], [0, 1, 3, 2], [0, 2, 0, 2]], np.int32),
        np.array([[0, 2, 1, 2], [0, 1, 2, 0], [0, 1, 3, 2]], np.int32),
    ]
    positive = [
        np.array([[1, 1, 0, 1], [1, 1, 0, 1], [1, 0, 0, 1]], bool),
        np.array([[1, 1, 0, 0], [1, 1, 0, 1], [1, 1, 0, 1]], bool),
        np.array([[1, 0, 0, 1], [1, 1, 0, 0], [1, 1, 0, 1]], bool),
    ]
    features = [(rng.normal(size=(3, 4, 2)) + 1.0).astype(np.float32) for _ in range(3)]
    return list(zip(features, quadrants, positive))


@pytest.mark.parametrize("cap", [1, 2, 100])
def test_location_buckets_and_prototypes_against_loops(cap):
    batches = _location_batches()
    sums = jnp.zeros((4, 4, 2), jnp.float32)
    counts = jnp.zeros((4, 4), jnp.int32)
    for features, quadrants, positive in batches:
        sums, counts = accumulate_location_sums(
            sums,
            counts,
            jnp.asarray(features),
            jnp.asarray(quadrants),
            jnp.asarray(positive),
            cap=cap,
        )
    protos = np.asarray(location_prototypes(sums, counts))
    buckets = _location_buckets_ref(batches, 4, cap)
    ref_sums, ref_counts, ref_protos = _location_prototypes_ref(buckets, 2)
    assert counts.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(counts), ref_counts)
    np.testing.assert_allclose(np.asarray(sums), ref_sums, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(protos, ref_protos, rtol=1e-5, atol=1e-6)
    # The case covers what it claims to: a capped bucket, empty buckets of a seen class, a class
    # without positives.
    assert ref_counts[0, 0] == min(cap, 9)
    assert ref_counts[1, 0] == 0 and ref_counts[1, 3] == 0 and ref_counts[1].sum() > 0
    assert ref_counts[2].sum() == 0 and np.all(protos[2] == 0)
    if cap == 2:
        # Hand check of bucket (0, 0): the first two class-0 vectors of batch 0, shrunk by 1/3.
        first_two = batches[0][0][0, 0].astype(np.float64) + batches[0][0][1, 0]
        np.testing.assert_allclose(protos[0, 0], first_two / 3, rtol=1e-5)
        # Empty bucket (1, 0): mean of all kept class-1 vectors.
        kept = [v for q in range(4) for v in buckets[1][q]]
        np.testing.assert_allclose(protos[1, 0], np.mean(kept, axis=0), rtol=1e-5)
        np.testing.assert_allclose(protos[1, 3], protos[1, 0], rtol=1e-6)


def test_location_buckets_cap_across_batches_keeps_first_met():
    """Bucket already at cap - 1 from a previous batch accepts only the first entry of the next."""
    features = np.arange(1, 4, dtype=np.float32).reshape(3, 1, 1) * np.ones((3, 1, 2), np.float32)
    quadrants = np.full((3, 1), 2, np.int32)
    positive = np.ones((3, 1), bool)
    sums = jnp.zeros((1, 4, 2), jnp.float32).at[0, 2].set(10.0)
    counts = jnp.zeros((1, 4), jnp.int32).at[0, 2].set(2)
    sums, counts = accumulate_location_sums(
        sums, counts, jnp.asarray(features), jnp.asarray(quadrants), jnp.asarray(positive), cap=3
    )
    assert np.asarray(counts).tolist() == [[0, 0, 3, 0]]
    np.testing.assert_array_equal(np.asarray(sums)[0, 2], [11.0, 11.0])  # 10 + first vector (1)
    np.testing.assert_array_equal(np.asarray(sums)[0, [0, 1, 3]], 0.0)


def test_location_sums_accumulate_in_float32_from_bfloat16_features():
    """Under mixed precision the buckets still sum in float32 (no bfloat16 running sum)."""
    features = jnp.asarray(np.linspace(1.0, 2.0, 64).reshape(64, 1, 1), jnp.bfloat16)
    sums, counts = accumulate_location_sums(
        jnp.zeros((1, 4, 1), jnp.float32), jnp.zeros((1, 4), jnp.int32), features,
        jnp.zeros((64, 1), jnp.int32), jnp.ones((64, 1), bool), cap=100,
    )  # fmt: skip
    assert sums.dtype == jnp.float32 and int(counts[0, 0]) == 64
    assert float(sums[0, 0, 0]) == float(np.sum(np.asarray(features, np.float32)))


# ---------------------------------------------------------------------------------------------------
# Mixup baseline (DSRB Table 2)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_mixup_with_reversed_batch(lam):
    rng = np.random.default_rng(90)
    x = rng.normal(size=(3, 2, 2, 3)).astype(np.float32)
    labels = np.array([[1, 0, -1], [0, 1, 1], [-1, -1, 0]], np.int8)
    mixed, targets = mixup(jnp.asarray(x), jnp.asarray(labels), jnp.float32(lam))
    mixed, targets = np.asarray(mixed), np.asarray(targets)
    ref_x = np.zeros(x.shape)
    ref_t = np.zeros(labels.shape)
    batch = x.shape[0]
    for b in range(batch):
        ref_x[b] = lam * x[b].astype(np.float64) + (1 - lam) * x[batch - 1 - b]
        for c in range(labels.shape[1]):
            y, y_partner = labels[b, c], labels[batch - 1 - b, c]
            p = lam * (y == 1) + (1 - lam) * (y_partner == 1)
            if y == 0 or y_partner == 0:
                ref_t[b, c] = 0.0  # unknown in either image: ignored
            else:
                ref_t[b, c] = p if p > 0 else -1.0  # soft positive, or a known negative
    assert mixed.dtype == np.float32 and targets.dtype == np.float32
    np.testing.assert_allclose(mixed, ref_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets, ref_t, rtol=1e-6, atol=1e-7)
    # Odd batch: the middle image mixes with itself (equal up to rounding of lam x + (1 - lam) x).
    np.testing.assert_allclose(mixed[1], x[1], rtol=1e-6, atol=1e-7)


def test_mixup_soft_targets_are_the_probability_the_partial_bce_trains_towards():
    """For an entry known in both images the partial BCE's optimum is sigmoid(logit) = the mixed
    probability (known positive with known negative: lam), and a both-negative entry stays a hard
    negative; an entry unknown in either image is ignored."""
    from mlrpl_jax.losses import partial_bce

    labels = jnp.asarray(np.array([[1, -1, 0, 1], [-1, -1, 1, 1]], np.int8))
    lam = 0.3
    _, y = mixup(jnp.zeros((2, 1)), labels, jnp.float32(lam))
    y = np.asarray(y)
    np.testing.assert_allclose(y[0], [lam, -1.0, 0.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(y[1], [1 - lam, -1.0, 0.0, 1.0], rtol=1e-6)
    p = 0.3  # zero gradient at logit(p) for the target p
    grad = jax.grad(lambda x: partial_bce(x, jnp.asarray([[p]]))[0])(
        jnp.asarray([[np.log(p / (1 - p))]], jnp.float32)
    )
    assert abs(float(grad[0, 0])) < 1e-6
