"""The baselines' losses against the formulas written out by hand (numpy) and, where it implements
the same loss, against mlcpl (an independent PyTorch implementation; values and gradients)."""

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import torch_asl

from mlrpl_jax import losses

B, C = 6, 7


CASES = ("random", "no_known_label", "all_positive", "no_positive_image")


@pytest.fixture(params=CASES)
def case(request):
    """Random logits with partial labels: mixed (one image without known labels), none known in
    the whole batch, every entry a known positive, and an image whose known labels are all
    negative (and no image with a known positive but one)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 2.0, (B, C)).astype(np.float32)
    labels = rng.choice([-1, 0, 1], size=(B, C), p=[0.3, 0.5, 0.2]).astype(np.int8)
    labels[0] = 0  # an image without known labels
    labels[1, 0] = 1
    if request.param == "no_known_label":
        labels[:] = 0
    elif request.param == "all_positive":
        labels[:] = 1
    elif request.param == "no_positive_image":
        labels[labels == 1] = -1
        labels[2, 3] = 1
    return logits, labels


def sig(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def nlog(a):
    return -np.log(a + 1e-5)


# --- hand-written formulas ------------------------------------------------------------------------


def test_asymmetric_loss_matches_the_formula(case):
    x, y = case
    p = sig(x)
    for unknown in ("ignore", "negative"):
        pos = y == 1
        neg = (y == -1) if unknown == "ignore" else (y != 1)
        pm = np.maximum(p - 0.05, 0)
        expected = -np.sum(
            pos * (1 - p) ** 1 * np.log(np.maximum(p, 1e-8))
            + neg * pm**4 * np.log(np.maximum(1 - pm, 1e-8))
        )
        got, _ = losses.asymmetric_loss(x, y, gamma_pos=1.0, gamma_neg=4.0, unknown=unknown)
        np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown must be"):
        losses.asymmetric_loss(x, y, unknown="drop")


def test_focal_loss_matches_the_formula(case):
    x, y = case
    p = sig(x)
    pos = y == 1
    expected = -np.sum(pos * (1 - p) ** 2 * np.log(p) + (~pos) * p**2 * np.log(1 - p))
    np.testing.assert_allclose(float(losses.focal_loss(x, y)[0]), expected, rtol=1e-5)


def test_dualcoop_and_taidpt_asl_match_the_formulas(case):
    x, y = case
    neg_logits = np.roll(x, 1, axis=1)
    # DualCoOp: softmax over (neg, pos); unknown removed; eps 1e-6; sum.
    p = np.exp(x) / (np.exp(x) + np.exp(neg_logits))
    pm = np.maximum(p - 0.05, 0)
    expected = -np.sum(
        (y == 1) * (1 - p) * np.log(np.maximum(p, 1e-6))
        + (y == -1) * pm**2 * np.log(np.maximum(1 - pm, 1e-6))
    )
    got, _ = losses.softmax_pair_asl(neg_logits, x, y)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    # TaI-DPT: sigmoid(pos - neg), |target| > 0.9, -sum / B; soft targets between are ignored.
    t = y.astype(np.float32)
    t[2, :] = 0.5
    p = sig(x - neg_logits)
    pm = np.maximum(p - 0.05, 0)
    expected = (
        -np.sum(
            (t > 0.9) * (1 - p) * np.log(np.maximum(p, 1e-8))
            + (t < -0.9) * pm**2 * np.log(np.maximum(1 - pm, 1e-8))
        )
        / B
    )
    got, _ = losses.sigmoid_difference_asl(neg_logits, x, t)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)


def test_cole_losses_match_the_formulas(case):
    x, y = case
    p = sig(x)
    pos = (y == 1).astype(np.float64)
    neg = (y == -1).astype(np.float64)
    an = np.mean(pos * nlog(p) + (1 - pos) * nlog(1 - p))
    wan = np.mean(pos * nlog(p) + (1 - pos) * nlog(1 - p) / (C - 1))
    ls_pos = 0.9 * nlog(p) + 0.1 * nlog(1 - p)
    ls_neg = 0.9 * nlog(1 - p) + 0.1 * nlog(p)
    an_ls = np.mean(pos * ls_pos + (1 - pos) * ls_neg)
    bce_ls = np.sum(pos * ls_pos + neg * ls_neg) / (B * C)
    reg = (np.sum(p) / B - 2.9) ** 2 / C**2
    epr = np.mean(pos * nlog(p)) + reg
    for name, expected, kwargs in (
        ("an", an, {}), ("wan", wan, {}), ("an_ls", an_ls, {}), ("bce_ls", bce_ls, {}),
        ("epr", epr, {"expected_positives": 2.9}),
    ):  # fmt: skip
        got, metrics = getattr(losses, name)(x, y, **kwargs)
        np.testing.assert_allclose(float(got), expected, rtol=1e-5, err_msg=name)
        if name == "epr":  # its regulariser R(p), logged
            assert set(metrics) == {"epr_regularizer"}
            np.testing.assert_allclose(float(metrics["epr_regularizer"]), reg, rtol=1e-5)


def test_role_value_and_where_its_gradients_stop(case):
    x, y = case
    rng = np.random.default_rng(1)
    phi = rng.normal(0.0, 1.0, (B, C)).astype(np.float32)
    p, q = sig(x), sig(phi)
    pos = (y == 1).astype(np.float64)

    def bce(a, t):
        return t * nlog(a) + (1 - t) * nlog(1 - a)

    def reg(a):
        return (np.sum(a) / B - 2.9) ** 2 / C**2

    expected = (
        0.5 * np.mean(pos * (nlog(p) + nlog(q)))
        + 0.5 * np.mean(bce(p, q) + bce(q, p))
        + 0.5 * (reg(p) + reg(q))
    )
    got, metrics = losses.role(x, y, phi, expected_positives=2.9)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    assert set(metrics) == {"epr_regularizer", "estimate_mean"}
    np.testing.assert_allclose(float(metrics["epr_regularizer"]), 0.5 * (reg(p) + reg(q)),
                               rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(float(metrics["estimate_mean"]), np.mean(q), rtol=1e-6)
    # The classifier's gradient sees the estimates as constants (and vice versa): d/dx of the
    # cross term is that of BCE(p; q) alone.
    grad_x = jax.grad(lambda a: losses.role(a, y, phi, expected_positives=2.9)[0])(x)

    def by_hand(a):
        pa = jax.nn.sigmoid(a)
        qa = jax.nn.sigmoid(jnp.asarray(phi))
        main = 0.5 * jnp.mean(pos * -jnp.log(pa + 1e-5))
        cross = 0.5 * jnp.mean(qa * -jnp.log(pa + 1e-5) + (1 - qa) * -jnp.log(1 - pa + 1e-5))
        return main + cross + 0.5 * (jnp.sum(pa) / B - 2.9) ** 2 / C**2

    np.testing.assert_allclose(grad_x, jax.grad(by_hand)(x), rtol=1e-5, atol=1e-8)


def test_normalized_partial_bce_matches_durand(case):
    x, y = case
    p = sig(x)
    per_entry = -((y == 1) * np.log(p) + (y == -1) * np.log(1 - p))
    known = np.sum(y != 0, axis=1)
    g = -4.45 * known / C + 5.45
    expected = np.mean(np.where(known > 0, g / C * per_entry.sum(1), 0.0))
    np.testing.assert_allclose(float(losses.normalized_partial_bce(x, y)[0]), expected, rtol=1e-5)
    # g(1) = 1: with every label known it is the ordinary BCE, mean over all entries.
    full = np.where(y == 0, 1, y)
    bce = np.mean(-((full == 1) * np.log(p) + (full == -1) * np.log(1 - p)))
    np.testing.assert_allclose(float(losses.normalized_partial_bce(x, full)[0]), bce, rtol=1e-5)
    # alpha 1, beta 0, gamma -1: the per-image mean over known labels (HST paper Eq. 16).
    per_image = np.where(known > 0, per_entry.sum(1) / np.maximum(known, 1), 0.0)
    got, _ = losses.normalized_partial_bce(x, y, alpha=1.0, beta=0.0, gamma=-1.0)
    np.testing.assert_allclose(float(got), per_image.mean(), rtol=1e-5)


def large_loss_by_hand(x, y, k, correct):
    """LargeLossMatters' loss, written out: flattened sort, k-th largest, >= threshold."""
    p = sig(x)
    yt = (y == 1).astype(np.float64)
    base = -(yt * np.log(p) + (1 - yt) * np.log(1 - p))
    u = np.where(y == 0, base, 0.0)
    if k == 0:
        return base.mean(), np.zeros_like(u, bool)
    t = np.sort(u.ravel())[::-1][k - 1]
    hit = u >= t
    flipped = -((1 - yt) * np.log(p) + yt * np.log(1 - p))
    out = np.where(hit, flipped if correct else 0.0, base)
    return out.mean(), hit & (y == 0)


