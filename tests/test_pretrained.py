"""Tests for mlrpl_jax.models.pretrained and scripts/convert_torchvision_resnet.py.

Parity: randomly initialised torchvision ResNets, with realistic BatchNorm statistics, are saved
as ``.pth`` and ``.safetensors``, converted, and our Flax ResNet must reproduce torchvision's
``layer4`` output (and its 2x2 average pool). The error tests use fabricated state dicts built
from our models' shapes, so they need no torch model.
"""

import functools
import importlib.util
import pathlib
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.torch as safetensors_torch
import torch
import torchvision

from mlrpl_jax.models import pretrained, resnet

_SCRIPT = pathlib.Path(__file__).parents[1] / "scripts" / "convert_torchvision_resnet.py"
_SIZE = 96  # last stage 3x3: XLA:CPU is very slow on 2x2 maps (DESIGN.md).


@functools.cache
def _abstract_variables(arch: str, width: int = 64) -> dict:
    """Shapes and dtypes of a ResNet's variables, without drawing random weights.

    Cached (tracing ResNet-101 takes a second); callers must not modify the returned tree.
    """
    model = resnet.RESNETS[arch](width=width)
    x = jnp.zeros((1, _SIZE, _SIZE, 3), jnp.float32)
    return jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))


def _torch_shape(path, leaf) -> tuple[int, ...]:
    if path[-1].key == "kernel":
        kh, kw, cin, cout = leaf.shape
        return (cout, cin, kh, kw)
    return tuple(leaf.shape)


