"""The loss baselines as methods: ROLE's learned label table, LargeLoss's permanent corrections,
the per-method defaults and config errors."""

import math

import jax
import numpy as np
import pytest
from helpers import fake_data_info, tiny_run_config
from jax.sharding import PartitionSpec as P
from test_train_step import NUM_CLASSES, fake_batch, tiny_config

from mlrpl_jax import config_validation, methods, sharding, trainer
from mlrpl_jax.methods import loss_baselines
from mlrpl_jax.ops import example_table


def _fns(config, steps_per_epoch=1, total=4):
    mesh = sharding.make_mesh()
    info = fake_data_info(NUM_CLASSES)
    fns = trainer.make_train_fns(config, methods.get(config.method), info, mesh,
                                 steps_per_epoch, total)  # fmt: skip
    return fns, mesh, info


def test_every_baseline_is_registered_with_its_loss():
    for name in loss_baselines.LOSSES:
        method = methods.get(name)
        assert method.default_config().loss == name
    assert methods.get("ll_ct").default_config().head_lr_mult == 10.0  # LargeLoss's classifier


@pytest.mark.slow  # ~5-8 s on 2 cores: the whole suite runs it, the fast loop stays under 5 min
def test_role_table_is_initialised_from_the_observed_labels_sharded_and_trained_x10():
    config = tiny_config(method="role")
    config.method_config.expected_positives = 2.0
    config.optim.weight_decay = 0.0
    fns, mesh, info = _fns(config)
    table = fns.state.params["method"]["label_logits"]
    assert table.sharding.spec == P("data", None)
    labels = info.train_partial_labels()
    t0 = np.asarray(table)
    n = len(labels)
    assert t0.shape == (example_table.padded_rows(n), NUM_CLASSES)
    np.testing.assert_allclose(t0[:n][labels == 1], math.log(0.995 / 0.005), rtol=1e-6)
    np.testing.assert_allclose(t0[:n][labels == -1], -math.log(0.995 / 0.005), rtol=1e-6)
    unknown = t0[:n][labels == 0]
    bound = math.log(0.6 / 0.4)
    assert np.all(np.abs(unknown) < bound) and unknown.std() > 0.1
    assert not t0[n:].any()
    # The Adam moments of the table are sharded too.
    moments = [
        leaf for path, leaf in jax.tree_util.tree_flatten_with_path(fns.state.opt_state)[0]
        if "label_logits" in jax.tree_util.keystr(path) and leaf.ndim == 2
    ]  # fmt: skip
    assert moments and all(m.sharding.spec == P("data", None) for m in moments)
    state, _ = fns.step_fn(fns.state, sharding.host_to_global(fake_batch(seed=0), mesh))
    t1 = np.asarray(state.params["method"]["label_logits"])
    changed = np.any(t1 != t0, axis=1)
    assert changed[:16].all() and not changed[16:].any()  # only the batch's rows (ids 0..15)
    # Adam's first step is lr * sign(g): x10 for the table (lr 1e-2).
    step = np.abs(t1[:16] - t0[:16])
    np.testing.assert_allclose(step[step > 0], 10 * config.optim.learning_rate, rtol=1e-3)


