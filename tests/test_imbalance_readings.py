"""Paper 002's readings (`alpha_beta_on`, `beta_rule`, `d_rule`): what each one does to the
gradient, written out by hand, and what the method's defaults guarantee
(`shared/reference/imbalance_readings.md`, docs/results/imbalance_validation.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train_step import tiny_config

from mlrpl_jax import config_validation, errors
from mlrpl_jax.losses import imbalance as imb
from mlrpl_jax.methods import imbalance as imbalance_method

B, C = 6, 8


def sig(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def pal_batch(seed=0):
    """Logits (B, C) with one image whose predictions are all below 0.1 (p = 2 under 'prose'),
    PAL labels with known positives and negatives, and a picked subset of the unknown entries."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.5, (B, C)).astype(np.float32)
    x[0] = rng.uniform(-6.0, -3.0, C)  # every prediction < 0.1
    y = rng.choice([-1, 0, 1], size=(B, C), p=[0.35, 0.45, 0.2]).astype(np.int8)
    y[:, 0] = 0  # every image has an unknown entry
    picked = rng.uniform(0, 1, (B, C)) < 0.6
    picked[:, 0] = True  # ... and a picked one
    return x, y, picked


def alpha_beta_by_hand(y, gamma=0.05, rule="known"):
    total = (y != 0).sum() if rule == "known" else y.size
    beta = max((y == 1).sum() / total, gamma) if total else gamma
    return 1.0 - beta, beta


@pytest.mark.parametrize("reading", imb.ALPHA_BETA_ON)
@pytest.mark.parametrize("beta_rule", imb.BETA_RULES)
def test_gradient_on_unknown_logit_at_a_self_consistent_table(reading, beta_rule):
    """With the stored targets equal to the current predictions (t = s, the table's fixed point),
    d loss / d x on a picked unknown entry of image i is -(alpha-beta) s(1-s) p_i d / (|S_i| B)
    under 'printed' (the odds keep growing: the pseudo labels drift to positive) and 0 under the
    readings that do not weigh the pseudo part by alpha/beta."""
    x, y, picked = pal_batch()
    d = 0.7
    t = sig(x).astype(np.float32)  # self-consistent table
    grad = jax.grad(
        lambda z: imb.imbalance_loss(
            z, y, t, picked, d=d, beta_rule=beta_rule, alpha_beta_on=reading
        )[0]
    )(jnp.asarray(x))
    grad = np.asarray(grad, np.float64)
    alpha, beta = alpha_beta_by_hand(y, rule=beta_rule)
    s = sig(x)
    unknown = y == 0
    sel = picked & unknown
    n_s = sel.sum(axis=1, keepdims=True)
    p = np.where((s <= 0.1).all(axis=1, keepdims=True), 2.0, 1.0)  # 'prose' penalty
    assert p[0, 0] == 2.0 and (p[1:] == 1.0).any()
    if reading == "printed":
        want = -(alpha - beta) * s * (1 - s) * p * d / (n_s * B)
    else:
        want = np.zeros_like(s)
    np.testing.assert_allclose(grad[sel], want[sel], rtol=1e-4, atol=1e-7)
    if reading == "printed":
        assert np.all(np.abs(want[sel]) > 1e-6)  # never zero: alpha != beta on this batch
    # Unpicked unknown entries take no part (the dynamic training scheme).
    np.testing.assert_array_equal(grad[unknown & ~picked], 0.0)


