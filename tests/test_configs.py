"""Every config loads and validates; unknown keys and bad values give errors that name them."""

import glob
import importlib.util
import os
import subprocess
import sys
import warnings

import pytest

from mlrpl_jax import config_validation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    f
    for f in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not f.endswith(("__init__.py", "recipes.py"))  # recipes.py holds shared overrides
)


def load(path, *args):
    """Imports a config file by path, as ml_collections' --config flag does, and calls
    get_config(*args) (the argument after ':' on the command line)."""
    spec = importlib.util.spec_from_file_location(f"config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(*args)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_every_config_loads_and_validates(path):
    config = load(path)
    config_validation.validate(config)


@pytest.mark.parametrize(
    ("name", "arg", "expect"),
    [("dualcoop_coco.py", "author", ("method_config.variant", "author")),
     ("dualcoop_voc.py", "official", ("optim.learning_rate", 0.001)),
     ("trm_ml_coco_spl.py", "splc", ("train.select_on", "test")),
     ("trm_ml_coco_spl.py", "largeloss", ("data.val_fraction", 0.2)),
     ("trm_ml_voc2012_spl.py", "splc", ("data.name", "voc/2012")),
     ("largeloss_voc2012.py", "epr", ("method_config.expected_positives", 1.5)),
     ("splc_voc2012.py", "hill", ("data.drop_unlabeled", True)),
     ("imbalance_openimages.py", "asl", ("data.setting", "fal")),
     ("imbalance_openimages.py", "bce_ls", ("data.val_split", "validation")),
     ("clip_synthetic.py", "dualcoop", ("method_config.clip_arch", "synthetic_rn"))],
)  # fmt: skip
def test_configs_with_arguments_load_and_validate(name, arg, expect):
    config = load(os.path.join(ROOT, "configs", name), arg)
    config_validation.validate(config)
    key, value = expect
    node = config
    for part in key.split("."):
        node = node[part]
    assert node == value


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_configs_only_override_base_keys(path):
    """Experiment configs may not add keys: every key exists in configs/base.py for that method."""
    from configs import base

    config = load(path)
    reference = base.get_config(config.method)

    def keys(c, prefix=""):
        out = set()
        for k, v in c.items():
            out.add(prefix + k)
            if hasattr(v, "items"):
                out |= keys(v, prefix + k + ".")
        return out

    assert keys(config) <= keys(reference)


def test_none_on_the_command_line_is_none():
    config = load(os.path.join(ROOT, "configs", "clip_synthetic.py"))
    config.method_config.clip_weights = (
        "None"  # what --config.method_config.clip_weights=None gives
    )
    config.model.backbone_weights = "None"
    config_validation.resolve_none(config)
    assert config.method_config.clip_weights is None and config.model.backbone_weights is None
    assert config.data.name == "synthetic_scenes"


def test_unknown_config_key_is_an_error():
    from configs import base

    config = base.get_config("plain")
    config.lock()
    with pytest.raises(AttributeError, match="trian"):
        config.trian = 3
    with pytest.raises(AttributeError, match="num_epoch"):
        config.train.num_epoch = 3


def test_cli_rejects_unknown_override_key():
    proc = subprocess.run(  # noqa: PLW1510 (the exit code is asserted below)
        [
            sys.executable, "-m", "mlrpl_jax.train", "--config", "configs/quickstart.py",
            "--workdir", "/tmp/unused", "--config.train.num_epoch=3",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "num_epoch" in proc.stderr


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("data.known_proportion", 1.5, r"known_proportion=1.5: must be in \(0, 1\]"),
        ("data.known_proportion", 0.0, r"known_proportion=0.0: must be in \(0, 1\]"),
        ("data.setting", "xyz", r"data.setting='xyz': must be one of \['pal', 'ppl'"),
        ("data.name", "imagenet", r"data.name='imagenet': must be one of"),
        ("model.backbone", "vgg16", r"model.backbone='vgg16'"),
        ("optim.learning_rate", -1.0, r"optim.learning_rate=-1.0: must be > 0"),
        ("train.batch_size", 0, r"train.batch_size=0: must be > 0"),
        ("model.frozen_stages", 7, r"model.frozen_stages=7: must be in 0..5"),
        ("data.crop_sizes", (600, 448), r"crops cannot exceed data.scale_size"),
    ],
)
def test_invalid_values_name_key_and_reason(key, value, message):
    config = load(os.path.join(ROOT, "configs", "quickstart.py"))
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    with pytest.raises(ValueError, match=message):
        config_validation.validate(config)


def test_changing_method_alone_is_an_error():
    config = load(os.path.join(ROOT, "configs", "quickstart.py"))
    config.method = "nonexistent"
    with pytest.raises(ValueError, match="unknown method"):
        config_validation.validate(config)


def test_ssgrl_synthetic_runs_other_methods_in_the_same_setting():
    """`configs/ssgrl_synthetic.py:plain` differs from the ssgrl config only in the method."""
    from configs import ssgrl_synthetic

    ssgrl, plain = ssgrl_synthetic.get_config(), ssgrl_synthetic.get_config("plain")
    config_validation.validate(plain)
    assert (ssgrl.method, plain.method) == ("ssgrl", "plain")
    for key in ("data", "model", "optim", "train", "checkpoint", "seed"):
        assert ssgrl[key] == plain[key], key


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_flags_in_config_docstrings_name_real_keys(path):
    """Every `--config.a.b=value` a config's docstring tells researchers to pass (run commands,
    ablation switches) names a key of that config, so documented flags cannot rot."""
    import ast
    import re

    with open(path) as f:
        doc = ast.get_docstring(ast.parse(f.read())) or ""
    config = load(path)
    for key, value in re.findall(r"--config\.([\w.]+)=(\S+)", doc):
        node = config
        for part in key.split("."):
            assert part in node, f"{os.path.basename(path)} documents --config.{key}={value}"
            node = node[part]


def test_selection_on_partial_validation_labels_without_negatives_warns():
    config = load(os.path.join(ROOT, "configs", "synthetic_transfer.py"))
    config.data.setting = "spl"
    with pytest.warns(UserWarning, match="mAP 100 to every checkpoint"):
        config_validation.validate(config)
    config.data.val_labels = "full"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config_validation.validate(config)