@pytest.mark.slow  # ~5-8 s on 2 cores
def test_role_table_rows_of_the_batch_take_adams_first_step_on_the_hand_gradient():
    """After one step, the table holds t0 - 10 lr g / (|g| + eps) (Adam's first step, the table's
    x10) on the rows of the batch's example ids (not its positions), with g the gradient of ROLE's
    loss with respect to the estimate logits written out by hand (Cole et al.: observed positives'
    -log(q + 1e-5) / (B C), the cross term's BCE(q, p) / (B C), both halved, and half the expected
    positive regulariser R(q) = (sum q / B - k)^2 / C^2); every other row is unchanged."""
    from mlrpl_jax.methods import base as methods_base

    config = tiny_config(method="role")
    k = config.method_config.expected_positives = 2.0
    config.optim.weight_decay = 0.0
    fns, mesh, _ = _fns(config)
    batch = fake_batch(seed=1)
    ids = np.random.default_rng(5).permutation(64)[:16].astype(np.int32)
    batch["example_id"] = ids
    t0 = np.asarray(fns.state.params["method"]["label_logits"], np.float64)
    images = fns.normalize_fn(sharding.host_to_global(batch, mesh)["image"])
    (logits, _), _ = methods_base.apply_train(
        fns.model, fns.state.params, fns.state.batch_stats, images
    )
    p = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
    state, metrics = fns.step_fn(fns.state, sharding.host_to_global(batch, mesh))
    t1 = np.asarray(state.params["method"]["label_logits"], np.float64)
    # Its diagnostics score the batch rows' estimates above 0.5 on the unknown entries (as read by
    # the step, before its update) against the full labels.
    guessed = (t0[ids] > 0) & (batch["labels"] == 0)
    assert float(metrics["role_estimates_precision/den"]) == guessed.sum() > 0
    right = guessed & (batch["full_labels"] == 1)
    assert float(metrics["role_estimates_precision/num"]) == right.sum()

    q = 1 / (1 + np.exp(-t0[ids]))
    b, c = q.shape
    eps, dq = 1e-5, q * (1 - q)  # Cole's -log(a + 1e-5); dq = dq/dz
    pos = (batch["labels"] == 1).astype(np.float64)
    d_neg_log_q, d_neg_log_1mq = -dq / (q + eps), dq / (1 - q + eps)
    observed = pos * d_neg_log_q
    cross = p * d_neg_log_q + (1 - p) * d_neg_log_1mq  # BCE(q, target p)
    reg = 2 * (q.sum() / b - k) / c**2 * dq / b
    g = 0.5 * (observed + cross) / (b * c) + 0.5 * reg
    lr = 10 * config.optim.learning_rate
    np.testing.assert_allclose(t1[ids] - t0[ids], -lr * g / (np.abs(g) + config.optim.eps),
                               rtol=2e-3, atol=1e-7)  # fmt: skip
    others = np.setdiff1d(np.arange(len(t0)), ids)
    np.testing.assert_array_equal(t1[others], t0[others])


@pytest.mark.parametrize("name", ["ll_r", pytest.param("ll_ct", marks=pytest.mark.slow)])
def test_large_loss_rejects_k_entries_per_epoch_from_epoch_one(name):
    """The training step's budget: epoch e (0-based, one step per epoch here) rejects / corrects
    k = ceil(B C e delta_rel) unobserved entries of the batch, none in epoch 0 (LargeLoss: the
    clean rate starts to fall after the first epoch)."""
    config = tiny_config(method=name)
    config.method_config.delta_rel = 0.05
    fns, mesh, _ = _fns(config)
    state, batch = fns.state, fake_batch(seed=0)
    n = batch["labels"].size  # B C entries of the global batch
    hits, scored = [], []
    diagnostic = "ll_rejected" if name == "ll_r" else "ll_corrected"
    for _ in range(3):  # epochs 0, 1, 2
        state, metrics = fns.step_fn(state, sharding.host_to_global(batch, mesh))
        hits.append(int(metrics["large_loss_hits"]))
        scored.append(int(metrics[f"{diagnostic}_precision/den"]))
    assert hits == [0, math.ceil(n * 0.05), math.ceil(n * 0.10)]
    assert scored == hits  # the diagnostics score exactly the rejected / corrected entries


@pytest.mark.slow  # ~5-8 s on 2 cores: the whole suite runs it, the fast loop stays under 5 min
def test_ll_cp_paper_rule_stores_permanent_corrections_from_epoch_one():
    config = tiny_config(method="ll_cp")
    config.method_config.delta_rel = 0.05
    fns, mesh, _ = _fns(config)
    state = fns.state
    table = state.method_state["corrections"]
    assert table.dtype == np.uint8 and table.sharding.spec == P("data", None)
    batch = fake_batch(seed=0)
    state, metrics = fns.step_fn(state, sharding.host_to_global(batch, mesh))  # epoch 0
    assert not np.asarray(state.method_state["corrections"]).any()
    state, metrics = fns.step_fn(state, sharding.host_to_global(batch, mesh))  # epoch 1
    stored = np.asarray(state.method_state["corrections"]) > 0
    k = math.ceil(16 * NUM_CLASSES * 0.05)
    assert 0 < stored.sum() <= k and not stored[16:].any()
    assert not stored[:16][batch["labels"] != 0].any()  # only unobserved entries are corrected
    assert float(metrics["permanent_corrections"]) == stored.sum()
    # Kept: the next visit sees them as positives and adds at most k more.
    state, _ = fns.step_fn(state, sharding.host_to_global(batch, mesh))
    again = np.asarray(state.method_state["corrections"]) > 0
    assert (again >= stored).all() and again.sum() <= 2 * k
    # The released code's behaviour keeps no state.
    config.method_config.ll_cp_rule = "released_code"
    fns, _, _ = _fns(config)
    assert fns.state.method_state == {}