@pytest.mark.parametrize("correct", [False, True])
def test_large_loss_matches_the_reference_rule(case, correct):
    x, y = case
    for k in (0, 1, 5, 30, B * C):  # 30 exceeds the non-zero entries: t = 0 edge case
        expected, changed = large_loss_by_hand(x, y, k, correct)
        got, _, masks = losses.large_loss(x, y, k, correct=correct)
        np.testing.assert_allclose(float(got), expected, rtol=1e-5, err_msg=str(k))
        np.testing.assert_array_equal(np.asarray(masks["hit"]), changed)
        strictly = np.asarray(masks["above_threshold"])
        assert not (strictly & ~changed).any() and strictly.sum() <= max(k, 0)
    # Jitted with a traced k.
    fn = jax.jit(lambda k: losses.large_loss(x, y, k, correct=correct)[0])
    np.testing.assert_allclose(float(fn(5)), large_loss_by_hand(x, y, 5, correct)[0], rtol=1e-5)


def test_large_loss_budget_follows_clean_rate():
    assert losses.large_loss_budget(1000, 0, 0.002) == 0
    assert losses.large_loss_budget(1000, 1, 0.002) == 2
    assert losses.large_loss_budget(16 * 80, 3, 0.002) == math.ceil(16 * 80 * 0.006)
    assert losses.large_loss_budget(100, 300, 0.005) == 100  # clean rate floored at 0
    traced = jax.jit(lambda e: losses.large_loss_budget(1000, e, 0.002))  # as training calls it
    assert [int(traced(jnp.int32(e))) for e in range(3)] == [0, 2, 4]
    assert traced(jnp.int32(1)).dtype == jnp.int32  # a count (top-k size), not a float
    assert losses.large_loss_budget(1000, 2, 0.002).dtype == jnp.int32