def _fake_state_dict(arch: str, width: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    """A torchvision-named, torchvision-layout state dict of random values for our model."""
    rng = np.random.default_rng(seed)
    leaves = jax.tree_util.tree_flatten_with_path(_abstract_variables(arch, width))[0]
    return {
        resnet.torchvision_name(path): rng.standard_normal(_torch_shape(path, leaf), np.float32)
        for path, leaf in leaves
    }


def _to_torch(state_dict: dict[str, np.ndarray]) -> dict:
    return {k: torch.from_numpy(v) for k, v in state_dict.items()}


# --- Parity with torchvision -----------------------------------------------------------------


def _torch_resnet(arch: str, seed: int = 0):
    """A random torchvision ResNet in eval mode with realistic BatchNorm parameters and stats.

    BN affine parameters are random; as in ImageNet-trained ResNets, the last BN of every residual
    branch has small gammas. (With gammas ~1 a random 50-100-layer net in eval mode is chaotic:
    float32 rounding alone, torch float32 against torch float64, reaches ~1e-3 at layer4.) Running
    statistics are the cumulative average (``momentum=None``) of three train-mode batches.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = getattr(torchvision.models, arch)(weights=None)
    last_bn = ".bn3" if arch in ("resnet50", "resnet101") else ".bn2"
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                low, high = (0.05, 0.25) if name.endswith(last_bn) else (0.5, 1.5)
                module.weight.uniform_(low, high, generator=gen)
                module.bias.normal_(0.0, 0.1, generator=gen)
                module.momentum = None
        model.train()
        for _ in range(3):
            model(torch.randn(4, 3, _SIZE, _SIZE, generator=gen))
    return model.eval()


def _torch_layer4(model, x):
    """torchvision's conv1..layer4 in eval mode; (B, 3, H, W) -> (B, D, H', W')."""
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        return model.layer4(model.layer3(model.layer2(model.layer1(x))))


@pytest.fixture(scope="module")
def torch_case(tmp_path_factory):
    """arch -> {'pth', 'safetensors': paths, 'x': (2, H, W, 3), 'layer4', 'pooled': NHWC}."""
    cases = {}

    def get(arch: str) -> dict:
        if arch not in cases:
            model = _torch_resnet(arch)
            x = torch.randn(2, 3, _SIZE, _SIZE, generator=torch.Generator().manual_seed(1))
            layer4 = _torch_layer4(model, x)
            pooled = torch.nn.AvgPool2d(2, stride=2)(layer4)
            folder = tmp_path_factory.mktemp(arch)
            state_dict = model.state_dict()
            torch.save(state_dict, folder / f"{arch}.pth")
            safetensors_torch.save_file(state_dict, str(folder / f"{arch}.safetensors"))
            cases[arch] = {
                "pth": folder / f"{arch}.pth",
                "safetensors": folder / f"{arch}.safetensors",
                "x": x.permute(0, 2, 3, 1).numpy(),
                "layer4": layer4.permute(0, 2, 3, 1).numpy(),
                "pooled": pooled.permute(0, 2, 3, 1).numpy(),
            }
        return cases[arch]

    return get


def _flax_layer4_and_pooled(arch: str, variables: dict, x: np.ndarray):
    """Our ResNet with avg_pool_2x2=True: (layer4 output, pooled output), one compilation."""
    model = resnet.RESNETS[arch](avg_pool_2x2=True, frozen_stages=0)

    @jax.jit
    def run(variables, x):
        captured = []

        def interceptor(next_fun, args, kwargs, context):
            y = next_fun(*args, **kwargs)
            if context.module.name == "layer4" and context.method_name == "__call__":
                captured.append(y)
            return y

        with nn.intercept_methods(interceptor):
            pooled = model.apply(variables, x, train=False)
        return captured[0], pooled

    return tuple(np.asarray(y) for y in run(variables, jnp.asarray(x)))


def _check_parity(arch: str, case: dict) -> None:
    shapes = _abstract_variables(arch)
    head = {"kernel": jnp.ones((3, 2))}
    params, stats = pretrained.load_backbone_weights(
        case["pth"],
        {"backbone": shapes["params"], "head": head},
        {"backbone": shapes["batch_stats"]},
    )
    assert params["head"] is head
    variables = {"params": params["backbone"], "batch_stats": stats["backbone"]}

    # The .safetensors copy converts to exactly the same variables.
    from_st = pretrained.torchvision_resnet_to_flax(
        pretrained.read_state_dict(case["safetensors"]), shapes
    )
    jax.tree.map(np.testing.assert_array_equal, from_st, variables)

    layer4, pooled = _flax_layer4_and_pooled(arch, variables, case["x"])
    assert layer4.shape == case["layer4"].shape == (2, 3, 3, resnet.RESNETS[arch]().out_features)
    assert pooled.shape == case["pooled"].shape == (2, 1, 1, layer4.shape[-1])
    layer4_err = np.abs(layer4 - case["layer4"]).max()
    pooled_err = np.abs(pooled - case["pooled"]).max()
    print(f"{arch}: max |flax - torch| layer4 {layer4_err:.2e}, pooled {pooled_err:.2e}")
    assert layer4_err <= 1e-4
    assert pooled_err <= 1e-4
    # The comparison is meaningful: the outputs are far from constant.
    assert np.abs(case["layer4"]).max() > 1.0 and case["layer4"].std() > 0.1


@pytest.mark.slow
def test_resnet18_matches_torchvision(torch_case):
    case = torch_case("resnet18")
    _check_parity("resnet18", case)
    # avg_pool_2x2=False returns the layer4 map itself.
    model = resnet.ResNet18(avg_pool_2x2=False, frozen_stages=0)
    variables = pretrained.torchvision_resnet_to_flax(
        pretrained.read_state_dict(case["pth"]), _abstract_variables("resnet18")
    )
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, case["x"])
    np.testing.assert_allclose(np.asarray(out), case["layer4"], rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet50", "resnet101"])
def test_bottleneck_resnets_match_torchvision(torch_case, arch):
    _check_parity(arch, torch_case(arch))


# --- Reading files ---------------------------------------------------------------------------


def test_missing_file_says_how_to_get_one(tmp_path):
    path = tmp_path / "resnet101.pth"
    with pytest.raises(FileNotFoundError) as e:
        pretrained.read_state_dict(path)
    for text in (str(path), "config.model.backbone_weights", "IMAGENET1K_V1", "resnet101.pth"):
        assert text in str(e.value)
    shapes = _abstract_variables("resnet18")
    with pytest.raises(FileNotFoundError, match="config.model.backbone_weights"):
        pretrained.load_backbone_weights(
            tmp_path / "w.npz", shapes["params"], shapes["batch_stats"], scope=None
        )


def test_unknown_extension_lists_supported(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"")
    with pytest.raises(ValueError) as e:
        pretrained.read_state_dict(path)
    for ext in (".pth", ".pt", ".safetensors", ".npz"):
        assert ext in str(e.value)


def test_pth_wrappers_and_module_prefix_are_removed(tmp_path):
    state_dict = _fake_state_dict("resnet18")
    prefixed = {"module." + k: v for k, v in _to_torch(state_dict).items()}
    for i, obj in enumerate(
        [
            _to_torch(state_dict),
            prefixed,
            {"state_dict": prefixed, "epoch": 3},
            {"model": {"state_dict": _to_torch(state_dict)}},
        ]
    ):
        torch.save(obj, tmp_path / f"{i}.pt")
        read = pretrained.read_state_dict(tmp_path / f"{i}.pt")
        assert read.keys() == state_dict.keys()
        for key, value in state_dict.items():
            np.testing.assert_array_equal(read[key], value)


def test_formats_read_back_identically(tmp_path):
    state_dict = _fake_state_dict("resnet18")
    state_dict["fc.weight"] = np.ones((3, 512), np.float32)
    torch.save(_to_torch(state_dict), tmp_path / "w.pth")
    safetensors_torch.save_file(_to_torch(state_dict), str(tmp_path / "w.safetensors"))
    np.savez(tmp_path / "w.npz", **state_dict)
    for ext in ("pth", "safetensors", "npz"):
        read = pretrained.read_state_dict(tmp_path / f"w.{ext}")
        assert read.keys() == state_dict.keys(), ext
        for key, value in state_dict.items():
            np.testing.assert_array_equal(read[key], value)


def test_pickled_module_is_refused_with_advice(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pth")
    with pytest.raises(ValueError, match="state_dict"):
        pretrained.read_state_dict(tmp_path / "model.pth")


def test_pth_without_torch_says_what_to_do(tmp_path, monkeypatch):
    torch.save(_to_torch({"conv1.weight": np.zeros((1,), np.float32)}), tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match="pip install torch") as e:
        pretrained.read_state_dict(tmp_path / "w.pth")
    assert "convert_torchvision_resnet.py" in str(e.value)


# --- Conversion ------------------------------------------------------------------------------


def test_conversion_layout_and_names():
    state_dict = _fake_state_dict("resnet18")
    variables = pretrained.torchvision_resnet_to_flax(state_dict, _abstract_variables("resnet18"))
    params, stats = variables["params"], variables["batch_stats"]
    np.testing.assert_array_equal(
        params["conv1"]["kernel"], state_dict["conv1.weight"].transpose(2, 3, 1, 0)
    )
    assert params["conv1"]["kernel"].shape == (7, 7, 3, 64)
    down = params["layer2"]["0"]["downsample"]["0"]["kernel"]
    np.testing.assert_array_equal(
        down, state_dict["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0)
    )
    bn = ("layer3", "1", "bn2")
    for leaf, tree, suffix in [
        ("scale", params, "weight"),
        ("bias", params, "bias"),
        ("mean", stats, "running_mean"),
        ("var", stats, "running_var"),
    ]:
        value = tree[bn[0]][bn[1]][bn[2]][leaf]
        np.testing.assert_array_equal(value, state_dict["layer3.1.bn2." + suffix])
    for leaf in jax.tree.leaves(variables):
        assert isinstance(leaf, jax.Array) and leaf.dtype == jnp.float32


def test_fc_and_batch_counters_are_ignored():
    state_dict = _fake_state_dict("resnet18")
    extra = {
        "fc.weight": np.zeros((1000, 512), np.float32),
        "fc.bias": np.zeros((1000,), np.float32),
        "bn1.num_batches_tracked": np.array(7),
        "layer1.0.bn1.num_batches_tracked": np.array(7),
    }
    shapes = _abstract_variables("resnet18")
    with_extra = pretrained.torchvision_resnet_to_flax({**state_dict, **extra}, shapes)
    plain = pretrained.torchvision_resnet_to_flax(state_dict, shapes)
    jax.tree.map(np.testing.assert_array_equal, with_extra, plain)


def test_wrong_depth_lists_every_missing_and_unexpected_key():
    resnet18, resnet50 = _fake_state_dict("resnet18"), _fake_state_dict("resnet50")
    # resnet18 weights into resnet50: missing keys (conv3, extra blocks) and wrong shapes.
    with pytest.raises(ValueError) as e:
        pretrained.torchvision_resnet_to_flax(resnet18, _abstract_variables("resnet50"))
    message = str(e.value)
    missing = sorted(set(resnet50) - set(resnet18))
    assert "layer1.0.conv3.weight" in missing and "layer3.5.bn3.running_var" in missing
    assert f"Missing keys (in the model, not in the file) [{len(missing)}]" in message
    assert all(f"\n  {k}\n" in message + "\n" for k in missing)
    assert "layer1.0.conv1.weight: expected shape (64, 64, 1, 1) (torchvision layout), got " in (
        message
    )
    assert "Wrong depth" in message and "resnet18" in message and "resnet50" in message
    # resnet50 weights into resnet18: unexpected keys.
    with pytest.raises(ValueError) as e:
        pretrained.torchvision_resnet_to_flax(resnet50, _abstract_variables("resnet18"))
    message = str(e.value)
    unexpected = sorted(set(resnet50) - set(resnet18))
    assert f"Unexpected keys (in the file, not in the model) [{len(unexpected)}]" in message
    assert all(f"\n  {k}\n" in message + "\n" for k in unexpected)
    assert "Missing keys" not in message


def test_shape_mismatch_names_key_and_both_shapes():
    state_dict = _fake_state_dict("resnet18")
    state_dict["layer4.1.conv2.weight"] = np.zeros((512, 512, 1, 1), np.float32)
    state_dict["layer2.0.bn1.running_var"] = np.zeros((3,), np.float32)
    with pytest.raises(ValueError) as e:
        pretrained.torchvision_resnet_to_flax(state_dict, _abstract_variables("resnet18"))
    message = str(e.value)
    assert "2 mis-shaped" in message and "0 missing" in message
    assert (
        "layer4.1.conv2.weight: expected shape (512, 512, 3, 3) (torchvision layout), "
        "got (512, 512, 1, 1)" in message
    )
    assert "layer2.0.bn1.running_var: expected shape (128,) (torchvision layout), got (3,)" in (
        message
    )


def test_wrong_width_hints_at_config_width():
    with pytest.raises(ValueError) as e:
        pretrained.torchvision_resnet_to_flax(
            _fake_state_dict("resnet18"), _abstract_variables("resnet18", width=16)
        )
    message = str(e.value)
    assert "config.model.width must be 64" in message
    assert "conv1.weight: expected shape (16, 3, 7, 7) (torchvision layout), got (64, 3, 7, 7)" in (
        message
    )


def test_unexpected_extra_key_is_an_error():
    state_dict = {**_fake_state_dict("resnet18"), "head.weight": np.zeros((2, 2), np.float32)}
    with pytest.raises(ValueError, match=r"Unexpected keys .*\[1\]:\n  head.weight"):
        pretrained.torchvision_resnet_to_flax(state_dict, _abstract_variables("resnet18"))


def test_load_backbone_weights_replaces_only_the_backbone(tmp_path):
    state_dict = _fake_state_dict("resnet18")
    np.savez(tmp_path / "w.npz", **state_dict)
    shapes = _abstract_variables("resnet18")
    head = {"kernel": jnp.ones((512, 3)), "bias": jnp.zeros((3,))}
    params_in = {"backbone": shapes["params"], "head": head}
    stats_in = {"backbone": shapes["batch_stats"]}
    params, stats = pretrained.load_backbone_weights(tmp_path / "w.npz", params_in, stats_in)
    assert (
        params_in["backbone"] is shapes["params"] and stats_in["backbone"] is shapes["batch_stats"]
    )
    assert params.keys() == params_in.keys() and params["head"] is head
    expected = pretrained.torchvision_resnet_to_flax(state_dict, shapes)
    jax.tree.map(np.testing.assert_array_equal, params["backbone"], expected["params"])
    jax.tree.map(np.testing.assert_array_equal, stats["backbone"], expected["batch_stats"])

    # Errors name the config key and the file.
    with pytest.raises(ValueError, match="config.model.backbone_weights=.*w.npz"):
        pretrained.load_backbone_weights(tmp_path / "w.npz", params_in, stats_in, scope="encoder")
    small = _abstract_variables("resnet18", width=8)
    with pytest.raises(
        ValueError, match=r"(?s)config.model.backbone_weights=.*w.npz:\n.*Wrong width"
    ):
        pretrained.load_backbone_weights(
            tmp_path / "w.npz", {"backbone": small["params"]}, {"backbone": small["batch_stats"]}
        )


# --- The conversion script -------------------------------------------------------------------


@pytest.fixture(scope="module")
def convert_script():
    spec = importlib.util.spec_from_file_location("convert_torchvision_resnet", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_converts_and_loads_back(tmp_path, convert_script, capsys):
    state_dict = _fake_state_dict("resnet18")
    checkpoint = {
        **_to_torch(state_dict),
        "fc.weight": torch.zeros(1000, 512),
        "fc.bias": torch.zeros(1000),
        "bn1.num_batches_tracked": torch.tensor(5),
    }
    torch.save({"state_dict": checkpoint}, tmp_path / "resnet18.pth")
    shapes = _abstract_variables("resnet18")
    from_pth = pretrained.load_backbone_weights(
        tmp_path / "resnet18.pth", shapes["params"], shapes["batch_stats"], scope=None
    )
    for ext in ("npz", "safetensors"):
        out = tmp_path / f"resnet18.{ext}"
        argv = ["--input", str(tmp_path / "resnet18.pth"), "--arch", "resnet18"]
        assert convert_script.main(argv + ["--output", str(out)]) == 0
        printed = capsys.readouterr().out
        assert f"wrote {out}: {len(state_dict)} tensors" in printed
        assert "11,176,512 parameters" in printed  # torchvision's 11,689,512 less fc
        read = pretrained.read_state_dict(out)
        assert read.keys() == state_dict.keys()  # fc and counters dropped
        for key, value in state_dict.items():
            np.testing.assert_array_equal(read[key], value)
        loaded = pretrained.load_backbone_weights(
            out, shapes["params"], shapes["batch_stats"], scope=None
        )
        jax.tree.map(np.testing.assert_array_equal, loaded, from_pth)


def test_script_rejects_weights_of_another_depth(tmp_path, convert_script, capsys):
    np.savez(tmp_path / "resnet18.npz", **_fake_state_dict("resnet18"))
    out = tmp_path / "out.npz"
    argv = ["--input", str(tmp_path / "resnet18.npz"), "--arch", "resnet34", "--output", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        convert_script.main(argv)
    assert exit_info.value.code == 2
    assert "Missing keys" in capsys.readouterr().err
    assert not out.exists()
