"""The CPU-scale pretraining: export of a backbone as torchvision weights, and the linear probe."""

import os

import jax
import numpy as np
import pytest

from configs import pretrain_synthetic, recipes, synthetic_transfer
from mlrpl_jax import pretrain, trainer
from mlrpl_jax.models import pretrained, resnet
from tests.helpers import tiny_run_config


def _random_variables(arch: str, width: int, seed: int = 0, size: int = 32):
    model = resnet.RESNETS[arch](width=width)
    return model, model.init(jax.random.key(seed), np.zeros((1, size, size, 3)), train=False)


@pytest.mark.slow
def test_exported_backbone_runs_identically_in_torchvision(tmp_path):
    """Flax variables -> .npz (torchvision names/layout) -> torchvision ResNet-18: same features."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    model, variables = _random_variables("resnet18", 64)
    # Non-trivial BatchNorm statistics, so a transposed or swapped buffer would show.
    rng = np.random.default_rng(1)
    variables = {
        "params": variables["params"],
        "batch_stats": jax.tree_util.tree_map_with_path(
            lambda path, x: (
                rng.uniform(0.5, 1.5, x.shape)
                if path[-1].key == "var"
                else rng.normal(0.0, 0.1, x.shape)
            ).astype(np.float32),
            variables["batch_stats"],
        ),
    }
    path = str(tmp_path / "backbone.npz")
    pretrained.save_npz(path, pretrained.flax_resnet_to_torchvision(variables))
    state_dict = {k: torch.from_numpy(v) for k, v in pretrained.read_state_dict(path).items()}
    net = torchvision.models.resnet18()
    missing, unexpected = net.load_state_dict(state_dict, strict=False)
    assert sorted(missing) == ["fc.bias", "fc.weight"] and not unexpected
    net.eval()
    x = rng.standard_normal((2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(net.children())[:-2])
        expected = trunk(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    out = np.asarray(model.apply(variables, x, train=False))
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
    assert np.abs(expected).max() > 1.0


def test_save_npz_is_atomic_and_checks_the_extension(tmp_path, monkeypatch):
    path = tmp_path / "w.npz"
    pretrained.save_npz(path, {"a": np.ones(3, np.float32)})
    with pytest.raises(ValueError, match=r"\.npz"):
        pretrained.save_npz(tmp_path / "w.pth", {"a": np.ones(3)})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        pretrained.save_npz(path, {"a": np.zeros(3, np.float32)})
    np.testing.assert_array_equal(pretrained.read_state_dict(path)["a"], np.ones(3))  # kept
    assert os.listdir(tmp_path) == ["w.npz"]  # no temporary left behind


@pytest.mark.slow
def test_pretrain_export_and_probe_end_to_end(tmp_path):
    """Train (tiny), export the last backbone, load it as a transfer run's frozen backbone, probe.

    The probe of the trained backbone is compared with a random one on the same tiny data only for
    being a valid mAP (8 steps teach nothing); the real figures are in the weights' .json."""
    config = tiny_run_config(tmp_path / "data", setting="fal")
    workdir, out = str(tmp_path / "pre"), str(tmp_path / "w" / "backbone.npz")
    trainer.run(config, workdir)
    export = pretrain.export_backbone(config, workdir, out)
    assert export["step"] == 8 and export["num_tensors"] == 100  # ResNet-18: 62 params + 38 stats
    # Deterministic: a second pretraining from scratch exports the same weights, bit for bit.
    trainer.run(config, str(tmp_path / "again"))
    pretrain.export_backbone(config, str(tmp_path / "again"), str(tmp_path / "again.npz"))
    first, second = (pretrained.read_state_dict(p) for p in (out, tmp_path / "again.npz"))
    assert list(first) == list(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    # A transfer-style run reads it as its frozen backbone.
    transfer = tiny_run_config(
        tmp_path / "data", **{"model.frozen_stages": 4, "model.backbone_weights": out}
    )
    exp = trainer.setup(transfer)
    loaded = pretrained.read_state_dict(out)
    np.testing.assert_array_equal(
        np.asarray(exp.state.params["backbone"]["layer3"]["0"]["conv1"]["kernel"]),
        loaded["layer3.0.conv1.weight"].transpose(2, 3, 1, 0),
    )
    trained = pretrain.linear_probe(transfer, out)
    random = pretrain.linear_probe(transfer, None)
    assert 0.0 < trained <= 100.0 and 0.0 < random <= 100.0
    # An unfinished run is not exported.
    with pytest.raises(RuntimeError, match="train first"):
        longer = tiny_run_config(tmp_path / "data", setting="fal", **{"train.num_epochs": 3})
        pretrain.export_backbone(longer, workdir, str(tmp_path / "other.npz"))


def test_transfer_recipe_follows_the_papers_epoch_structure():
    """Frozen stem + layer1-3, the pretrained backbone, activation and lr step in proportion."""
    for method in ("plain", "ssgrl", "sst", "hst", "hst_fb", "sarb", "dsrb"):
        config = synthetic_transfer.get_config(method)
        assert config.model.frozen_stages == 4
        assert config.model.backbone_weights == recipes.SYNTHETIC_BACKBONE
        assert config.train.num_epochs == 8 and config.optim.decay_every_epochs == 4
        assert config.train.select_on == "val"
        mc = config.method_config
        for key in ("generate_label_epoch", "blend_epoch"):
            if key in mc:
                assert mc[key] == 2, (method, key)
        if "prototype_every_epochs" in mc:
            assert mc.prototype_every_epochs == 2
    sst = synthetic_transfer.get_config("sst").method_config
    assert sst.threshold_decay == pytest.approx(0.0625)
    pre = pretrain_synthetic.get_config()
    assert pre.data.setting == "fal" and pre.model.frozen_stages == 0
    # The pretraining world shares neither its class world nor its images with the evaluation one.
    ev = synthetic_transfer.get_config("plain").data.synthetic
    assert pre.data.synthetic.num_classes != ev.num_classes
    assert pre.data.synthetic.seed != ev.seed
    assert (pre.model.backbone, pre.model.width) == (
        synthetic_transfer.get_config("plain").model.backbone,
        synthetic_transfer.get_config("plain").model.width,
    )


def test_transfer_thresholds_are_the_calibrated_ones():
    """recipes.TRANSFER_THRESHOLDS holds what scripts/calibrate_transfer.py chose (committed)."""
    import json

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "results", "synthetic_transfer_calibration.json")) as f:
        chosen = {m: r["chosen"] for m, r in json.load(f)["methods"].items()}
    keys = {"sst": ("intra_threshold", "inter_threshold"), "hst": ("intra_margin", "inter_margin")}
    for method, names in keys.items():
        for branch, name in zip(("intra", "inter"), names, strict=True):
            value = chosen[method][branch]["value"]
            for variant in (method, "hst_fb") if method == "hst" else (method,):
                assert recipes.TRANSFER_THRESHOLDS[variant][name] == value, (variant, name)
                assert synthetic_transfer.get_config(variant).method_config[name] == value
    assert synthetic_transfer.get_config("sst").method_config.threshold_schedule == "fixed"
    # The paper configs keep the papers' values.
    from configs import hst_coco, sst_coco

    assert sst_coco.get_config().method_config.inter_threshold == 0.95
    assert hst_coco.get_config().method_config.inter_margin == 1.0