@pytest.mark.parametrize("reading", imb.ALPHA_BETA_ON)
def test_readings_are_eq12_with_the_pseudo_weights_written_out(reading):
    """Each reading by hand: the existing part alpha y log s + beta (1-y) log(1-s) as printed;
    the pseudo part with weights (alpha, beta) 'printed', ((a+b)/2, (a+b)/2) 'symmetric',
    (1, 1) 'existing'; and 'printed' = 'symmetric' + the antisymmetric (alpha-beta)/2 term."""
    x, y, picked = pal_batch(seed=3)
    rng = np.random.default_rng(4)
    t = rng.uniform(0, 1, (B, C)).astype(np.float32)
    d = 1.3
    alpha, beta = alpha_beta_by_hand(y)
    w_pos, w_neg = {"printed": (alpha, beta), "symmetric": ((alpha + beta) / 2,) * 2,
                    "existing": (1.0, 1.0)}[reading]  # fmt: skip
    s = sig(x)
    total = 0.0
    antisym = 0.0
    for i in range(B):
        k, sel = y[i] != 0, picked[i] & (y[i] == 0)
        yy = (y[i] == 1).astype(float)
        ne, ns = max(k.sum(), 1), max(sel.sum(), 1)
        lp, ln = np.log(s[i]), np.log(1 - s[i])
        p = 2.0 if (s[i] <= 0.1).all() else 1.0
        existing = alpha * (k * yy * lp).sum() / ne + beta * (k * (1 - yy) * ln).sum() / ne
        pseudo = (w_pos * (sel * t[i] * lp).sum() + w_neg * (sel * (1 - t[i]) * ln).sum()) * d / ns
        total += -p * (existing + pseudo)
        antisym += p * (alpha - beta) / 2 * d / ns * (sel * (-t[i] * lp + (1 - t[i]) * ln)).sum()
    got, metrics = imb.imbalance_loss(x, y, t, picked, d=d, alpha_beta_on=reading)
    np.testing.assert_allclose(float(got), total / B, rtol=1e-5)
    np.testing.assert_allclose(float(metrics["pseudo_pos_weight"]), w_pos, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["pseudo_neg_weight"]), w_neg, rtol=1e-6)
    if reading == "printed":
        symmetric = float(imb.imbalance_loss(x, y, t, picked, d=d, alpha_beta_on="symmetric")[0])
        np.testing.assert_allclose(float(got), symmetric + antisym / B, rtol=1e-5)


def test_readings_coincide_without_alpha_beta():
    """Table VII's "remove alpha and beta" (alpha = beta = 1) is one loss under every reading."""
    x, y, picked = pal_batch(seed=5)
    t = np.random.default_rng(6).uniform(0, 1, (B, C)).astype(np.float32)
    losses = [float(imb.imbalance_loss(x, y, t, picked, d=0.9, use_alpha_beta=False,
                                       alpha_beta_on=r)[0]) for r in imb.ALPHA_BETA_ON]  # fmt: skip
    np.testing.assert_allclose(losses, losses[0], rtol=1e-6)
    with pytest.raises(ValueError, match="alpha_beta_on"):
        imb.imbalance_loss(x, y, t, picked, d=1.0, alpha_beta_on="both")


@pytest.mark.parametrize("num_epochs", [8, 10, 20])
def test_default_d_is_below_one_first_and_one_at_e_t_minus_m(num_epochs):
    """The paper's sentences about d (§IV-B): the existing part weighs more before epoch
    e_T - m (d < 1), both weigh equally at e_T - m (d = 1), the pseudo part more after."""
    mc = imbalance_method.default_config()
    at = lambda e: float(imb.dynamic_coefficient(e, num_epochs, mc.m, mc.d_rule))
    e_eq = num_epochs - mc.m
    assert at(0) < 1.0
    assert at(0) == pytest.approx(np.exp((mc.m - num_epochs) / num_epochs))
    assert at(e_eq) == pytest.approx(1.0, abs=1e-6)
    assert at(e_eq - 1) < 1.0 < at(e_eq + 1)
    # The typeset formula stays available and is > 1 from epoch 0.
    assert float(imb.dynamic_coefficient(0, num_epochs, mc.m, "formula")) > 1.0


def _positive_only_batch(setting):
    rng = np.random.default_rng(7)
    full = rng.uniform(0, 1, (B, C)) < 0.25
    full[np.arange(B), rng.integers(0, C, B)] = True  # every image has a positive
    y = np.zeros((B, C), np.int8)
    if setting == "ppl":  # 30 % of the positives kept, no negative
        y[full & (rng.uniform(0, 1, (B, C)) < 0.3)] = 1
        y[0, np.flatnonzero(full[0])[0]] = 1
    else:  # spl: one positive per image
        for i in range(B):
            y[i, rng.choice(np.flatnonzero(full[i]))] = 1
    return y