def test_splc_and_hill_match_the_formulas(case):
    x, y = case
    pos = (y == 1).astype(np.float64)
    for active in (False, True):
        xs = np.where(pos > 0, x - 1.0, x)
        ps = sig(xs)
        yc = np.where(active & (ps > 0.6) & (pos == 0), 1.0, pos)
        expected = -np.sum(yc * (1 - ps) ** 2 * np.log(ps) + (1 - yc) * ps**2 * np.log(1 - ps))
        got, metrics, turned = losses.splc(x, y, active=active)
        np.testing.assert_allclose(float(got), expected, rtol=1e-5)
        assert float(metrics["splc_corrected"]) == np.sum(yc - pos)
        np.testing.assert_array_equal(np.asarray(turned), yc > pos)
    pm, p = sig(x - 1.0), sig(x)
    expected = np.sum(pos * -((1 - pm) ** 2) * np.log(pm) + (1 - pos) * (1.5 - p) * p**2)
    np.testing.assert_allclose(float(losses.hill(x, y)[0]), expected, rtol=1e-5)


@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_splc_and_hill_match_torch_at_saturated_logits(gamma):
    """SPLC and Hill written in torch as their papers' code (weights (1 - p)^gamma and p^gamma,
    not detached) on logits of +-40, where sigmoid saturates in float32: same loss and gradient
    at gamma 2 and at gamma 0, where torch's pow backward gives no gradient (lax.pow's was NaN)."""
    torch = pytest.importorskip("torch")
    x = np.array([[40.0, -40.0, 40.0, 0.3], [-40.0, 40.0, 1.2, -0.7]], np.float32)
    y = np.array([[1, -1, 0, 1], [1, 0, -1, 0]], np.int8)
    pos = torch.tensor((y == 1).astype(np.float32))

    def splc(a):
        shifted = torch.where(pos > 0, a - 1.0, a)
        p = torch.sigmoid(shifted)
        corrected = torch.where((p > 0.6) & (pos == 0), torch.ones_like(p), pos)
        lp = corrected * (1 - p) ** gamma * torch.nn.functional.logsigmoid(shifted)
        ln = (1 - corrected) * p**gamma * torch.nn.functional.logsigmoid(-shifted)
        return -(lp + ln).sum()

    def hill(a):
        pm, p = torch.sigmoid(a - 1.0), torch.sigmoid(a)
        lp = -((1 - pm) ** gamma) * torch.nn.functional.logsigmoid(a - 1.0)
        return (pos * lp + (1 - pos) * (1.5 - p) * p**2).sum()

    ours = {
        "splc": lambda a: losses.splc(a, jnp.asarray(y), active=True, gamma=gamma)[0],
        "hill": lambda a: losses.hill(a, jnp.asarray(y), gamma=gamma)[0],
    }
    for name, oracle in (("splc", splc), ("hill", hill)):
        xt = torch.tensor(x, requires_grad=True)
        want = oracle(xt)
        want.backward()
        got, grad = jax.value_and_grad(ours[name])(jnp.asarray(x))
        assert np.isfinite(np.asarray(grad)).all(), name
        np.testing.assert_allclose(float(got), want.item(), rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(np.asarray(grad), xt.grad.numpy(), rtol=1e-4, atol=1e-9,
                                   err_msg=name)  # fmt: skip


def test_focusing_weights_stop_the_gradient_only_where_the_references_do(case):
    """ASL/focal: d/dx with the weight constant; SPLC/Hill: the weight's own gradient included."""
    x, y = case
    pos = jnp.asarray(y == 1, jnp.float32)

    def focal_const_weight(a):
        p = jax.nn.sigmoid(a)
        w_pos, w_neg = jax.lax.stop_gradient((1 - p) ** 2), jax.lax.stop_gradient(p**2)
        return -jnp.sum(pos * w_pos * jnp.log(p) + (1 - pos) * w_neg * jnp.log(1 - p))

    np.testing.assert_allclose(
        jax.grad(lambda a: losses.focal_loss(a, y)[0])(x), jax.grad(focal_const_weight)(x),
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip

    def hill_full(a):
        pm, p = jax.nn.sigmoid(a - 1.0), jax.nn.sigmoid(a)
        return jnp.sum(pos * -((1 - pm) ** 2) * jnp.log(pm) + (1 - pos) * (1.5 - p) * p**2)

    np.testing.assert_allclose(
        jax.grad(lambda a: losses.hill(a, y)[0])(x), jax.grad(hill_full)(x), rtol=1e-4, atol=1e-6
    )


# --- mlcpl (independent PyTorch implementation) ---------------------------------------------------


@pytest.fixture(scope="module")
def mlcpl_losses():
    """mlcpl's focal_losses module, loaded from its file (importing the package also imports
    its dataset helpers, which pull in TensorBoard/TensorFlow next to torch)."""
    pytest.importorskip("torch")
    spec = importlib.util.find_spec("mlcpl")
    assert spec is not None, "mlcpl (test oracle) is not installed: pip install -e '.[test]'"
    path = spec.submodule_search_locations[0] + "/losses/focal_losses.py"
    module_spec = importlib.util.spec_from_file_location("mlcpl_focal_losses", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def AN(x, y):
    return losses.an(x, y)


def _torch_value_and_grad(loss_fn, x, y):
    import torch

    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    yt = torch.tensor(np.where(y == 0, np.nan, (y == 1).astype(np.float64)))
    value = loss_fn(xt, yt)
    value.backward()
    return float(value.detach()), xt.grad.numpy()


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (lambda x, y: losses.partial_bce(x, y),
         lambda m: m.PartialBCEWithLogitLoss(reduction="mean")),
        (AN, lambda m: m.PartialNegativeBCEWithLogitLoss()),
        (lambda x, y: losses.focal_loss(x, y),
         lambda m: m.PartialNegativeFocalWithLogitLoss(gamma=2, reduction="sum")),
        (lambda x, y: losses.asymmetric_loss(x, y, gamma_pos=1.0, gamma_neg=4.0),
         lambda m: m.PartialAsymmetricWithLogitLoss(
             clip=0.05, gamma_pos=1, gamma_neg=4, reduction="sum")),
        (lambda x, y: losses.asymmetric_loss(x, y, unknown="negative"),
         lambda m: m.PartialNegativeAsymmetricWithLogitLoss(
             clip=0.05, gamma_pos=0, gamma_neg=4, reduction="sum")),
    ],
    ids=["partial_bce", "an", "focal", "asl_ignore", "asl_negative"],
)  # fmt: skip
def test_values_and_gradients_match_mlcpl(case, mlcpl_losses, ours, theirs):
    x, y = case
    value, grad = _torch_value_and_grad(theirs(mlcpl_losses), x, y)
    got = float(ours(x, y)[0])
    if not np.isfinite(value):  # mlcpl's mean over known entries is 0/0 without any; ours is 0
        assert not y.any() and got == 0.0
        return
    got_grad = np.asarray(jax.grad(lambda a: ours(a, y)[0])(x))
    # Cole's `an` adds 1e-5 inside the log (mlcpl does not): 1e-4 relative for it, 1e-6 else.
    np.testing.assert_allclose(got, value, rtol=1e-4 if ours is AN else 1e-6)
    np.testing.assert_allclose(got_grad, grad, rtol=1e-3, atol=2e-5)


def test_large_loss_threshold_ties_are_all_rejected():
    """Entries whose loss equals the k-th largest are all rejected / corrected (>=, as coded)."""
    x = np.zeros((2, 4), np.float32)  # every unobserved loss equal: log 2
    x[0, 0] = 3.0
    y = np.zeros((2, 4), np.int8)
    y[0, 0] = 1
    _, _, masks = losses.large_loss(x, y, 1, correct=False)
    assert np.asarray(masks["hit"]).sum() == 7  # k = 1, but 7 entries tie at the threshold
    assert not np.asarray(masks["above_threshold"]).any()


def test_large_loss_matches_mlcpl_up_to_its_documented_differences(mlcpl_losses):
    """mlcpl's LargeLossRejection / CorrectionTemporary differ from LargeLossMatters (which
    wins): k is round(#non-zero unobserved losses x epoch delta_rel %) (not ceil(B C (1 -
    clean_rate))), and entries *strictly* above the k-th largest loss are rejected, i.e. k - 1 of
    them without ties. With that k - 1, values and gradients are ours."""
    import torch

    path = mlcpl_losses.__file__.replace("focal_losses.py", "large_loss_matters.py")
    with open(path) as f:
        source = f.read().replace("from . import PartialNegativeBCEWithLogitLoss", "")
    namespace = {"PartialNegativeBCEWithLogitLoss": mlcpl_losses.PartialNegativeBCEWithLogitLoss}
    exec(compile(source, path, "exec"), namespace)  # noqa: S102 - the oracle's own source
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 2.0, (8, 10)).astype(np.float32)
    y = rng.choice([-1, 0, 1], size=(8, 10), p=[0.1, 0.7, 0.2]).astype(np.int8)
    epoch, delta_rel = 3, 10.0  # mlcpl's delta_rel is in percent
    k_mlcpl = round(int(np.sum(y == 0)) * epoch * delta_rel / 100)
    for name, correct in (("LargeLossRejection", False), ("LargeLossCorrectionTemporary", True)):
        oracle = namespace[name](delta_rel=delta_rel)
        value, grad = _torch_value_and_grad(lambda a, t, o=oracle: o(a, t, epoch), x, y)
        got = float(losses.large_loss(x, y, k_mlcpl - 1, correct=correct)[0])
        got_grad = np.asarray(
            jax.grad(lambda a, c=correct: losses.large_loss(a, y, k_mlcpl - 1, correct=c)[0])(x)
        )
        np.testing.assert_allclose(got, value, rtol=1e-5, err_msg=name)
        np.testing.assert_allclose(got_grad, grad, rtol=1e-3, atol=1e-6, err_msg=name)
    del torch


