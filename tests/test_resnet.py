"""Tests for mlrpl_jax.models.resnet: torchvision sizes and names, padding, frozen stages."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlrpl_jax.models import resnet

# torchvision ImageNet models: total parameter count (incl. fc) and fc input width.
_TORCHVISION_SIZES = {
    "resnet18": (11_689_512, 512),
    "resnet34": (21_797_672, 512),
    "resnet50": (25_557_032, 2048),
    "resnet101": (44_549_160, 2048),
}


def _abstract_variables(model: nn.Module, size: int = 64) -> dict:
    """Shapes of the model's variables, without materialising them."""
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    return jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))


def _paths(tree: dict) -> list[tuple[str, ...]]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [tuple(k.key for k in path) for path, _ in leaves]


def _numpy_variables(model: nn.Module, x: jax.Array, seed: int = 0) -> dict:
    """Random variables of the model's shapes, drawn with numpy.

    Jitted Flax init compiles one threefry generator per parameter, which costs seconds each on
    a 2-core CPU; tests that only need some weights draw them here instead. BatchNorm statistics
    and affine parameters are non-trivial so that they matter.
    """
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))

    def draw(path, leaf):
        name, shape = path[-1].key, leaf.shape
        if name == "kernel":
            value = rng.normal(size=shape) * np.sqrt(2.0 / (np.prod(shape[:-2]) * shape[-1]))
        elif name in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, size=shape)
        else:  # bias, mean
            value = rng.normal(size=shape) * 0.1
        return jnp.asarray(value, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _tiny(**kwargs) -> resnet.ResNet:
    """A one-block-per-stage basic ResNet: every code path of ResNet-18, compiled quickly."""
    return resnet.ResNet(stage_sizes=(1, 1, 1, 1), block="basic", **kwargs)


@pytest.mark.parametrize("name", sorted(_TORCHVISION_SIZES))
def test_parameter_count_matches_torchvision(name):
    variables = _abstract_variables(resnet.RESNETS[name]())
    ours = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))
    total, fc_in = _TORCHVISION_SIZES[name]
    assert ours + fc_in * 1000 + 1000 == total


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_names_unique_and_well_formed(name):
    variables = _abstract_variables(resnet.RESNETS[name]())
    names = [resnet.torchvision_name(p) for p in _paths(variables)]
    assert len(names) == len(set(names))
    for key in names:
        parts = key.split(".")
        assert parts[0] in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
        assert parts[-1] in ("weight", "bias", "running_mean", "running_var")
        if parts[0].startswith("layer"):
            assert parts[1].isdigit()
    names = set(names)
    for key in ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        assert key in names
    assert "conv1.bias" not in names
    if name == "resnet50":
        assert "layer4.2.conv3.weight" in names
        assert "layer1.0.downsample.0.weight" in names
        assert "layer3.5.bn3.running_var" in names
        # torchvision's 320 keys less fc (2) and num_batches_tracked (53, one per BN).
        assert len(names) == 320 - 2 - 53
    else:
        assert "layer1.0.downsample.0.weight" not in names
        assert "layer2.0.downsample.1.running_var" in names
        assert "layer4.1.conv2.weight" in names
        assert not any(".conv3." in k for k in names)
        assert len(names) == 122 - 2 - 20  # torchvision: 122 keys, 20 BNs


def test_torchvision_name_examples():
    assert resnet.torchvision_name(("layer1", "0", "conv1", "kernel")) == "layer1.0.conv1.weight"
    assert resnet.torchvision_name(("bn1", "scale")) == "bn1.weight"
    assert resnet.torchvision_name(("params", "bn1", "bias")) == "bn1.bias"
    assert resnet.torchvision_name(("batch_stats", "bn1", "mean")) == "bn1.running_mean"
    assert resnet.torchvision_name(("bn1", "var")) == "bn1.running_var"
    path = ("layer2", "0", "downsample", "1", "var")
    assert resnet.torchvision_name(path) == "layer2.0.downsample.1.running_var"
    with pytest.raises(ValueError):
        resnet.torchvision_name(("bn1", "num_batches_tracked"))


