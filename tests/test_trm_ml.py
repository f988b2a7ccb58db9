"""TRM-ML (`models.trm_ml`, `methods.trm_ml`): the memory bank, thresholds and pseudo labels,
KD and InfoNCE written out in numpy, the region features of eq. 4, the stage schedule, ablation
switches, the weighted pseudo labels (`pseudo_weight`), the stricter positive vote, the
full-label diagnostics, the recipe's top-k and a short training run on a tiny random CLIP
(wiring, not the method)."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import fake_data_info, tiny_run_config
from test_train_step import NUM_CLASSES, fake_batch

from configs import clip_synthetic
from mlrpl_jax import config_validation, methods, sharding, trainer
from mlrpl_jax.data import pipeline
from mlrpl_jax.data.tfds_builders import synthetic_scenes
from mlrpl_jax.methods import base, trm_ml
from mlrpl_jax.models import clip
from mlrpl_jax.models import trm_ml as trm_model

TINY = clip.ClipConfig(
    embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=8, image_size=32, context_length=24,
    vocab_size=len(clip.SYNTHETIC_WORDS) + 3, text_width=32, text_heads=1, text_layers=1,
    words=clip.SYNTHETIC_WORDS,
)  # fmt: skip
SMALL = {"method_config.clip_arch": "test_tiny", "method_config.n_ctx": 4,
         "method_config.ffn_dim": 64, "method_config.mlp_dim": 64,
         "method_config.bank_length": 8, "method_config.top_k": 2}  # fmt: skip


@pytest.fixture(autouse=True)
def tiny_preset(monkeypatch):
    monkeypatch.setitem(clip.PRESETS, "test_tiny", TINY)


def config_for(data_dir="/nonexistent", **overrides):
    return tiny_run_config(data_dir, "trm_ml", **{**SMALL, **overrides})


def data_info(num_classes=5):
    return fake_data_info(num_classes)._replace(
        class_names=synthetic_scenes.class_names(num_classes)
    )


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_bank_is_a_fifo_per_class_of_the_top_k_tokens_of_known_positives():
    rng = np.random.default_rng(0)
    b, c, t, e, length, k = 5, 3, 6, 4, 7, 2
    features = rng.normal(size=(b, t, e)).astype(np.float32)
    energies = rng.normal(size=(b, c, t)).astype(np.float32)
    labels = rng.integers(-1, 2, size=(b, c)).astype(np.int8)
    labels[:, 2] = 1  # class 2: 5 positives x 2 tokens = 10 > 7 entries: the last 7 kept
    state = {"bank": np.zeros((c, length, e), np.float32), "bank_ptr": np.array([0, 5, 3]),
             "bank_count": np.array([0, 7, 3])}  # fmt: skip
    bank, ptr, count = trm_ml.push_bank(
        {k_: jnp.asarray(v) for k_, v in state.items()}, jnp.asarray(features),
        jnp.asarray(energies), jnp.asarray(labels), k,
    )  # fmt: skip
    want, want_ptr, want_count = (
        state["bank"].copy(),
        state["bank_ptr"].copy(),
        state["bank_count"].copy(),
    )
    for i in range(b):  # the reference: push one entry at a time, in batch order
        for cls in range(c):
            if labels[i, cls] != 1:
                continue
            for j in np.argsort(-energies[i, cls], kind="stable")[:k]:
                want[cls, want_ptr[cls]] = features[i, j]
                want_ptr[cls] = (want_ptr[cls] + 1) % length
                want_count[cls] = min(want_count[cls] + 1, length)
    np.testing.assert_array_equal(bank, want)
    np.testing.assert_array_equal(ptr, want_ptr)
    np.testing.assert_array_equal(count, want_count)


def test_thresholds_votes_and_pseudo_labels_by_hand():
    rng = np.random.default_rng(1)
    b, c, e, length = 6, 4, 5, 3
    mc = config_for().method_config
    region = unit(rng.normal(size=(b, c, e))).astype(np.float32)
    bank = unit(rng.normal(size=(c, length, e))).astype(np.float32)
    text = unit(rng.normal(size=(c, e))).astype(np.float32)
    count = np.array([3, 2, 0, 3])
    labels = rng.integers(-1, 2, size=(b, c)).astype(np.int8)
    labels[:, 3] = 0  # class 3: nothing known in the batch: its thresholds stay
    theta = rng.uniform(-0.2, 0.2, size=(4, c)).astype(np.float32)
    theta_set = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 0]], bool)
    state = {"bank": bank, "bank_count": count, "text_prototypes": text,
             "has_text_prototypes": np.ones((), bool), "thresholds": theta,
             "thresholds_set": theta_set}  # fmt: skip
    pseudo, new_theta, new_set = trm_ml.pseudo_labels(
        mc, {k: jnp.asarray(v) for k, v in state.items()}, jnp.asarray(region), jnp.asarray(labels)
    )
    visual = np.zeros((b, c))
    for cls in range(c):
        if count[cls]:
            visual[:, cls] = (region[:, cls] @ bank[cls, : count[cls]].T).mean(axis=1)
    scores = [visual, np.einsum("bce,ce->bc", region, text)]
    ready = [count > 0, np.ones(c, bool)]
    want_theta, want_set, votes = theta.copy(), theta_set.copy(), []
    for p in range(2):
        for row, value in ((0, 1), (1, -1)):
            for cls in range(c):
                sel = labels[:, cls] == value
                if sel.any() and ready[p][cls]:
                    mean = scores[p][sel, cls].mean()
                    r = 2 * p + row
                    old = want_theta[r, cls]
                    ema = mc.ema * old + (1 - mc.ema) * mean
                    want_theta[r, cls] = ema if want_set[r, cls] else mean
                    want_set[r, cls] = True
        up = (scores[p] >= want_theta[2 * p]) & want_set[2 * p]
        down = (scores[p] <= want_theta[2 * p + 1]) & want_set[2 * p + 1]
        votes.append(np.where(up & ~down, 1, np.where(down & ~up, -1, 0)))
    want = np.where(votes[0] == votes[1], votes[0], 0) * (labels == 0)
    np.testing.assert_allclose(new_theta, want_theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_set, want_set)
    np.testing.assert_array_equal(pseudo, want)
    # Class 2 has an empty bank: no visual vote, so no pseudo label (both votes are needed).
    assert (np.asarray(pseudo)[:, 2] == 0).all()


def test_kd_is_kl_of_class_softmaxes_with_the_region_teacher():
    rng = np.random.default_rng(2)
    r, q = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    pr = np.exp(r) / np.exp(r).sum(1, keepdims=True)
    pq = np.exp(q) / np.exp(q).sum(1, keepdims=True)
    want = np.mean(np.sum(pr * np.log(pr / pq), axis=1))
    np.testing.assert_allclose(trm_ml.kd_loss(jnp.asarray(r), jnp.asarray(q)), want, rtol=1e-5)
    grads = jax.grad(lambda a: trm_ml.kd_loss(a, jnp.asarray(q)))(jnp.asarray(r))
    assert float(jnp.abs(grads).max()) == 0.0  # the teacher is under stop-gradient


def test_infonce_by_hand():
    rng = np.random.default_rng(3)
    b, c, e, length, tau = 4, 3, 6, 2, 0.07
    anchors = unit(rng.normal(size=(c, e)))
    projected = unit(rng.normal(size=(b, c, e)))
    bank = unit(rng.normal(size=(c, length, e)))
    valid = np.array([[1, 1], [1, 0], [0, 0]], bool)
    labels = np.array([[1, 0, 1], [-1, 1, 1], [1, -1, 0], [0, 0, -1]], np.int8)
    got = trm_ml.nce_loss(*(jnp.asarray(x) for x in (anchors, projected, bank, valid, labels)), tau)
    per_anchor = []
    for a in range(c):
        negatives = [projected[i, o] for i in range(b) for o in range(c)
                     if o != a and labels[i, o] == 1]  # fmt: skip
        positives = [projected[i, a] for i in range(b) if labels[i, a] == 1]
        positives += [bank[a, j] for j in range(length) if valid[a, j]]
        if not positives:
            continue
        neg = sum(math.exp(anchors[a] @ q / tau) for q in negatives)
        terms = [-math.log(math.exp(anchors[a] @ q / tau) / (math.exp(anchors[a] @ q / tau) + neg))
                 for q in positives]  # fmt: skip
        per_anchor.append(np.mean(terms))
    np.testing.assert_allclose(got, np.mean(per_anchor), rtol=1e-5)


@pytest.mark.slow  # ~13 s on 2 cores
def test_region_features_and_matching_follow_eq_4_and_5():
    config = config_for()
    model = trm_ml.make_model(config, data_info())
    images = jax.random.normal(jax.random.key(0), (2, 64, 64, 3))
    variables = model.init(jax.random.key(1), images)
    logits, aux = model.apply(variables, images)
    f, e = np.asarray(aux["tokens"]), np.asarray(aux["energies"])
    assert f.shape == (2, 4, 32) and e.shape == (2, 5, 4)  # 64 px on a width-8 CLIP: 2x2 tokens
    f_r = np.einsum("bct,bte->bce", 1 / (1 + np.exp(-e)), f)
    np.testing.assert_allclose(aux["region_features"], f_r, rtol=1e-5, atol=1e-6)
    g = np.asarray(aux["text_pos"])
    s = math.exp(float(variables["params"]["scale_t"]))
    np.testing.assert_allclose(aux["pos_logits"], s * np.sum(unit(f_r) * g, -1), rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(logits, aux["pos_logits"] - aux["neg_logits"], rtol=1e-6)
    # The contrastive MLP sees f^r at unit norm, the scale of the unit-norm bank tokens.
    project = lambda x: model.apply(variables, jnp.asarray(x), method=trm_model.TRMML.project)
    np.testing.assert_allclose(aux["projected"], project(unit(f_r)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(aux["projected"], project(unit(3.0 * f_r)), rtol=1e-5, atol=1e-6)
    pe = trm_model.sine_positional_embedding(3, 4, 8)
    assert pe.shape == (12, 8) and np.all(np.abs(pe) <= 1)
    assert not np.allclose(pe[0], pe[1]) and not np.allclose(pe[0], pe[4])


@pytest.mark.slow  # > 9 s on 2 cores; the fast loop stays under 5 minutes
def test_stage_two_freezes_text_prototypes_and_turns_pseudo_labels_on():
    config = config_for(**{"method_config.stage2_epoch": 1, "train.batch_size": 16})
    info = data_info(NUM_CLASSES)
    mesh = sharding.make_mesh()
    fns = trainer.make_train_fns(config, methods.get("trm_ml"), info, mesh, 2, 8)
    state = fns.state
    assert not bool(state.method_state["has_text_prototypes"])
    method = methods.get("trm_ml")
    same = method.refresh(config, fns.model, state.params, state.batch_stats,
                          state.method_state, 0, None)  # fmt: skip
    assert same is state.method_state  # stage 1: nothing
    for step in range(2):
        state, metrics = fns.step_fn(state, sharding.host_to_global(fake_batch(seed=step), mesh))
    assert int(state.method_state["bank_count"].sum()) > 0
    assert float(metrics["pseudo_positive"]) + float(metrics["pseudo_negative"]) == 0  # stage 1
    new = method.refresh(config, fns.model, state.params, state.batch_stats,
                         state.method_state, 1, None)  # fmt: skip
    assert bool(new["has_text_prototypes"])
    g_pos, _ = fns.model.apply({"params": state.params, "batch_stats": state.batch_stats},
                               method=lambda m: m.prompts.text_features())  # fmt: skip
    np.testing.assert_allclose(new["text_prototypes"], g_pos, rtol=1e-6)
    again = method.refresh(config, fns.model, state.params, state.batch_stats, new, 2, None)
    assert again is new  # frozen once


@pytest.mark.slow
@pytest.mark.mutation
def test_switches_and_bad_values_are_checked():
    for overrides, match in (
        ({"method_config.use_carl": False}, "use_carl"),
        ({"method_config.use_text_prototype": False,
          "method_config.use_visual_prototype": False}, "use_mmcp"),
        ({"method_config.ema": 1.0}, "ema"), ({"method_config.top_k": 0}, "top_k"),
        ({"method_config.pseudo_weight": -0.5}, "pseudo_weight"),
        ({"method_config.positive_margin": -1.0}, "positive_margin"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            config_validation.validate(config_for(**overrides))
    baseline = config_for(
        **{f"method_config.use_{s}": False for s in ("carl", "kd", "mmcp", "mmcl")}
    )
    config_validation.validate(baseline)
    model = trm_ml.make_model(baseline, data_info())
    images = jnp.zeros((1, 32, 32, 3))
    variables = model.init(jax.random.key(0), images)
    assert "queries" not in variables["params"] and "spatial_t" in variables["params"]


@pytest.mark.slow  # > 9 s on 2 cores; the fast loop stays under 5 minutes
def test_bank_prototypes_and_thresholds_survive_a_checkpoint_round_trip(tmp_path):

    from mlrpl_jax import checkpointing

    config = config_for(**{"method_config.stage2_epoch": 0, "train.batch_size": 16})
    mesh = sharding.make_mesh()
    method = methods.get("trm_ml")
    fns = trainer.make_train_fns(config, method, data_info(NUM_CLASSES), mesh, 2, 8)
    state = fns.state
    state = state.replace(method_state=method.refresh(
        config, fns.model, state.params, state.batch_stats, state.method_state, 0, None))  # fmt: skip
    for step in range(3):
        state, _ = fns.step_fn(state, sharding.host_to_global(fake_batch(seed=step), mesh))
    ms = jax.device_get(state.method_state)
    assert ms["has_text_prototypes"] and ms["bank_count"].sum() > 0 and ms["thresholds_set"].any()
    ckpt = checkpointing.Checkpointer(str(tmp_path), max_to_keep=1, keep_best=False)
    ckpt.save(state)
    restored, step = ckpt.restore_state(fns.state, which="latest")
    ckpt.close()
    assert step == 3
    for key, value in ms.items():
        got = jax.device_get(restored.method_state[key])
        assert got.dtype == value.dtype and got.shape == value.shape, key
        np.testing.assert_array_equal(got, value, err_msg=key)


def numpy_asl(p, targets, weights, b):
    """Eq. 14 as the author framework reduces it: -sum of w (1 - p) log p over the positive
    targets and w p_m^2 log(1 - p_m) over the negative ones (p_m = max(p - 0.05, 0)), / B."""
    p_m = np.maximum(p - 0.05, 0.0)
    pos = -(1 - p) * np.log(np.maximum(p, 1e-8))
    neg = -(p_m**2) * np.log(np.maximum(1 - p_m, 1e-8))
    return np.sum(weights * np.where(targets == 1, pos, np.where(targets == -1, neg, 0.0))) / b


@pytest.mark.parametrize("weight", [0.0, 0.3, 1.0])
def test_pseudo_labelled_entries_carry_pseudo_weight_in_asl(weight):
    rng = np.random.default_rng(4)
    b, c = 5, 4
    pos, neg = rng.normal(size=(2, b, c)).astype(np.float32)
    labels = rng.integers(-1, 2, size=(b, c)).astype(np.int8)
    pseudo = np.where(labels == 0, rng.integers(-1, 2, size=(b, c)), 0).astype(np.int8)
    assert (pseudo != 0).sum() >= 3
    mc = config_for(**{"method_config.pseudo_weight": weight}).method_config
    got = trm_ml.cls_loss(mc, *(jnp.asarray(x) for x in (pos, neg, labels, pseudo)))
    p = 1 / (1 + np.exp(-(pos.astype(np.float64) - neg)))
    targets = np.where(labels == 0, pseudo, labels)
    want = numpy_asl(p, targets, np.where(labels == 0, weight, 1.0), b)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def primed_state(config, info, e):
    """A stage-2 method state whose votes are decided: classes 0-2 vote +1 on both prototypes
    (theta+ far below every cosine, theta- below it), classes 3-5 vote -1 (theta- far above);
    the EMA of one batch (eta 0.9) cannot move the thresholds across [-1, 1]."""
    rng = np.random.default_rng(5)
    state = trm_ml.init_state(config, info, jax.random.key(0))
    c, length = state["bank"].shape[:2]
    up = np.arange(c) < 3
    state.update(
        bank=unit(rng.normal(size=(c, length, e))).astype(np.float32),
        bank_ptr=np.zeros((c,), np.int32), bank_count=np.full((c,), length, np.int32),
        thresholds=np.stack([np.where(up, -20.0, 20.0), np.where(up, -30.0, 20.0)] * 2
                            ).astype(np.float32),
        thresholds_set=np.ones((4, c), bool),
        text_prototypes=unit(rng.normal(size=(c, e))).astype(np.float32),
        has_text_prototypes=np.ones((), bool),
    )  # fmt: skip
    return {k: jnp.asarray(v) for k, v in state.items()}


@pytest.mark.slow  # > 9 s on 2 cores (three compiled gradients); the fast loop stays under 5 min
def test_pseudo_weight_zero_is_exactly_no_mmcp_while_prototypes_update():
    common = {"method_config.stage2_epoch": 0, "method_config.ffn_dim": 32}
    configs = {
        "w0": config_for(**common, **{"method_config.pseudo_weight": 0.0}),
        "w1": config_for(**common),
        "off": config_for(**common, **{"method_config.use_mmcp": False}),
    }
    info = data_info(NUM_CLASSES)
    model = trm_ml.make_model(configs["w0"], info)
    images = jax.random.normal(jax.random.key(2), (8, 64, 64, 3))
    variables = model.init(jax.random.key(3), images)
    state = primed_state(configs["w0"], info, TINY.embed_dim)
    labels = jnp.asarray(fake_batch(8, seed=6)["labels"])
    batch = {"image": images, "labels": labels, "example_id": jnp.arange(8)}
    clock = base.make_clock(jnp.asarray(5), 4)  # epoch 1: stage 2
    stats = variables.get("batch_stats", {})

    def grad_of(config):
        @jax.jit
        def run(params):
            return jax.value_and_grad(
                lambda p: trm_ml.loss_fn(model, config, p, stats, state, batch, jax.random.key(7),
                                         clock), has_aux=True)(params)  # fmt: skip

        return run(variables["params"])

    (loss0, out0), grads0 = grad_of(configs["w0"])
    (loss1, out1), _ = grad_of(configs["w1"])
    (loss_off, _), grads_off = grad_of(configs["off"])
    assert float(loss0) == float(loss_off)
    jax.tree.map(np.testing.assert_array_equal, grads0, grads_off)
    # The pseudo labels exist (both signs) and change the loss at full weight ...
    assert float(out0.metrics["pseudo_positive"]) > 0 and float(out0.metrics["pseudo_negative"]) > 0
    assert float(loss1) != float(loss0)
    # ... and the thresholds and the bank update exactly as with full-weight pseudo labels.
    new0, new1 = out0.method_state, out1.method_state
    for key in ("thresholds", "thresholds_set", "bank", "bank_ptr", "bank_count"):
        np.testing.assert_array_equal(new0[key], new1[key], err_msg=key)
    assert not np.array_equal(new0["thresholds"], state["thresholds"])
    assert not np.array_equal(new0["bank"], state["bank"])
    np.testing.assert_array_equal(out0.diagnostics["pseudo"][0], out1.diagnostics["pseudo"][0])


def test_stricter_positive_vote_needs_a_margin_of_the_gap():
    scores = jnp.asarray([[0.05, 0.1, 0.3, 0.55, 0.8]])
    theta = jnp.asarray([[0.5], [0.1]])  # theta+ 0.5, theta- 0.1: gap 0.4
    both = jnp.ones((2, 1), bool)
    np.testing.assert_array_equal(trm_ml._vote(scores, theta, both), [[-1, -1, 0, 1, 1]])
    # margin 0.5: +1 needs s >= 0.5 + 0.5 * 0.4 = 0.7; the negative vote is unchanged
    np.testing.assert_array_equal(trm_ml._vote(scores, theta, both, 0.5), [[-1, -1, 0, 0, 1]])
    # theta- unset: no gap, no margin
    up_only = jnp.asarray([[True], [False]])
    np.testing.assert_array_equal(trm_ml._vote(scores, theta, up_only, 0.5), [[0, 0, 0, 1, 1]])


def test_diagnostics_equal_numpy_counts_on_a_hand_made_batch():
    labels = np.array([[1, 0, 0, -1, 0],
                       [0, 0, 1, 0, 0],
                       [-1, 0, 0, 0, 1]], np.int8)  # fmt: skip
    pseudo = np.array([[0, 1, -1, 0, 1],
                       [1, -1, 0, 0, -1],
                       [0, 1, 0, -1, 0]], np.int8)  # fmt: skip
    full = np.array([[1, 1, 0, 0, 0],
                     [1, 1, 1, 0, 0],
                     [0, 0, 0, 1, 1]], np.uint8)  # fmt: skip
    targets = np.where(labels == 0, pseudo, labels)
    config = config_for()
    diag = {"pseudo": (jnp.asarray(targets), jnp.bool_(True))}
    got = trm_ml.diagnostics(config, diag, jnp.asarray(labels), jnp.asarray(full))
    unknown = labels == 0
    # By hand: 4 pseudo positives (2 right), 4 pseudo negatives (2 right), 4 unknown true
    # positives, 6 unknown true negatives, 3 known positives: 7 positive targets, 2 wrong.
    want = {
        "pseudo_precision": (2, 4), "pseudo_recall": (2, 4),
        "pseudo_negative_precision": (2, 4), "pseudo_negative_recall": (2, 6),
        "positive_targets_pseudo": (4, 7), "positive_targets_wrong": (2, 7),
    }  # fmt: skip
    counted = {
        "pseudo_negative_precision": (np.sum(unknown & (pseudo == -1) & (full == 0)),
                                      np.sum(unknown & (pseudo == -1))),
        "pseudo_negative_recall": (np.sum(unknown & (pseudo == -1) & (full == 0)),
                                   np.sum(unknown & (full == 0))),
        "positive_targets_pseudo": (np.sum(unknown & (pseudo == 1)), np.sum(targets == 1)),
        "positive_targets_wrong": (np.sum((targets == 1) & (full == 0)), np.sum(targets == 1)),
    }  # fmt: skip
    for name, (num, den) in want.items():
        assert (float(got[f"{name}/num"]), float(got[f"{name}/den"])) == (num, den), name
        if name in counted:
            assert counted[name] == (num, den), name
    off = trm_ml.diagnostics(config, {"pseudo": (jnp.asarray(targets), jnp.bool_(False))},
                             jnp.asarray(labels), jnp.asarray(full))  # fmt: skip
    assert all(float(v) == 0.0 for v in off.values())  # stage 1: nothing counted


def test_recipe_top_k_is_two_percent_of_the_clip_token_grid():
    config = clip_synthetic.get_config("trm_ml")
    preset = clip.PRESETS[config.method_config.clip_arch]
    assert pipeline.image_size(config.data) == preset.image_size  # tokens on the preset's grid
    tokens = preset.grid**2
    assert tokens == 9  # 96 px / stride 32: 3 x 3
    assert config.method_config.top_k == 1  # 2 % of 9 tokens is 0.18: at least 1
    assert trm_ml.top_k_for_tokens(14 * 14) == 4  # the paper's 448 px grid: the notes' k = 4
    for t in (7 * 7, 28 * 28, 32 * 32):
        k = trm_ml.top_k_for_tokens(t)
        assert k >= 1 and abs(k - 0.02 * t) <= 0.5 + 0.0005 * t, (t, k)


def test_recipe_holds_the_validation_choice():
    """`recipes.synthetic_clip` carries the stage-2 epoch and pseudo weight that
    scripts/calibrate_clip.py chose on the validation split (copied by hand)."""
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "results",
                        "clip_calibration.json")  # fmt: skip
    with open(path) as f:
        chosen = json.load(f)["chosen"]
    mc = clip_synthetic.get_config("trm_ml").method_config
    assert (mc.stage2_epoch, mc.pseudo_weight) == (chosen["stage2_epoch"], chosen["pseudo_weight"])
    assert (mc.use_mmcp, mc.positive_margin) == (True, 0.0)  # MMCP on, eq. 10-11's vote
