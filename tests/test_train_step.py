"""The generic train step: 8 simulated devices give the 1-device result; frozen params; no retrace."""

import chex
import jax
import numpy as np
import pytest
from helpers import fake_data_info

from configs import base
from mlrpl_jax import methods, sharding, trainer
from mlrpl_jax.models import resnet
from mlrpl_jax.train_state import split_params

NUM_CLASSES = 6


def tiny_config(frozen_stages: int = 0, optimizer: str = "adam", method: str = "plain"):
    config = base.get_config(method)
    config.model.feature_dim = 16
    config.model.attention_dim = 8
    config.optim.name = optimizer
    config.model.backbone = "resnet18"
    config.model.width = 8
    config.model.avg_pool_2x2 = False
    config.model.frozen_stages = frozen_stages
    config.data.size_factor = 48 / 448
    config.optim.learning_rate = 1e-2
    return config


def fake_batch(batch_size: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, size=(batch_size, 48, 48, 3), dtype=np.uint8),
        "labels": rng.choice([-1, 0, 1], size=(batch_size, NUM_CLASSES)).astype(np.int8),
        "example_id": np.arange(batch_size, dtype=np.int32),
        "full_labels": rng.integers(0, 2, size=(batch_size, NUM_CLASSES), dtype=np.uint8),
    }


def run_steps(config, devices, num_steps: int = 2):
    mesh = sharding.make_mesh(devices)
    _, state, _, step_fn, eval_fns, _ = trainer.make_train_fns(
        config, methods.get(config.method), fake_data_info(NUM_CLASSES), mesh, 10, 20
    )
    losses = []
    for i in range(num_steps):
        state, metrics = step_fn(state, sharding.host_to_global(fake_batch(seed=i), mesh))
        losses.append(float(metrics["loss"]))
    logits = eval_fns["raw"](state, sharding.host_to_global(fake_batch(seed=9), mesh)["image"])
    return jax.device_get(state), losses, np.asarray(logits)