@pytest.mark.parametrize("setting", ["ppl", "spl"])
def test_default_config_at_ppl_and_spl_has_alpha_above_zero(setting):
    """A PPL or SPL batch holds only positive known labels. 'known' (the PAL default, chosen on
    validation data) would give beta = P/T = 1, alpha = 0 there (nothing raises a score), so the
    default beta_rule 'auto' is 'all' at these settings, and the batch gets
    alpha = 1 - max(known positives / (B C), gamma) > 0."""
    config = tiny_config(method="imbalance")
    config.data.setting = setting
    config.data.val_labels = "full"
    config_validation.validate(config)  # the default config is accepted ...
    assert imbalance_method.resolved_beta_rule(config) == "all"  # ... and T is every entry
    mc = config.method_config
    y = _positive_only_batch(setting)
    x = np.random.default_rng(8).normal(0, 1, (B, C)).astype(np.float32)
    t = np.full((B, C), 0.5, np.float32)
    loss_of = lambda z: imb.imbalance_loss(
        z, y, t, np.ones((B, C), bool), d=1.0, gamma=mc.gamma,
        beta_rule=imbalance_method.resolved_beta_rule(config),
        penalty_rule=mc.penalty_rule, alpha_beta_on=mc.alpha_beta_on,
    )  # fmt: skip
    _, metrics = loss_of(x)
    want_alpha = 1.0 - max((y == 1).sum() / y.size, mc.gamma)
    np.testing.assert_allclose(float(metrics["alpha"]), want_alpha, rtol=1e-6)
    assert float(metrics["alpha"]) > 0.5
    # ... so the known positives pull their scores up: d loss / d x < 0 on every one of them.
    grad = np.asarray(jax.grad(lambda z: loss_of(z)[0])(jnp.asarray(x)))
    assert np.all(grad[y == 1] < 0)


@pytest.mark.parametrize("setting", ["ppl", "spl"])
def test_known_beta_rule_is_refused_only_where_it_forces_alpha_zero(setting):
    config = tiny_config(method="imbalance")
    config.data.setting = setting
    config.data.val_labels = "full"
    config.method_config.beta_rule = "known"  # asked for explicitly
    with pytest.raises(errors.ConfigError, match=r"beta_rule='known'.*beta_rule=all"):
        config_validation.validate(config)
    config.method_config.use_alpha_beta = False  # Table VII's ablation: beta_rule is unused
    config_validation.validate(config)
    config.method_config.use_alpha_beta = True
    config.data.setting = "pal"  # negatives are known: 'known' is the observed positive rate
    config_validation.validate(config)


def test_defaults_are_the_validated_readings():
    """The defaults docs/results/imbalance_validation.md chose (never on test mAP)."""
    mc = imbalance_method.default_config()
    assert (mc.alpha_beta_on, mc.beta_rule, mc.d_rule) == ("existing", "auto", "prose")
    config = tiny_config(method="imbalance")
    assert imbalance_method.resolved_beta_rule(config) == "known"  # at PAL


def test_imbalance_scale_decays_the_methods_lr_and_keeps_the_baselines_constant():
    """Paper 002 §I: its training scheme "continuously modif[ies] the learning rate"; the recipe's
    [I] reading is a cosine decay over the run, lr_k = lr (1 + cos(pi k / K)) / 2, for the method
    only (its baselines run their authors' constant lr, as the paper says it ran them)."""
    from configs import base, recipes
    from mlrpl_jax import optim

    steps_per_epoch = 50
    for dataset in ("coco", "nus", "openimages"):
        config = recipes.imbalance_scale(base.get_config("imbalance"), dataset)
        total = steps_per_epoch * config.train.num_epochs
        _, schedule = optim.make_optimizer(config.optim, steps_per_epoch, total)
        lr = config.optim.learning_rate
        k = np.arange(0, total + 1, 37)
        want = lr * (1 + np.cos(np.pi * k / total)) / 2
        np.testing.assert_allclose([float(schedule(i)) for i in k], want, rtol=1e-5, atol=1e-12)
        assert float(schedule(total - 1)) < 1e-3 * lr
        for baseline in ("an", "asl", "role"):
            other = recipes.imbalance_scale(base.get_config(baseline), dataset)
            assert other.optim.schedule == "constant", (dataset, baseline)
