"""Paper 002's imbalance method: eq. 8-12 written out by hand, the table's update rule, the
dynamic training scheme and the ablation switches."""

import math

import jax
import numpy as np
import pytest
from helpers import fake_data_info
from jax.sharding import PartitionSpec as P
from test_train_step import NUM_CLASSES, fake_batch, tiny_config

from mlrpl_jax import methods, sharding, trainer
from mlrpl_jax.losses import imbalance as imb


def sig(x):
    return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def eq12_by_hand(x, y, pseudo, picked, d, gamma=0.05, rule="prose", beta_rule="known",
                 use_penalty=True):
    p_hat = sig(x)
    known = y != 0
    pos_known = (y == 1).sum()
    total_labels = known.sum() if beta_rule == "known" else y.size
    beta = max(pos_known / total_labels, gamma) if total_labels else gamma
    alpha = 1 - beta
    total = 0.0
    for i in range(x.shape[0]):
        k, s = known[i], picked[i] & ~known[i]
        yy = (y[i] == 1).astype(float)
        ne, ns = max(k.sum(), 1), max(s.sum(), 1)
        lp, ln = np.log(p_hat[i]), np.log(1 - p_hat[i])
        pos = (k * yy * lp).sum() / ne + d * (s * pseudo[i] * lp).sum() / ns
        neg = (k * (1 - yy) * ln).sum() / ne + d * (s * (1 - pseudo[i]) * ln).sum() / ns
        all_below = (p_hat[i] <= 0.1).all()
        p = (2.0 if all_below else 1.0) if rule == "prose" else (1.0 if all_below else 2.0)
        p = p if use_penalty else 1.0
        total += -p * (alpha * pos + beta * neg)
    return total / x.shape[0]


@pytest.mark.parametrize("rule", ["prose", "formula"])
def test_loss_is_equation_12(rule):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (5, 6)).astype(np.float32)
    x[0] = -6.0  # every prediction below 0.1: the image the two penalty readings disagree on
    y = rng.choice([-1, 0, 1], size=(5, 6), p=[0.3, 0.5, 0.2]).astype(np.int8)
    pseudo = rng.uniform(0, 1, (5, 6)).astype(np.float32)
    picked = rng.uniform(0, 1, (5, 6)) < 0.5
    got, metrics = imb.imbalance_loss(x, y, pseudo, picked, d=1.7, penalty_rule=rule)
    np.testing.assert_allclose(float(got), eq12_by_hand(x, y, pseudo, picked, 1.7, rule=rule),
                               rtol=1e-5)  # fmt: skip
    beta = max((y == 1).sum() / (y != 0).sum(), 0.05)
    np.testing.assert_allclose(float(metrics["beta"]), beta, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["alpha"]), 1 - beta, rtol=1e-6)
    # The pseudo labels are targets: no gradient flows into them.
    g = jax.grad(lambda t: imb.imbalance_loss(x, y, t, picked, d=1.0)[0])(pseudo)
    assert not np.asarray(g).any()


def test_beta_rule_all_counts_every_entry():
    """beta_rule 'all': T = the batch's B x C entries, so a batch whose known labels are all
    positive (PPL, SPL) keeps alpha near 1 instead of 0. (The loss function still computes
    'known' there; the method refuses that config: tests/test_imbalance_readings.py.)"""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, (4, 10)).astype(np.float32)
    y = np.zeros((4, 10), np.int8)
    y[np.arange(4), rng.integers(0, 10, 4)] = 1  # one known positive per image (SPL)
    y[0, :3] = 1
    pseudo = rng.uniform(0, 1, (4, 10)).astype(np.float32)
    picked = rng.uniform(0, 1, (4, 10)) < 0.5
    known_beta = imb.imbalance_loss(x, y, pseudo, picked, d=1.0)[1]["beta"]
    assert float(known_beta) == 1.0  # 'known': alpha = 0, the collapse
    got, metrics = imb.imbalance_loss(x, y, pseudo, picked, d=1.3, beta_rule="all")
    want_beta = max((y == 1).sum() / y.size, 0.05)
    np.testing.assert_allclose(float(metrics["beta"]), want_beta, rtol=1e-6)
    np.testing.assert_allclose(float(got), eq12_by_hand(x, y, pseudo, picked, 1.3, beta_rule="all"),
                               rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="beta rule"):
        imb.imbalance_coefficients(y, 0.05, "batch")


def test_d_and_penalty_rules():
    # formula: exp((e + m) / E); prose: 1 at epoch E - m.
    assert float(imb.dynamic_coefficient(0, 10, 3.0, "formula")) == pytest.approx(math.exp(0.3))
    assert float(imb.dynamic_coefficient(7, 10, 3.0, "prose")) == pytest.approx(1.0)
    assert float(imb.dynamic_coefficient(2, 10, 3.0, "prose")) < 1.0
    probs = np.array([[0.05, 0.02], [0.05, 0.5]])
    np.testing.assert_array_equal(imb.penalty(probs, "prose"), [2.0, 1.0])
    np.testing.assert_array_equal(imb.penalty(probs, "formula"), [1.0, 2.0])
    with pytest.raises(ValueError, match="rule"):
        imb.penalty(probs, "other")
    with pytest.raises(ValueError, match=r"^d rule must be one of \('formula', 'prose'\), got 'x'"):
        imb.dynamic_coefficient(0, 10, 3.0, "x")


