"""Every config loads and validates; unknown keys and bad values give errors that name them."""

import ast
import glob
import importlib.util
import inspect
import json
import os
import re
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


def _module(path):
    spec = importlib.util.spec_from_file_location(f"config_{os.path.basename(path)[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(path, *args):
    """Imports a config file by path, as ml_collections' --config flag does, and calls
    get_config(*args) (the argument after ':' on the command line)."""
    return _module(path).get_config(*args)


# What the argument after ':' may be, by the name of get_config's parameter.
_ARGUMENTS = {"variant": ("official", "author"), "setup": ("largeloss", "splc")}


def config_arguments(path) -> list[tuple]:
    """Every argument tuple `get_config` of the file at `path` accepts: () (its default), and for
    a `method` parameter every registered method, for `variant` / `setup` their choices."""
    from mlrpl_jax import methods

    params = list(inspect.signature(_module(path).get_config).parameters)
    if not params:
        return [()]
    values = methods.METHODS if params[0] == "method" else _ARGUMENTS[params[0]]
    return [()] + [(v,) for v in values]


def _docstring(path) -> str:
    with open(path) as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


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
    ablation switches) names a key of that config (with its default argument, or with one of the
    methods / variants / setups it takes, e.g. ROLE's linear-init switch in largeloss_*.py), so
    documented flags cannot rot."""
    doc = _docstring(path)
    flags = re.findall(r"--config\.([\w.]+)=(\S+)", doc)
    if not flags:
        return
    configs = [load(path, *args) for args in config_arguments(path)]

    def has(config, key):
        node = config
        for part in key.split("."):
            if part not in node:
                return False
            node = node[part]
        return True

    for key, value in flags:
        assert any(has(c, key) for c in configs), (
            f"{os.path.basename(path)} documents --config.{key}={value}"
        )


def test_selection_on_partial_validation_labels_without_negatives_warns():
    config = load(os.path.join(ROOT, "configs", "synthetic_transfer.py"))
    config.data.setting = "spl"
    with pytest.warns(UserWarning, match="mAP 100 to every checkpoint"):
        config_validation.validate(config)
    config.data.val_labels = "full"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config_validation.validate(config)


# Train-split sizes for a config's steps per epoch (the schedule's last value depends on them only
# through rounding): the official splits, or the synthetic generator's count.
_TRAIN_IMAGES = {
    "coco/2014": 82783, "voc/2007": 5011, "vg200": 98249, "voc/2012": 5717, "nus_wide": 126034,
    "cub": 5994, "open_images/boxable": 1743042,
}  # fmt: skip

# A config whose docstring says this keeps a schedule that does not anneal, naming whose code does.
_STOPPED_SCHEDULE = re.compile(
    r"laid out\s+over\s+(\d+)\s+epochs\s+of\s+which\s+(\d+)\s+are\s+run,\s+as\s+the\s+(\S.*?)\s+does",
    re.DOTALL,
)


def _last_lr(config) -> float:
    """The learning rate of the run's last optimiser step, from `optim.make_optimizer`'s schedule
    with the config's steps per epoch and total steps."""
    from mlrpl_jax import optim

    data, train = config.data, config.train
    if data.name == "synthetic_scenes":
        images = data.synthetic.num_train
    else:
        images = _TRAIN_IMAGES[data.name]
    images = int(images * (1.0 - data.val_fraction))
    steps_per_epoch = max(1, images // train.batch_size)
    if train.max_steps_per_epoch > 0:
        steps_per_epoch = min(steps_per_epoch, train.max_steps_per_epoch)
    total = steps_per_epoch * train.num_epochs
    _, schedule = optim.make_optimizer(config.optim, steps_per_epoch, total)
    return float(schedule(total - 1))


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_decaying_schedules_end_near_zero(path):
    """Every cosine or one-cycle schedule of every config (each argument its get_config takes)
    has annealed to <= 1 % of its peak at the last step, unless the config's docstring says the
    schedule is laid out over more epochs than are run and names whose code does so (the SPLC
    setup); then its numbers must be the config's."""
    doc = _docstring(path)
    stopped = _STOPPED_SCHEDULE.search(doc)
    seen, checked = {}, 0
    for args in config_arguments(path):
        config = load(path, *args)
        optim = config.optim
        if optim.schedule not in ("cosine", "onecycle"):
            continue
        key = json.dumps([optim.to_dict(), config.train.num_epochs, config.train.batch_size,
                          config.data.name, config.data.val_fraction], sort_keys=True, default=str)  # fmt: skip
        if key not in seen:
            seen[key] = _last_lr(config) / optim.learning_rate
        end, where = seen[key], f"{os.path.basename(path)}:{','.join(args)}"
        checked += 1
        if stopped and optim.schedule_epochs > config.train.num_epochs:
            schedule_epochs, run, whose = stopped.groups()
            assert (int(schedule_epochs), int(run)) == (
                optim.schedule_epochs,
                config.train.num_epochs,
            ), where
            assert whose.strip(), where
            assert end > 0.01, where  # it does stop early
        else:
            assert end <= 0.01, f"{where}: {optim.schedule} ends at {end:.3f} of its peak"
    if stopped:
        assert checked, f"{os.path.basename(path)} documents a stopped schedule it does not have"


def test_trm_ml_splc_one_cycle_anneals_over_the_forty_epochs():
    """Audit M2: TRM-ML* in the SPLC setup does not inherit SPLC's 80-epoch layout nor its decay
    rule; the one-cycle peaks at 20 % of the 40 epochs and ends near 0."""
    for name in ("trm_ml_coco_spl.py", "trm_ml_nus_spl.py", "trm_ml_cub_spl.py",
                 "trm_ml_voc2012_spl.py"):  # fmt: skip
        config = load(os.path.join(ROOT, "configs", name), "splc")
        assert (config.optim.schedule, config.optim.schedule_epochs) == ("onecycle", 0)
        assert config.train.num_epochs == 40 and config.optim.decay_on == "all"
        assert config.data.drop_unlabeled  # the protocol's labelled images only
    assert _last_lr(config) / config.optim.learning_rate < 1e-4


def test_dualcoop_official_loss_w_is_the_published_value_per_known_entry():
    """Audit M1: 0.03 at COCO 50 % (README), 0.03 x 0.5 / p elsewhere, following a later
    --config.data.known_proportion; one flag fixes it."""
    config = load(os.path.join(ROOT, "configs", "dualcoop_coco.py"), "official")
    assert config.method_config.loss_w == pytest.approx(0.03)
    assert config.data.drop_unlabeled  # the official loader's annotated images (audit M14)
    config.data.known_proportion = 0.1  # what --config.data.known_proportion=0.1 does
    assert config.method_config.loss_w == pytest.approx(0.15)
    config_validation.validate(config)
    config.method_config.loss_w = 0.03  # --config.method_config.loss_w=0.03
    assert (config.method_config.loss_w, config.data.known_proportion) == (0.03, 0.1)
    voc = load(os.path.join(ROOT, "configs", "dualcoop_voc.py"), "official")
    assert voc.method_config.loss_w == pytest.approx(0.03) and not voc.data.drop_unlabeled
    author = load(os.path.join(ROOT, "configs", "dualcoop_coco.py"), "author")
    assert author.method_config.loss_w == 1.0  # the author framework's -sum / B loss


@pytest.mark.parametrize(
    ("name", "method", "phase_lr"),
    [("largeloss_coco.py", "role", 1e-3), ("largeloss_nus.py", "an_ls", 1e-4),
     ("imbalance_coco.py", "role", 1e-3)],
)  # fmt: skip
def test_cole_linear_init_is_one_flag_away_from_end_to_end(name, method, phase_lr):
    """Audit M8: 25 linear epochs at the loss's lr before the protocol's fine-tuning epochs;
    linear_init_epochs=0 alone gives Cole et al.'s end-to-end mode."""
    path = os.path.join(ROOT, "configs", name)
    config = load(path, method)
    fine_tune = load(path, "an").train.num_epochs
    config_validation.validate(config)
    assert config.method_config.linear_init_epochs == 25
    assert config.train.num_epochs == 25 + fine_tune
    assert (config.optim.warmup_epochs, config.optim.warmup_lr) == (25.0, phase_lr)
    assert config.train.early_stop_drop == 0.0
    config.method_config.linear_init_epochs = 0  # --config.method_config.linear_init_epochs=0
    config_validation.validate(config)
    assert (config.train.num_epochs, config.optim.warmup_epochs) == (fine_tune, 0.0)
    other = load(path, "ll_ct" if name.startswith("largeloss") else "an")
    assert "linear_init_epochs" not in other.method_config
    assert other.optim.warmup_epochs == 0.0


def test_paper002_configs_train_on_the_official_split_of_labelled_images():
    """Audit M6, M10: no carve-out, images with a positive only, for the method and its
    baselines; Open Images keeps its official validation split."""
    for ds in ("coco", "nus", "cub", "voc", "vg"):
        for method in ("imbalance", "an"):
            config = load(os.path.join(ROOT, "configs", f"imbalance_{ds}.py"), method)
            assert config.data.drop_unlabeled and config.data.val_fraction == 0.0
            assert config.train.select_on == "test"
    config = load(os.path.join(ROOT, "configs", "imbalance_openimages.py"))
    assert config.data.val_split == "validation" and config.train.select_on == "val"
    # The LargeLoss setup, also built on imbalance_scale, keeps Cole et al.'s carve-out.
    config = load(os.path.join(ROOT, "configs", "largeloss_coco.py"))
    assert config.data.val_fraction == 0.2 and config.train.select_on == "val"


def test_blending_configs_follow_the_dsrb_paper_with_the_code_one_flag_away():
    """Audit M3, M4: batch 32 and per-class alpha / beta (the DSRB paper); each docstring names
    the released code's values as flags."""
    for method in ("sarb", "dsrb"):
        for ds in ("coco", "voc", "vg"):
            path = os.path.join(ROOT, "configs", f"{method}_{ds}.py")
            config = load(path)
            assert config.train.batch_size == 32
            assert config.method_config.per_class_coefficients
        doc = _docstring(os.path.join(ROOT, "configs", f"{method}_coco.py"))
        assert "--config.train.batch_size=8" in doc
        assert "--config.method_config.per_class_coefficients=False" in doc


def test_largeloss_configs_use_the_delta_rel_of_each_scheme():
    """Audit M9: LL-R 0.5 %, LL-Ct 0.2 %, LL-Cp 0.1 % per epoch; no README claim of one value."""
    path = os.path.join(ROOT, "configs", "largeloss_coco.py")
    rates = {m: load(path, m).method_config.delta_rel for m in ("ll_r", "ll_ct", "ll_cp")}
    assert rates == {"ll_r": 0.005, "ll_ct": 0.002, "ll_cp": 0.001}
    assert "README uses" not in _docstring(path)


def test_trm_ml_coco_counts_only_labelled_images_and_documents_its_masks():
    """Audit M13, M14: COCO's 82,081 / 40,137 labelled images (VOC keeps all); the recipe no
    longer claims SARB's generator for the hash draw."""
    from configs import recipes

    assert load(os.path.join(ROOT, "configs", "trm_ml_coco.py")).data.drop_unlabeled
    assert not load(os.path.join(ROOT, "configs", "trm_ml_voc.py")).data.drop_unlabeled
    doc = recipes.trm_ml_scale.__doc__
    assert "drawn as SARB's generator" not in doc and "mask_mode=reference" in doc