def test_kernel_layout_is_flax():
    variables = _abstract_variables(resnet.ResNet50())
    assert variables["params"]["conv1"]["kernel"].shape == (7, 7, 3, 64)
    down = variables["params"]["layer2"]["0"]["downsample"]
    assert down["0"]["kernel"].shape == (1, 1, 256, 512)
    assert variables["batch_stats"]["layer2"]["0"]["downsample"]["1"]["var"].shape == (512,)


@pytest.mark.parametrize(
    "ctor, width, size, avg_pool, expected_hw",
    [
        (resnet.ResNet18, 16, 96, False, 3),
        (resnet.ResNet18, 16, 128, True, 2),
        (resnet.ResNet50, 8, 64, False, 2),
        (resnet.ResNet18, 8, 33, False, 2),  # odd size: 17 -> 9 -> 9 -> 5 -> 3 -> 2
    ],
)
def test_output_shape(ctor, width, size, avg_pool, expected_hw):
    model = ctor(width=width, avg_pool_2x2=avg_pool)
    x = jnp.zeros((2, size, size, 3))

    def forward(key):
        return model.apply(model.init(key, x, train=False), x, train=False)

    y = jax.eval_shape(forward, jax.random.key(0))
    assert y.shape == (2, expected_hw, expected_hw, model.out_features)
    expansion = 4 if model.block == "bottleneck" else 1
    assert model.out_features == 512 * expansion * width // 64


def test_dtype_bfloat16_keeps_float32_params():
    model = resnet.ResNet18(width=8, dtype=jnp.bfloat16)
    x = jnp.ones((2, 32, 32, 3))

    def init_and_train(key):
        variables = model.init(key, x, train=False)
        y, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
        return variables, y, updates

    variables, y, updates = jax.eval_shape(init_and_train, jax.random.key(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables["params"]))
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates["batch_stats"]))
    assert y.dtype == jnp.bfloat16


def test_conv_kernel_init_is_kaiming_fan_out():
    kernel = np.asarray(resnet.conv_kernel_init(jax.random.key(0), (3, 3, 32, 64)))
    assert kernel.shape == (3, 3, 32, 64)
    assert abs(kernel.mean()) < 0.01
    np.testing.assert_allclose(kernel.std(), np.sqrt(2.0 / (3 * 3 * 64)), rtol=0.03)


def _np_max_pool_3x3_s2(x: np.ndarray) -> np.ndarray:
    """Reference max pool: pad 1 with -inf on every side, 3x3 window, stride 2."""
    b, h, w, d = x.shape
    padded = np.full((b, h + 2, w + 2, d), -np.inf, dtype=x.dtype)
    padded[:, 1:-1, 1:-1] = x
    oh, ow = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    out = np.empty((b, oh, ow, d), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(1, 2))
    return out


def _layer1_inputs(fn) -> list[jax.Array]:
    """Calls ``fn()``, which applies a ResNet, and returns the inputs of layer1 (stem outputs)."""
    captured = []

    def interceptor(next_fun, args, kwargs, context):
        if context.module.name == "layer1" and context.method_name == "__call__":
            captured.append(args[0])
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        fn()
    return captured


@jax.jit
def _stem_output(variables: dict, x: jax.Array) -> jax.Array:
    """The tiny model's stem output, (B, H', W', 4)."""
    return _layer1_inputs(lambda: _tiny(width=4).apply(variables, x, train=False))[0]


@pytest.mark.parametrize("hw", [(32, 32), (33, 31), (30, 35)])
def test_stem_uses_symmetric_padding(hw):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, *hw, 3)), jnp.float32)
    variables = _numpy_variables(_tiny(width=4), x)
    stem = np.asarray(_stem_output(variables, x))

    def conv(padding):
        return jax.lax.conv_general_dilated(
            x,
            variables["params"]["conv1"]["kernel"],
            window_strides=(2, 2),
            padding=padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )

    def bn_relu_pool(y):
        bn = jax.tree.map(np.asarray, variables["params"]["bn1"])
        st = jax.tree.map(np.asarray, variables["batch_stats"]["bn1"])
        y = (np.asarray(y) - st["mean"]) / np.sqrt(st["var"] + 1e-5) * bn["scale"] + bn["bias"]
        return _np_max_pool_3x3_s2(np.maximum(y, 0).astype(np.float32))

    expected = bn_relu_pool(conv(((3, 3), (3, 3))))
    assert stem.shape == expected.shape
    np.testing.assert_allclose(stem, expected, rtol=1e-4, atol=1e-4)
    if hw == (32, 32):  # 'SAME' pads (2, 3) here; make sure the test would notice.
        assert not np.allclose(stem, bn_relu_pool(conv("SAME")), atol=1e-3)