@pytest.mark.slow  # > 10 s on 2 cores; the fast loop stays under 5 minutes
def test_ll_cp_paper_rule_stores_exactly_the_entries_above_the_kth_largest_loss():
    """The exact stored corrections after one epoch-1 step, by hand: stored corrections read as
    positives; U = softplus(x) on the remaining unobserved entries (0 elsewhere); t = the k-th
    largest U over the B C entries, k = ceil(B C delta_rel); the table keeps its corrections and
    adds the unobserved entries with U > t."""
    from mlrpl_jax.methods import base

    config = tiny_config(method="ll_cp")
    config.method_config.delta_rel = 0.1
    fns, _, _ = _fns(config)
    method, state = methods.get("ll_cp"), fns.state
    batch = fake_batch(seed=6)
    labels, ids = batch["labels"], batch["example_id"]
    images = method.normalize_images(config, batch["image"])
    clock = base.make_clock(np.int32(1), 1)  # epoch 1
    logits, _ = loss_baselines._logits(fns.model, config, state.params, state.batch_stats, images,
                                       clock)  # fmt: skip
    x = np.asarray(logits, np.float64)
    # Corrections from an earlier epoch on the three unobserved entries of largest loss: read as
    # positives, they leave the ranking (read as unobserved, they would take three of the k).
    before = np.zeros(np.asarray(state.method_state["corrections"]).shape, np.float32)
    ranked = np.argsort(np.where(labels == 0, np.logaddexp(0.0, x), -np.inf), axis=None)[::-1]
    for flat in ranked[:3]:
        before[np.unravel_index(flat, labels.shape)] = 1.0
    seen = {"image": images, "labels": labels, "example_id": ids}
    table = example_table.encode(before, "uint8")
    _, out = method.loss_fn(fns.model, config, state.params, state.batch_stats,
                            {"corrections": table}, seen, None, clock)  # fmt: skip
    y = np.where(before[: len(ids)] > 0.5, 1, labels)
    u = np.where(y == 0, np.logaddexp(0.0, x), 0.0)
    k = math.ceil(y.size * 0.1)
    t = np.sort(u.ravel())[::-1][k - 1]
    expected = (before[: len(ids)] > 0.5) | ((u > t) & (y == 0))
    after = np.asarray(example_table.decode(out.method_state["corrections"])) > 0.5
    np.testing.assert_array_equal(after[: len(ids)], expected)
    # The diagnostics' pseudo positives: the stored and this step's corrections (U >= t).
    pseudo, active = out.diagnostics["ll_corrected"]
    treated = (before[: len(ids)] > 0.5) | ((u >= t) & (y == 0))
    np.testing.assert_array_equal(np.asarray(pseudo), labels + (labels == 0) * treated)
    assert bool(active)
    assert expected.sum() > 3  # new corrections were added
    assert not after[len(ids) :].any()


def _flat(tree):
    return {jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}  # fmt: skip


@pytest.mark.slow
def test_linear_init_trains_the_head_on_the_frozen_backbone_then_fine_tunes():
    """Cole et al.'s linear_init in one run: epoch 0 (the linear phase) moves the head (and ROLE's
    table) at the warm-up lr and leaves the backbone's weights and BatchNorm statistics untouched;
    epoch 1 fine-tunes everything, the backbone's Adam starting afresh (its first step is
    lr * sign(g), which an Adam advanced through the zero-gradient phase would not give). ROLE
    (AN-LS shares the code path; its table-free case is the head alone)."""
    config = tiny_config(method="role")
    config.method_config.expected_positives = 2.0
    config.method_config.linear_init_epochs = 1
    config.optim.warmup_epochs = 1.0
    config.optim.warmup_lr = 1e-3  # the linear phase's lr; the fine-tuning lr is 1e-2
    config.optim.weight_decay = 0.0
    config.train.num_epochs = 2
    config_validation.validate(config)
    fns, mesh, _ = _fns(config, steps_per_epoch=1, total=2)
    assert fns.state.params["backbone"]
    p0, s0 = _flat(fns.state.params), _flat(fns.state.batch_stats)
    state, _ = fns.step_fn(fns.state, sharding.host_to_global(fake_batch(seed=0), mesh))
    p1, s1 = _flat(state.params), _flat(state.batch_stats)
    for key, value in p0.items():
        if "'backbone'" in key:
            np.testing.assert_array_equal(p1[key], value, err_msg=key)
    for key, value in s0.items():
        np.testing.assert_array_equal(s1[key], value, err_msg=key)
    head = [k for k in p0 if "'head'" in k]
    assert head
    for key in head:  # Adam's first step: lr * sign(g), at the linear phase's lr
        np.testing.assert_allclose(np.abs(p1[key] - p0[key]), 1e-3, rtol=1e-2, err_msg=key)
    # ROLE's label table trains in the linear phase too, at x10.
    step = np.abs(p1["['method']['label_logits']"] - p0["['method']['label_logits']"])
    np.testing.assert_allclose(step[:16][step[:16] > 0], 1e-2, rtol=1e-2)
    state, _ = fns.step_fn(state, sharding.host_to_global(fake_batch(seed=1), mesh))
    p2, s2 = _flat(state.params), _flat(state.batch_stats)
    kernel = "['backbone']['conv1']['kernel']"
    step = np.abs(p2[kernel] - p1[kernel])
    assert (step > 0).mean() > 0.9
    np.testing.assert_allclose(step[step > 0], 1e-2, rtol=1e-2)
    assert any(not np.array_equal(s2[k], s1[k]) for k in s1)  # BatchNorm in training mode