def test_single_positive_losses_take_classes_on_the_last_axis(case):
    """Leading axes are examples: (2, B/2, C) inputs give the (B, C) losses (WAN's 1 / (C - 1) and
    Durand's g(known / C) read C and the known labels on the last axis)."""
    x, y = case
    for name in ("an", "wan", "an_ls", "normalized_partial_bce"):
        flat, _ = getattr(losses, name)(x, y)
        split, _ = getattr(losses, name)(x.reshape(2, -1, C), y.reshape(2, -1, C))
        np.testing.assert_allclose(float(split), float(flat), rtol=1e-6, err_msg=name)


def test_known_fractions_and_an_image_with_a_single_known_label():
    """The logged fraction of known entries, and Durand's loss of an image with one known label
    (g(1 / C) / C times its one BCE term, not 0)."""
    x = np.array([[1.0, -2.0, 0.5, 0.0], [0.3, 0.2, -1.0, 2.0]], np.float32)
    y = np.array([[1, 0, 0, 0], [-1, 0, 1, 0]], np.int8)
    c = 4
    p = sig(x)
    bce = -np.array([[np.log(p[0, 0]), 0, 0, 0], [np.log(1 - p[1, 0]), 0, np.log(p[1, 2]), 0]])
    known = np.array([1, 2])
    g = -4.45 * known / c + 5.45
    got, metrics = losses.normalized_partial_bce(x, y)
    np.testing.assert_allclose(float(got), np.mean(g / c * bce.sum(1)), rtol=1e-6)
    assert float(metrics["known_fraction"]) == pytest.approx(3 / 8)
    _, metrics = losses.bce_ls(x, y)
    assert set(metrics) == {"known_fraction"}
    assert float(metrics["known_fraction"]) == pytest.approx(3 / 8)