@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (1, 2)])
def test_max_pool_pads_with_minus_inf(hw):
    # All-negative input: zero padding would show up as zeros at the borders.
    x = -np.abs(np.random.default_rng(0).normal(size=(2, *hw, 3))).astype(np.float32) - 1.0
    np.testing.assert_array_equal(
        np.asarray(resnet.max_pool_3x3_s2(jnp.asarray(x))), _np_max_pool_3x3_s2(x)
    )


def test_frozen_path_prefixes():
    assert resnet.frozen_path_prefixes(0) == ()
    assert resnet.frozen_path_prefixes(1) == (("conv1",), ("bn1",))
    assert resnet.frozen_path_prefixes(2) == (("conv1",), ("bn1",), ("layer1",))
    assert resnet.frozen_path_prefixes(5)[-1] == ("layer4",)
    assert len(resnet.frozen_path_prefixes(5)) == 6
    with pytest.raises(ValueError):
        resnet.frozen_path_prefixes(6)


def _is_frozen(path, prefixes):
    return any(path[: len(p)] == p for p in prefixes)


def test_frozen_stages_keep_stats_and_get_no_gradient():
    model = _tiny(width=4, frozen_stages=2)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 64, 64, 3)), jnp.float32)
    variables = _numpy_variables(model, x)
    params, stats = variables["params"], variables["batch_stats"]
    prefixes = resnet.frozen_path_prefixes(2)

    @jax.jit
    def loss_and_grad(p):
        def loss_fn(p):
            out, updates = model.apply(
                {"params": p, "batch_stats": stats}, x, train=True, mutable=["batch_stats"]
            )
            return jnp.mean(out**2), updates["batch_stats"]

        return jax.grad(loss_fn, has_aux=True)(p)

    grads, new_stats = loss_and_grad(params)

    old = dict(zip(_paths(stats), jax.tree.leaves(stats)))
    new = dict(zip(_paths(new_stats), jax.tree.leaves(new_stats)))
    assert old.keys() == new.keys()
    assert any(p[0] == "bn1" for p in old) and any(p[0] == "layer2" for p in old)
    for path, value in old.items():
        unchanged = np.array_equal(value, new[path])
        assert unchanged == _is_frozen(path, prefixes), path

    for path, g in zip(_paths(grads), jax.tree.leaves(grads)):
        if _is_frozen(path, prefixes):
            assert not np.any(np.asarray(g)), path
        else:
            assert np.any(np.asarray(g)), path
    top_level = {p[0] for p in _paths(params)}
    assert top_level == {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}


def test_frozen_stem_is_train_invariant():
    """With the stem frozen, its output is the same in train and eval mode."""
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
    model = _tiny(width=4, frozen_stages=1)
    variables = _numpy_variables(model, x)

    @jax.jit
    def stem_outputs(variables):
        def run():
            model.apply(variables, x, train=True, mutable=["batch_stats"])
            model.apply(variables, x, train=False)

        return _layer1_inputs(run)

    train_out, eval_out = stem_outputs(variables)
    np.testing.assert_array_equal(np.asarray(train_out), np.asarray(eval_out))


def test_invalid_config_raises():
    x = jnp.zeros((1, 32, 32, 3))
    with pytest.raises(ValueError):
        resnet.ResNet18(width=4, frozen_stages=6).init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError):
        resnet.ResNet(stage_sizes=(1, 1, 1, 1), block="dense").init(
            jax.random.key(0), x, train=False
        )