def test_ablations_remove_their_component():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (4, 5)).astype(np.float32)
    y = rng.choice([-1, 0, 1], size=(4, 5)).astype(np.int8)
    pseudo = np.full((4, 5), 0.5, np.float32)
    picked = np.ones((4, 5), bool)
    base_loss = float(imb.imbalance_loss(x, y, pseudo, picked, d=1.0)[0])
    no_ab = float(imb.imbalance_loss(x, y, pseudo, picked, d=1.0, use_alpha_beta=False)[0])
    by_hand = eq12_by_hand(x, y, pseudo, picked, 1.0)  # with alpha, beta
    np.testing.assert_allclose(base_loss, by_hand, rtol=1e-5)
    assert no_ab != pytest.approx(base_loss)


def test_penalty_ablation_and_the_logged_fractions_by_hand():
    """use_penalty=False is eq. 12 with p = 1 (image 0 has every prediction below 0.1, where the
    default 'prose' p is 2); the logged penalty mean and the picked fraction of the unknown
    entries, by hand, on a batch whose B differs from C."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 2, (3, 5)).astype(np.float32)
    x[0] = -6.0
    y = np.array([[1, 0, 0, -1, 0], [0, 0, 1, -1, -1], [1, -1, 0, 0, 1]], np.int8)
    pseudo = rng.uniform(0, 1, (3, 5)).astype(np.float32)
    picked = np.array([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 0]], bool)
    got, metrics = imb.imbalance_loss(x, y, pseudo, picked, d=1.2, use_penalty=False)
    want = eq12_by_hand(x, y, pseudo, picked, 1.2, use_penalty=False)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    assert abs(want - eq12_by_hand(x, y, pseudo, picked, 1.2)) > 0.1  # p matters here
    assert float(metrics["penalty_mean"]) == 1.0
    _, metrics = imb.imbalance_loss(x, y, pseudo, picked, d=1.2)
    assert float(metrics["penalty_mean"]) == pytest.approx(4 / 3)  # p = (2, 1, 1)
    # Picked unknown entries / unknown entries: image 0's picked entry 0 is known.
    assert float(metrics["picked_fraction"]) == pytest.approx(2 / 7)
    # A batch with a single unknown entry, picked: fraction 1.
    one = np.array([[1, -1, 0]], np.int8)
    _, metrics = imb.imbalance_loss(x[:1, :3], one, pseudo[:1, :3], np.ones((1, 3), bool), d=1.0)
    assert float(metrics["picked_fraction"]) == 1.0


def test_beta_of_a_batch_with_a_single_known_label():
    """beta = P / T with T = 1: a single known positive gives beta = 1, a single known negative
    beta = gamma (eq. 8, 'known' rule); under 'all', one entry in all."""
    assert float(imb.imbalance_coefficients(np.array([[0, 1, 0]], np.int8), 0.05)[1]) == 1.0
    assert float(imb.imbalance_coefficients(np.array([[0, -1, 0]], np.int8), 0.05)[1]) == (
        pytest.approx(0.05))
    assert float(imb.imbalance_coefficients(np.array([[1]], np.int8), 0.05, "all")[1]) == 1.0
    alpha, beta = imb.imbalance_coefficients(np.array([[1, -1, -1, 0]], np.int8), 0.05, "all")
    assert (float(alpha), float(beta)) == pytest.approx((0.75, 0.25))


def test_penalty_counts_a_prediction_above_the_floor_strictly():
    """eq. 10: max(y^ - 0.1, 0) is 0 at y^ = 0.1, so an image whose largest prediction is 0.1
    has none above the floor (p = 2 under 'prose', 1 under 'formula')."""
    probs = np.array([[np.float32(0.1), 0.05], [0.1001, 0.0]], np.float32)
    np.testing.assert_array_equal(imb.penalty(probs, "prose"), [2.0, 1.0])
    np.testing.assert_array_equal(imb.penalty(probs, "formula"), [1.0, 2.0])


def _fns(config):
    mesh = sharding.make_mesh()
    fns = trainer.make_train_fns(config, methods.get("imbalance"), fake_data_info(NUM_CLASSES),
                                 mesh, 1, 4)  # fmt: skip
    return fns, mesh


@pytest.mark.parametrize("dtype", ["float32", pytest.param("uint8", marks=pytest.mark.slow)])
def test_table_starts_at_half_and_takes_the_batch_predictions(dtype):
    config = tiny_config(method="imbalance")
    config.method_config.table_dtype = dtype
    fns, mesh = _fns(config)
    info = fake_data_info(NUM_CLASSES)
    labels = info.train_partial_labels()
    table0 = fns.state.method_state["pseudo_labels"]
    assert table0.sharding.spec == P("data", None)
    decoded = np.asarray(jax.device_get(trainer_decode(table0)))
    tol = 1 / 510 if dtype == "uint8" else 0
    np.testing.assert_allclose(decoded[: len(labels)][labels == 0], 0.5, atol=tol + 1e-7)
    batch = fake_batch(seed=0)
    state, metrics = fns.step_fn(fns.state, sharding.host_to_global(batch, mesh))
    assert 0.3 < float(metrics["picked_fraction"]) < 0.7  # q = 0.5
    after = np.asarray(jax.device_get(trainer_decode(state.method_state["pseudo_labels"])))
    unknown = batch["labels"] == 0
    assert np.all((after[:16] != decoded[:16]) <= unknown)  # known entries untouched
    assert (np.abs(after[:16][unknown] - 0.5) > 1e-3).mean() > 0.5  # predictions written
    np.testing.assert_array_equal(after[16:], decoded[16:])  # other rows untouched


def trainer_decode(table):
    from mlrpl_jax.ops import example_table

    return example_table.decode(table)


@pytest.mark.parametrize("labels_case", ["none_known", "all_known", "no_positive"])
def test_loss_edge_cases(labels_case):
    rng = np.random.default_rng(2)
    x = rng.normal(0, 2, (4, 5)).astype(np.float32)
    y = {"none_known": np.zeros((4, 5), np.int8), "all_known": np.where(x > 0, 1, -1),
         "no_positive": np.where(x > 0, 0, -1)}[labels_case].astype(np.int8)  # fmt: skip
    pseudo = rng.uniform(0, 1, (4, 5)).astype(np.float32)
    picked = np.ones((4, 5), bool)
    got, metrics = imb.imbalance_loss(x, y, pseudo, picked, d=1.3)
    np.testing.assert_allclose(float(got), eq12_by_hand(x, y, pseudo, picked, 1.3), rtol=1e-5)
    if labels_case != "all_known":
        assert float(metrics["beta"]) == pytest.approx(0.05)  # no known positive: beta = gamma


@pytest.mark.slow  # > 10 s on 2 cores; the fast loop stays under 5 minutes
def test_a_step_stores_sigmoid_of_its_logits_and_its_loss_reads_the_stored_table():
    """The exact values: after one `loss_fn` call the table's rows of the batch hold
    sigmoid(logits) on the unknown entries and their old values elsewhere; the loss is eq. 12
    with the table's values *before* the step (stored 0.9 here, which no prediction equals), not
    this step's predictions, and not 1 - p."""
    from mlrpl_jax.methods import base
    from mlrpl_jax.ops import example_table

    config = tiny_config(method="imbalance")
    config.method_config.use_q = False  # every unknown entry takes part (no draw to reproduce)
    fns, _ = _fns(config)
    method, state = methods.get("imbalance"), fns.state
    batch = fake_batch(seed=4)
    labels, ids = batch["labels"], batch["example_id"]
    stored = np.asarray(trainer_decode(state.method_state["pseudo_labels"])).copy()
    stored[: len(ids)] = np.where(labels == 0, 0.9, stored[: len(ids)])
    table = example_table.encode(stored, "float32")
    images = method.normalize_images(config, batch["image"])
    seen = {"image": images, "labels": labels, "example_id": ids}
    clock = base.make_clock(np.int32(5), 4)  # epoch 1
    loss, out = method.loss_fn(fns.model, config, state.params, state.batch_stats,
                               {"pseudo_labels": table}, seen, jax.random.PRNGKey(0), clock)  # fmt: skip
    (logits, _), _ = base.apply_train(fns.model, state.params, state.batch_stats, images)
    logits = np.asarray(logits, np.float64)
    after = np.asarray(trainer_decode(out.method_state["pseudo_labels"]))
    unknown = labels == 0
    np.testing.assert_allclose(after[: len(ids)][unknown], sig(logits)[unknown], rtol=1e-5)
    np.testing.assert_array_equal(after[: len(ids)][~unknown], stored[: len(ids)][~unknown])
    np.testing.assert_array_equal(after[len(ids) :], stored[len(ids) :])  # other rows untouched
    d = float(imb.dynamic_coefficient(1, config.train.num_epochs, 3.0, "prose"))
    expected = imb.imbalance_loss(logits.astype(np.float32), labels,
                                  np.where(unknown, 0.9, 0.5).astype(np.float32), unknown, d=d,
                                  alpha_beta_on="existing")[0]  # fmt: skip
    np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
    from_predictions = imb.imbalance_loss(logits.astype(np.float32), labels,
                                          sig(logits).astype(np.float32), unknown, d=d,
                                          alpha_beta_on="existing")[0]  # fmt: skip
    assert abs(float(from_predictions) - float(expected)) > 1e-3  # the two sources differ here