def test_linear_init_phase_must_be_the_warm_up(tmp_path):
    config = tiny_run_config(tmp_path, "an_ls", **{"method_config.linear_init_epochs": 1})
    with pytest.raises(ValueError, match="warmup_epochs"):
        config_validation.validate(config)
    config.optim.warmup_epochs, config.optim.warmup_lr = 1.0, 1e-4
    config_validation.validate(config)
    config.method_config.linear_init_epochs = 2  # = num_epochs: nothing left to fine-tune
    config.optim.warmup_epochs = 2.0
    with pytest.raises(ValueError, match="no fine-tuning epoch"):
        config_validation.validate(config)


def test_largeloss_delta_rel_per_scheme():
    """The LargeLoss author's follow-up code: LL-R 0.5 %, LL-Ct 0.2 %, LL-Cp 0.1 % per epoch."""
    rates = {n: methods.get(n).default_config().delta_rel for n in ("ll_r", "ll_ct", "ll_cp")}
    assert rates == {"ll_r": 0.005, "ll_ct": 0.002, "ll_cp": 0.001}


def test_epr_and_role_require_the_expected_number_of_positives(tmp_path):
    config = tiny_run_config(tmp_path, "epr")
    with pytest.raises(ValueError, match="expected_positives"):
        config_validation.validate(config)
    config = tiny_run_config(tmp_path, "partial_bce", **{"method_config.reduction": "image"})
    with pytest.raises(ValueError, match="reduction"):
        config_validation.validate(config)


@pytest.mark.slow
@pytest.mark.mutation
def test_curriculum_rounds_label_confident_unknowns_once_and_keep_them():
    from mlrpl_jax.methods import curriculum

    config = tiny_config(method="cl")
    config.method_config.threshold = 0.51  # a random tiny model is never 95 % sure
    config.method_config.first_round = 2
    config.method_config.round_every = 2
    fns, mesh, _ = _fns(config)
    state = fns.state
    method = methods.get("cl")
    batch = fake_batch(seed=3)
    images = fns.normalize_fn(sharding.host_to_global(batch, mesh)["image"])

    def batches():
        yield {"image": images, "labels": batch["labels"], "example_id": batch["example_id"]}

    def decoded(method_state):
        return np.round(2 * np.asarray(example_table.decode(method_state["curriculum"])) - 1)

    table0 = decoded(state.method_state)
    assert not table0[:64].any()  # nothing given yet (0.5 -> 0); rows 64+ are never addressed
    args = (config, fns.model, state.params, state.batch_stats)
    assert method.refresh(*args, state.method_state, 1, batches) is state.method_state  # not due
    after = method.refresh(*args, state.method_state, 2, batches)
    given = decoded(after)
    logits = np.asarray(fns.eval_fns["raw"](state, sharding.host_to_global(batch, mesh)["image"]))
    p = 1 / (1 + np.exp(-logits))
    unknown = batch["labels"] == 0
    expected = np.where(p >= 0.51, 1, np.where(p <= 0.49, -1, 0)) * unknown
    np.testing.assert_array_equal(given[:16], expected)
    assert not given[16:64].any() and np.abs(expected).sum() > 0
    # Labels once given stay, whatever a later round predicts.
    negated = dict(state.params, head=jax.tree.map(lambda a: -a, state.params["head"]))
    again = method.refresh(config, fns.model, negated, state.batch_stats, after, 4, batches)
    np.testing.assert_array_equal(decoded(again)[:64], given[:64])
    # The loss trains on the completed labels.
    completed = curriculum.completed_labels(batch["labels"], given[:16].astype(np.int8))
    assert (np.asarray(completed)[unknown] == expected[unknown]).all()
