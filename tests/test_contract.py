"""The method contract v2 through the trainer: what a method sees, no retrace across activation
epochs (every method), weight EMA (update rule, evaluation, checkpoint round trip), `evaluate`
without the pretrained-weight file, and the validation/selection config rules."""

import json
import os

import jax
import numpy as np
import pytest
from helpers import fake_data_info, restore_latest, tiny_run_config
from test_train_step import NUM_CLASSES, fake_batch, tiny_config, write_fake_resnet18_weights

from mlrpl_jax import config_validation, evaluate, methods, sharding, trainer
from mlrpl_jax.data.tfds_builders import synthetic_scenes
from mlrpl_jax.methods import base
from mlrpl_jax.models import clip


@pytest.mark.slow
def test_loss_fn_never_sees_the_full_labels_only_diagnostics_do():
    plain = methods.get("plain")
    seen = {}

    def loss_fn(model, config, params, batch_stats, method_state, batch, rng, clock):
        seen["loss_keys"] = set(batch)
        seen["image_dtype"] = batch["image"].dtype
        loss, out = plain.loss_fn(
            model, config, params, batch_stats, method_state, batch, rng, clock
        )
        return loss, out._replace(diagnostics={"labels_used": batch["labels"]})

    def diagnostics(config, diag, labels, full_labels):
        seen["diag_full_shape"] = full_labels.shape
        agree = (diag["labels_used"] == 1) == (full_labels == 1)
        return {"diag_agreement": agree.mean()}

    method = plain._replace(loss_fn=loss_fn, diagnostics=diagnostics)
    mesh = sharding.make_mesh(jax.devices()[:1])
    fns = trainer.make_train_fns(tiny_config(), method, fake_data_info(NUM_CLASSES), mesh, 10, 20)
    _, metrics = fns.step_fn(fns.state, sharding.host_to_global(fake_batch(), mesh))
    assert seen["loss_keys"] == {"image", "labels", "example_id"}
    assert seen["image_dtype"] == np.float32  # normalised by the method's normalize_images
    assert seen["diag_full_shape"] == (16, NUM_CLASSES)
    assert 0.0 <= float(metrics["diag_agreement"]) <= 1.0


SMALL = {"model.feature_dim": 16, "model.attention_dim": 8}
ACTIVATION = {
    "sst": {"generate_label_epoch": 1, "bank_size": 4, "ist_hidden_dim": 8, "ist_pair_dim": 12},
    "hst": {"generate_label_epoch": 1, "prototype_every_epochs": 1, "ist_hidden_dim": 8,
            "ist_pair_dim": 12},
    "hst_fb": {"generate_label_epoch": 1, "prototype_every_epochs": 1, "ist_hidden_dim": 8,
               "ist_pair_dim": 12},
    "sarb": {"blend_epoch": 1},
    "dsrb": {"blend_epoch": 1},
    "epr": {"expected_positives": 2.0},
    "role": {"expected_positives": 2.0},
    "splc": {"change_epoch": 1},
    "ll_r": {"delta_rel": 0.1},
    "ll_ct": {"delta_rel": 0.1},
    "ll_cp": {"delta_rel": 0.1},
    "cl": {"first_round": 1, "round_every": 1},
    # The CLIP methods on a tiny CLIP of the synthetic words (class names: `synthetic_names`).
    "dualcoop": {"clip_arch": "test_tiny", "n_ctx": 4},
    "clip_pretrain": {"clip_arch": "test_tiny"},
    "trm_ml": {"clip_arch": "test_tiny", "n_ctx": 4, "stage2_epoch": 1, "ffn_dim": 32,
               "mlp_dim": 32, "bank_length": 4, "top_k": 1},
}  # fmt: skip
TINY_CLIP = clip.ClipConfig(
    embed_dim=32, vision_layers=(1, 1, 1, 1), vision_width=8, image_size=32, context_length=32,
    vocab_size=len(clip.SYNTHETIC_WORDS) + 3, text_width=32, text_heads=1, text_layers=1,
    words=clip.SYNTHETIC_WORDS,
)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_step_compiles_once_across_activation_epochs(name, monkeypatch):
    """One compiled step for the whole run: the epoch gates (pseudo labels, blending, delayed
    optimisers) are traced values, so crossing an activation epoch never retraces."""
    monkeypatch.setitem(clip.PRESETS, "test_tiny", TINY_CLIP)
    config = tiny_config(frozen_stages=4, method=name)
    for key, value in {
        **SMALL,
        **{f"method_config.{k}": v for k, v in ACTIVATION.get(name, {}).items()},
    }.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    method = methods.get(name)
    mesh = sharding.make_mesh(jax.devices()[:1])
    info = fake_data_info(NUM_CLASSES)._replace(
        class_names=synthetic_scenes.class_names(NUM_CLASSES)  # words of the tiny CLIP
    )
    fns = trainer.make_train_fns(config, method, info, mesh, 1, 3)
    state = fns.state
    for i in range(3):  # epochs 0, 1, 2 (steps_per_epoch = 1): before and after activation
        state, metrics = fns.step_fn(state, sharding.host_to_global(fake_batch(seed=i), mesh))
        assert np.isfinite(float(metrics["loss"]))
    assert fns.step_fn._cache_size() == 1