def test_splc_turns_only_entries_strictly_above_tau():
    """SPLC's rule is sigmoid(x) > tau: an unknown entry whose probability equals tau exactly
    stays unknown (the float32 logit with sigmoid(x) == 0.6 on this backend, found by search)."""
    tau = np.float32(0.6)
    down = up = np.float32(np.log(0.6 / 0.4))
    candidates = [down]
    for _ in range(64):  # 64 float32 steps either side of log(0.6 / 0.4)
        down, up = np.nextafter(down, np.float32(-9)), np.nextafter(up, np.float32(9))
        candidates += [down, up]
    candidates = np.sort(np.asarray(candidates, np.float32))
    at_tau = candidates[np.asarray(jax.nn.sigmoid(jnp.asarray(candidates))) == tau]
    assert at_tau.size, "no float32 logit with sigmoid exactly 0.6 near log(1.5)"
    above = np.nextafter(at_tau.max(), np.float32(9))
    logits = np.array([[at_tau[0], above, 3.0]], np.float32)
    _, metrics, turned = losses.splc(logits, np.array([[0, 0, 1]], np.int8), active=True, tau=0.6)
    np.testing.assert_array_equal(np.asarray(turned), [[False, True, False]])
    assert float(metrics["splc_corrected"]) == 1.0