def test_default_config_files_go_on_the_command_line():
    """The default config files are loaded (with their overrides) while the command line is
    parsed, where a misspelt key is a user error, not while the flags are defined."""
    defaults = {"config": "a.py", "probe_config": "b.py:plain"}
    argv = ["pretrain", "--config.train.num_epochs=1", "--probe_config", "c.py", "--out=w.npz"]
    assert pretrain.with_config_defaults(argv, defaults) == ["pretrain", "--config=a.py", *argv[1:]]
    argv = ["pretrain", "--config=c.py", "--probe_config=d.py"]
    assert pretrain.with_config_defaults(argv, defaults) == argv


@pytest.mark.slow
def test_pretrain_command_line(tmp_path):
    """`python -m mlrpl_jax.pretrain` trains, exports and probes, and writes its figures."""
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = f"--config.data.data_dir={tmp_path / 'data'}"
    out = str(tmp_path / "w.npz")
    subprocess.run(
        [sys.executable, "-m", "mlrpl_jax.pretrain", "--config=configs/tiny.py", data,
         "--config.data.setting=fal", "--probe_config=configs/tiny.py",
         f"--probe_config.data.data_dir={tmp_path / 'data'}", f"--workdir={tmp_path / 'run'}",
         f"--out={out}"],
        cwd=root, check=True, capture_output=True, text=True,
    )  # fmt: skip
    with open(out + ".json") as f:
        report = json.load(f)
    assert report["export"]["step"] == 8
    assert set(report["linear_probe_test_mAP"]) == {"pretrained", "random_init"}
    assert 0 < report["pretraining_world_test"]["mAP"] <= 100