@pytest.mark.slow
def test_ema_update_rule_and_eval_weights():
    config = tiny_config()
    config.train.ema_decay = 0.75
    mesh = sharding.make_mesh(jax.devices()[:1])
    fns = trainer.make_train_fns(
        config, methods.get("plain"), fake_data_info(NUM_CLASSES), mesh, 10, 20
    )
    before = jax.device_get(fns.state)
    jax.tree.map(np.testing.assert_array_equal, before.ema["params"], before.params)
    after, _ = fns.step_fn(fns.state, sharding.host_to_global(fake_batch(), mesh))
    after = jax.device_get(after)
    expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, before.params, after.params)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
        after.ema["params"], expected,
    )  # fmt: skip
    images = sharding.host_to_global(fake_batch(seed=3), mesh)["image"]
    state = jax.device_put(after, fns.state_sharding)
    raw, ema = (np.asarray(fns.eval_fns[k](state, images)) for k in ("raw", "ema"))
    assert not np.allclose(raw, ema)


@pytest.mark.slow
def test_ema_is_evaluated_logged_and_checkpointed(tmp_path):
    config = tiny_run_config(tmp_path / "tfds", **{"train.ema_decay": 0.5})
    workdir = str(tmp_path / "work")
    trainer.run(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    last = [r for r in records if "eval/synthetic_scenes/test/ema/mAP" in r][-1]
    assert "eval/synthetic_scenes/val/ema/mAP" in last
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    assert set(results["all_metrics"]) == {"test", "test/ema", "val", "val/ema"}
    assert results["selection"]["best_checkpoint_source"] in ("val", "val/ema")
    # Round trip: the restored EMA weights give the logged EMA test mAP.
    exp, state = restore_latest(config, workdir)
    scores, _, _ = trainer.evaluate(exp, state, "test", "ema")
    assert scores["mAP"] == pytest.approx(last["eval/synthetic_scenes/test/ema/mAP"], abs=1e-6)
    assert scores["mAP"] == pytest.approx(results["all_metrics"]["test/ema"]["mAP"], abs=1e-6)
    evaluate.evaluate_workdir(config, workdir, "latest")  # the CLI reports both weights
    with open(os.path.join(workdir, "eval_latest.json")) as f:
        written = json.load(f)
    assert written["ema_metrics"]["mAP"] == pytest.approx(scores["mAP"], abs=1e-6)


@pytest.mark.slow
def test_evaluate_works_without_the_pretrained_weight_file(tmp_path):
    weights = str(tmp_path / "resnet18_w8.npz")
    write_fake_resnet18_weights(weights, image_size=32)
    config = tiny_run_config(
        tmp_path / "tfds",
        **{"model.backbone_weights": weights, "model.frozen_stages": 2, "train.num_epochs": 1},
    )
    workdir = str(tmp_path / "work")
    final = trainer.run(config, workdir)
    os.remove(weights)
    with pytest.raises(FileNotFoundError, match="backbone_weights"):
        trainer.setup(config)  # a new run would need the file ...
    again = evaluate.evaluate_workdir(config, workdir, "latest")  # ... evaluation does not
    assert again["mAP"] == pytest.approx(final["mAP"], abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"data.val_split": None, "data.val_fraction": 0.0},
            r"train.select_on='val'.*no validation",
        ),
        ({"data.val_fraction": 0.2}, r"data.val_fraction=0.2.*exclude each other"),
        ({"data.val_labels": "some"}, r"data.val_labels='some'"),
        ({"train.ema_decay": 1.0}, r"train.ema_decay=1.0"),
    ],
)
def test_selection_config_errors_name_key_and_rule(overrides, message, tmp_path):
    config = tiny_run_config(tmp_path / "tfds", **overrides)
    with pytest.raises(ValueError, match=message):
        config_validation.validate(config)


def test_method_keys_are_validated_before_any_data_is_opened(tmp_path):
    config = tiny_run_config(tmp_path / "no_data_here", method="sst")
    config.method_config.threshold_rule = "sometimes"
    with pytest.raises(ValueError, match=r"threshold_rule='sometimes'.*\('reference', 'paper'\)"):
        trainer.setup(config)
    assert not os.path.exists(tmp_path / "no_data_here")  # nothing was prepared or read


def test_val_carve_out_is_seeded_disjoint_and_renumbered(tmp_path):
    from mlrpl_jax.data import pipeline

    config = tiny_run_config(
        tmp_path / "tfds", **{"data.val_split": None, "data.val_fraction": 0.25}
    )
    splits = pipeline.make_splits(config.data)
    assert (len(splits.train), len(splits.val)) == (48, 16)
    train_idx, val_idx = splits.train.indices, splits.val.indices
    assert not set(train_idx) & set(val_idx) and len(set(train_idx) | set(val_idx)) == 64
    perm = np.random.default_rng(1200).permutation(64)
    np.testing.assert_array_equal(val_idx, np.sort(perm[:16]))
    record = splits.train[3]
    assert int(record["example_id"]) == 3
    np.testing.assert_array_equal(record["labels"], splits.train.base[int(train_idx[3])]["labels"])
    np.testing.assert_array_equal(
        splits.val.labels_matrix(), splits.train.base.labels_matrix()[val_idx]
    )


def test_method_defaults_are_the_documented_ones():
    m = methods.get("plain")
    assert m.normalize_images is base.default_normalize
    assert m.load_pretrained is base.load_backbone_weights
    assert m.init_params(None, None) == {} and m.state_sharding(None) == ()


def test_kmeans_feature_buffer_is_split_over_the_devices():
    """A refresh's K-means buffer (C, M, D) is not replicated: its points are split over the mesh
    (the trainer runs `refresh` under the mesh)."""
    import jax.numpy as jnp

    from mlrpl_jax.methods import prototypes

    with jax.set_mesh(sharding.make_mesh()):
        buffer = prototypes._points_sharded(jnp.zeros((3, 16, 4)))
        odd = prototypes._points_sharded(jnp.zeros((3, 5, 4)))  # 5 points: left replicated
    assert {s.data.shape for s in buffer.addressable_shards} == {(3, 2, 4)}
    assert odd.shape == (3, 5, 4)