@pytest.mark.parametrize("gammas", [(0.0, 4.0), (1.0, 2.0), (0.0, 0.0)])
def test_asl_with_focusing_gradient_matches_torch(gammas):
    """`stop_focal_gradient=False`: ASL's official torch loss with the focusing weights'
    gradient kept (pt = p y + p_neg (1 - y), torch.pow(1 - pt, gamma_pos y + gamma_neg (1 - y)),
    p_neg = min(1 - p + m, 1)), on known labels with negatives below the margin (p < m: loss and
    gradient 0) and logits of +-40 (saturated in float32): same loss and gradient. At
    gamma 0 and m 0 it is the BCE, by hand."""
    torch = pytest.importorskip("torch")
    gamma_pos, gamma_neg = gammas
    x = np.array([[40.0, -40.0, 40.0, -5.0, 0.7], [-40.0, 1.5, -0.3, -3.5, 2.0]], np.float32)
    y = np.array([[1, 1, -1, -1, 1], [-1, -1, 1, -1, -1]], np.int8)
    target = torch.tensor((y == 1).astype(np.float32))

    def theirs(a, clip):
        return torch_asl(a, target, gamma_pos=gamma_pos, gamma_neg=gamma_neg, clip=clip).sum()

    kwargs = {"gamma_pos": gamma_pos, "gamma_neg": gamma_neg, "stop_focal_gradient": False}
    for clip in (0.05, 0.0):
        xt = torch.tensor(x, requires_grad=True)
        want = theirs(xt, clip)
        want.backward()
        fn = jax.value_and_grad(lambda a, m=clip: losses.asymmetric_loss(a, y, clip=m, **kwargs)[0])
        got, grad = fn(jnp.asarray(x))
        assert np.isfinite(np.asarray(grad)).all()
        np.testing.assert_allclose(float(got), want.item(), rtol=1e-5, err_msg=str(clip))
        np.testing.assert_allclose(np.asarray(grad), xt.grad.numpy(), rtol=1e-4, atol=1e-9)
        if clip == 0.05:  # the negatives below the margin (p < 0.05) score exactly 0
            assert float(grad[1, 1]) != 0.0 and float(grad[0, 3]) == 0.0
    if gammas == (0.0, 0.0):
        got = losses.asymmetric_loss(x, y, gamma_pos=0.0, gamma_neg=0.0, clip=0.0)[0]
        xd = x.astype(np.float64)
        bce = -np.sum(
            np.where(y == 1, np.log(np.maximum(sig(xd), 1e-8)), np.log(np.maximum(sig(-xd), 1e-8)))
        )
        np.testing.assert_allclose(float(got), bce, rtol=1e-5)