@pytest.mark.slow  # ~5-8 s on 2 cores: the whole suite runs it, the fast loop stays under 5 min
def test_eight_devices_match_one_device():
    assert jax.device_count() == 8, "conftest must provide 8 simulated CPU devices"
    # SGD: Adam's first steps are ~lr * sign(g), which turns float-rounding differences of
    # near-zero gradients into lr-sized differences; SGD compares the gradients themselves.
    config = tiny_config(optimizer="sgd")
    state1, losses1, logits1 = run_steps(config, jax.devices()[:1])
    state8, losses8, logits8 = run_steps(config, jax.devices())
    np.testing.assert_allclose(losses1, losses8, rtol=1e-4, atol=1e-5)
    chex.assert_trees_all_close(state1.params, state8.params, rtol=1e-3, atol=1e-4)
    chex.assert_trees_all_close(state1.batch_stats, state8.batch_stats, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(logits1, logits8, rtol=1e-3, atol=1e-4)
    assert losses1[1] != losses1[0]  # the step did update the model
    assert int(state8.step) == 2


@pytest.mark.slow
@pytest.mark.mutation
def test_frozen_stages_get_no_update_and_no_optimizer_state():
    config = tiny_config(frozen_stages=2)  # stem + layer1 frozen
    mesh = sharding.make_mesh(jax.devices()[:1])
    _, state, _, step_fn, _, _ = trainer.make_train_fns(
        config, methods.get("plain"), fake_data_info(NUM_CLASSES), mesh, 10, 20
    )
    before = jax.device_get(state)
    after, _ = step_fn(state, sharding.host_to_global(fake_batch(), mesh))
    after = jax.device_get(after)
    for name in ("conv1", "bn1", "layer1"):
        chex.assert_trees_all_equal(before.params["backbone"][name], after.params["backbone"][name])
    for name in ("bn1", "layer1"):  # frozen BatchNorms run on their running statistics
        chex.assert_trees_all_equal(
            before.batch_stats["backbone"][name], after.batch_stats["backbone"][name]
        )
    assert not np.allclose(
        before.batch_stats["backbone"]["layer2"]["0"]["bn1"]["mean"],
        after.batch_stats["backbone"]["layer2"]["0"]["bn1"]["mean"],
    )
    assert not np.allclose(
        before.params["backbone"]["layer2"]["0"]["conv1"]["kernel"],
        after.params["backbone"]["layer2"]["0"]["conv1"]["kernel"],
    )
    # Optimiser state exists only for trainable leaves: count Adam's first moments.
    trainable, fixed = split_params(before.params, methods.get("plain").param_groups(config))
    mu = before.opt_state[1].mu
    assert jax.tree.structure(mu) == jax.tree.structure(trainable)
    assert "conv1" not in mu["backbone"] and "layer1" not in mu["backbone"]
    assert fixed["backbone"].keys() == {"conv1", "bn1", "layer1"}


@pytest.mark.parametrize("category_features", ["sd", "sa"])
@pytest.mark.slow
@pytest.mark.mutation
def test_ssgrl_step_trains_heads_and_layer4_only(category_features):
    """Reference recipe: stem + layer1-3 frozen (BN on running stats), embeddings and adjacency are
    frozen data; layer4 and every head parameter move."""
    config = tiny_config(frozen_stages=4, method="ssgrl")
    config.model.category_features = category_features
    mesh = sharding.make_mesh(jax.devices()[:1])
    info = fake_data_info(NUM_CLASSES)
    _, state, _, step_fn, _, _ = trainer.make_train_fns(
        config, methods.get("ssgrl"), info, mesh, 10, 20
    )
    before = jax.device_get(state)
    after, metrics = step_fn(state, sharding.host_to_global(fake_batch(), mesh))
    after = jax.device_get(after)
    head_b, head_a = before.params["head"], after.params["head"]
    np.testing.assert_array_equal(head_a["adjacency"], info.label_semantics().adjacency)
    np.testing.assert_array_equal(head_a["label_embeddings"], info.label_semantics().embeddings)
    for name in ("conv1", "layer1", "layer3"):
        chex.assert_trees_all_equal(before.params["backbone"][name], after.params["backbone"][name])
    moved = ["classifier", "gnn", "output", "reduce", category_features]
    for name in moved:
        leaves_b, leaves_a = jax.tree.leaves(head_b[name]), jax.tree.leaves(head_a[name])
        assert any(not np.allclose(x, y) for x, y in zip(leaves_b, leaves_a)), name
    assert not np.allclose(
        before.params["backbone"]["layer4"]["0"]["conv1"]["kernel"],
        after.params["backbone"]["layer4"]["0"]["conv1"]["kernel"],
    )
    mu = before.opt_state[1].mu
    assert "adjacency" not in mu["head"] and "label_embeddings" not in mu["head"]
    assert set(mu["backbone"]) == {"layer4"}
    assert ("cam_bce" in metrics) == (category_features == "sa")


@pytest.mark.slow
@pytest.mark.mutation
def test_step_compiles_once():
    config = tiny_config()
    mesh = sharding.make_mesh(jax.devices()[:1])
    _, state, _, step_fn, _, _ = trainer.make_train_fns(
        config, methods.get("plain"), fake_data_info(NUM_CLASSES), mesh, 10, 20
    )
    for i in range(3):
        state, _ = step_fn(state, sharding.host_to_global(fake_batch(seed=i), mesh))
    assert step_fn._cache_size() == 1


@pytest.mark.parametrize("bad", [12, 5])
def test_batch_not_divisible_by_devices_is_a_clear_error(bad):
    mesh = sharding.make_mesh()
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        sharding.local_batch_size(bad, mesh)


def write_fake_resnet18_weights(path: str, image_size: int = 48) -> dict:
    """Writes a random torchvision-layout ResNet-18 (width 8) state dict to `path` (.npz)."""
    model = resnet.RESNETS["resnet18"](width=8)
    abstract = jax.eval_shape(
        lambda k: model.init(k, np.zeros((1, image_size, image_size, 3), np.float32), train=False),
        jax.random.key(0),
    )
    rng = np.random.default_rng(0)
    weights = {}
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        shape = leaf.shape
        if key_path[-1].key == "kernel":  # Flax (kh, kw, in, out) -> torchvision (out, in, kh, kw)
            shape = (shape[3], shape[2], shape[0], shape[1])
        value = rng.standard_normal(shape).astype(np.float32)
        if key_path[-1].key == "var":
            value = np.abs(value) + 0.5
        weights[resnet.torchvision_name(key_path)] = value
    weights["fc.weight"] = np.zeros((1000, 64), np.float32)  # ignored, as in the reference
    np.savez(path, **weights)
    return weights


def test_backbone_weights_are_loaded_into_the_initial_state(tmp_path):
    """config.model.backbone_weights fills the backbone (torchvision names and layout, .npz)."""
    config = tiny_config(frozen_stages=2)
    path = str(tmp_path / "resnet18_w8.npz")
    weights = write_fake_resnet18_weights(path)
    config.model.backbone_weights = path
    mesh = sharding.make_mesh(jax.devices()[:1])
    _, state, _, _, _, _ = trainer.make_train_fns(
        config, methods.get("plain"), fake_data_info(NUM_CLASSES), mesh, 10, 20
    )
    state = jax.device_get(state)
    np.testing.assert_array_equal(
        state.params["backbone"]["layer2"]["0"]["conv1"]["kernel"],
        weights["layer2.0.conv1.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        state.batch_stats["backbone"]["bn1"]["var"], weights["bn1.running_var"]
    )
    config.model.backbone_weights = str(tmp_path / "missing.pth")
    with pytest.raises(FileNotFoundError, match="config.model.backbone_weights"):
        trainer.make_train_fns(
            config, methods.get("plain"), fake_data_info(NUM_CLASSES), mesh, 10, 20
        )