def test_asl_known_fractions_by_hand():
    """Every ASL's logged known fraction is the scored entries over B x C: the known entries under
    'ignore', every entry under 'negative'; DualCoOp's and the TaI-DPT ASLs score targets beyond
    +-0.9 only (a soft target of exactly 0.9 or -0.9 is neither)."""
    from mlrpl_jax.losses import asymmetric

    rng = np.random.default_rng(21)
    x = rng.normal(size=(4, 5)).astype(np.float32)
    y = np.array([[1, 0, -1, 0, 0], [0, 0, 0, 1, -1], [-1, -1, 0, 0, 1], [0, 0, 0, 0, 1]], np.int8)
    assert float(asymmetric.asymmetric_loss(x, y)[1]["known_fraction"]) == pytest.approx(8 / 20)
    got = asymmetric.asymmetric_loss(x, y, unknown="negative")[1]["known_fraction"]
    assert float(got) == pytest.approx(1.0)
    assert float(asymmetric.softmax_pair_asl(-x, x, y)[1]["known_fraction"]) == pytest.approx(0.4)
    soft = y.astype(np.float32)
    soft[0, 1], soft[1, 0], soft[2, 2] = 0.9, -0.9, 0.95  # neither, neither, positive
    loss, metrics = asymmetric.sigmoid_difference_asl(-x, x, soft)
    assert float(metrics["known_fraction"]) == pytest.approx(9 / 20)
    rounded = np.where(np.abs(soft) > 0.9, np.sign(soft), 0.0)
    np.testing.assert_allclose(float(loss), float(asymmetric.sigmoid_difference_asl(-x, x, rounded)[0]),
                               rtol=1e-6)  # fmt: skip


def test_pair_asls_focusing_weights_have_no_gradient():
    """DualCoOp's ASL (as its authors' code) detaches the focusing weights (1 - p)^g+ and p_m^g-:
    its gradient is that of the log terms weighted by constants."""
    from mlrpl_jax.losses import asymmetric

    rng = np.random.default_rng(22)
    neg, pos = rng.normal(size=(2, 3, 4)).astype(np.float32)
    y = np.array([[1, -1, 0, -1], [-1, 1, -1, 0], [0, -1, 1, 1]], np.int8)
    gp, gn, clip, eps = 1.0, 2.0, 0.05, 1e-6

    def prob(z):
        return jax.nn.softmax(jnp.stack([jnp.asarray(neg), z], -1), -1)[..., 1]

    p0 = np.asarray(prob(jnp.asarray(pos)), np.float64)
    w_pos = (1 - p0) ** gp
    w_neg = (1 - np.minimum(1 - p0 + clip, 1.0)) ** gn

    def frozen(z):
        p = prob(z)
        not_p = jnp.minimum(1 - p + clip, 1.0)
        return jnp.sum((y == 1) * -w_pos * jnp.log(jnp.maximum(p, eps))
                       + (y == -1) * -w_neg * jnp.log(jnp.maximum(not_p, eps)))  # fmt: skip

    got = jax.grad(lambda z: asymmetric.softmax_pair_asl(neg, z, y)[0])(jnp.asarray(pos))
    np.testing.assert_allclose(got, jax.grad(frozen)(jnp.asarray(pos)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(asymmetric.softmax_pair_asl(neg, pos, y)[0]),
                               float(frozen(jnp.asarray(pos))), rtol=1e-6)  # fmt: skip


def test_large_loss_logs_its_threshold_and_hits():
    """The logged threshold is the k-th largest unobserved-entry BCE (U's largest at k = 0, where
    nothing is hit), and the hits are the entries at or above it."""
    rng = np.random.default_rng(23)
    x = rng.normal(size=(3, 4)).astype(np.float32)
    y = np.array([[1, 0, 0, -1], [0, 0, 1, 0], [-1, 0, 0, 0]], np.int8)
    u = np.where(y == 0, np.logaddexp(0, x.astype(np.float64)), 0.0)  # BCE towards 0
    ranked = np.sort(u.ravel())[::-1]
    for k in (0, 1, 3):
        _, metrics, masks = losses.large_loss(x, y, k, correct=False)
        want = ranked[max(k - 1, 0)]
        np.testing.assert_allclose(float(metrics["large_loss_threshold"]), want, rtol=1e-6)
        assert float(metrics["large_loss_hits"]) == k
        assert int(np.sum(masks["hit"])) == k
