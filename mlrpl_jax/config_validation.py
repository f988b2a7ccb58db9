"""Checks config values before anything is built; every error names the key, the value and the fix.

Unknown keys are already rejected by the locked ConfigDict (`--config.trian.x=1` fails in ml_collections);
this module checks the values of the known ones.
"""

import warnings

import ml_collections

from mlrpl_jax import methods
from mlrpl_jax.data import partial_labels, sources
from mlrpl_jax.errors import ConfigError

SETTINGS = ("pal", "ppl", "spl", "fal")
DATASETS = sources.SUPPORTED_DATASETS
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101")


def _fail(key: str, value, why: str) -> None:
    raise ConfigError(f"config.{key}={value!r}: {why}")


def _choice(config: ml_collections.ConfigDict, key: str, allowed) -> None:
    value = config
    for part in key.split("."):
        value = value[part]
    if value not in allowed:
        _fail(key, value, f"must be one of {list(allowed)}.")


def _positive(config: ml_collections.ConfigDict, key: str, allow_zero: bool = False) -> None:
    value = config
    for part in key.split("."):
        value = value[part]
    if not (value >= 0 if allow_zero else value > 0):
        _fail(key, value, "must be >= 0." if allow_zero else "must be > 0.")


def resolve_none(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Turns every value that is the text 'None' into None, in place, and returns `config`: a
    command-line `--config.model.backbone_weights=None` reaches an optional string key as 'None'
    (ml_collections parses flags by the field's type), and no key takes that text as a value."""
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            resolve_none(value)
        elif isinstance(value, str) and value == "None":
            config[key] = None
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises `errors.ConfigError` (a ValueError) for the first invalid value found."""
    if config.method not in methods.METHODS:
        _fail("method", config.method, f"unknown method; known: {sorted(methods.METHODS)}.")
    expected = set(methods.get(config.method).default_config().keys())
    if set(config.method_config.keys()) != expected:
        _fail(
            "method_config",
            sorted(config.method_config.keys()),
            f"does not hold the keys of method {config.method!r} ({sorted(expected)}); build the "
            f"config with configs/base.py get_config({config.method!r}) instead of overriding "
            "config.method alone.",
        )
    method = methods.get(config.method)
    try:
        method.validate(config)
    except ConfigError:
        raise
    except ValueError as e:  # a method's own check of its keys: the user's to fix
        raise ConfigError(str(e)) from e
    _choice(config, "data.name", DATASETS)
    _choice(config, "data.setting", SETTINGS)
    _choice(config, "data.mask_mode", ("hash", "reference"))
    p = config.data.known_proportion
    if not 0.0 < p <= 1.0:
        _fail("data.known_proportion", p, "must be in (0, 1] (the fraction of labels kept).")
    if config.data.mask_mode == "reference" and config.data.setting != "pal":
        _fail("data.mask_mode", "reference", "the reference masks exist only for setting 'pal'.")
    if config.data.mask_mode == "reference" and config.data.name in sources.NATIVE_PARTIAL_DATASETS:
        _fail(
            "data.mask_mode",
            "reference",
            f"{config.data.name} is natively partially labelled; no reference masks exist for it "
            "(use mask_mode='hash'; setting 'fal' trains on its labels as they are).",
        )
    for key in ("data.scale_size", "data.image_size", "data.size_factor"):
        _positive(config, key)
    if not config.data.crop_sizes or min(config.data.crop_sizes) <= 0:
        _fail(
            "data.crop_sizes",
            config.data.crop_sizes,
            "must be a non-empty tuple of positive sizes.",
        )
    if max(config.data.crop_sizes) > config.data.scale_size:
        _fail("data.crop_sizes", config.data.crop_sizes, "crops cannot exceed data.scale_size.")
    for key in ("data.worker_count", "data.eval_worker_count", "data.read_threads"):
        _positive(config, key, allow_zero=True)
    _choice(config, "model.backbone", BACKBONES)
    _choice(config, "model.dtype", ("float32", "bfloat16"))
    if not 0 <= config.model.frozen_stages <= 5:
        _fail("model.frozen_stages", config.model.frozen_stages, "must be in 0..5.")
    _positive(config, "model.width")
    _choice(config, "model.category_features", ("sd", "sa"))
    for key in ("model.feature_dim", "model.attention_dim", "model.gnn_steps", "model.sd_chunk"):
        _positive(config, key)
    _positive(config, "data.label_embedding_dim")
    _choice(config, "optim.name", ("adam", "adamw", "sgd"))
    _choice(config, "optim.schedule", ("step", "cosine", "onecycle", "constant"))
    _choice(config, "optim.decay_on", ("all", "matrices"))
    _choice(config, "data.augment", ("papers", "asl"))
    _choice(config, "data.resize_on", ("device", "host"))
    _positive(config, "data.canvas_size", allow_zero=True)
    if config.data.augment == "asl" and config.data.resize_on == "device":
        _fail("data.resize_on", "device", "data.augment='asl' runs on the host (RandAugment needs "
              "the resized image): set data.resize_on='host'.")  # fmt: skip
    if not 0.0 <= config.data.cutout_factor <= 1.0:
        _fail("data.cutout_factor", config.data.cutout_factor, "must be in [0, 1].")
    if not 0.0 <= config.data.randaugment_magnitude <= 30.0:
        _fail(
            "data.randaugment_magnitude", config.data.randaugment_magnitude, "must be in [0, 30]."
        )
    _choice(config, "model.input_normalization", ("imagenet", "unit"))
    if not 0.0 < config.optim.onecycle_pct < 1.0:
        _fail("optim.onecycle_pct", config.optim.onecycle_pct, "must be in (0, 1).")
    _positive(config, "optim.schedule_epochs", allow_zero=True)
    for key in ("optim.learning_rate", "optim.decay_every_epochs", "optim.eps"):
        _positive(config, key)
    _positive(config, "optim.weight_decay", allow_zero=True)
    _positive(config, "optim.warmup_epochs", allow_zero=True)
    _positive(config, "optim.warmup_lr", allow_zero=True)
    for key in ("train.num_epochs", "train.batch_size", "train.eval_batch_size"):
        _positive(config, key)
    for key in ("train.log_every_steps", "train.eval_every_epochs", "checkpoint.every_epochs"):
        _positive(config, key)
    _positive(config, "checkpoint.max_to_keep")
    _positive(config, "train.divergence_factor", allow_zero=True)
    _choice(config, "train.ap_mode", ("sklearn", "voc"))
    _validate_selection(config)
    if config.data.name == "synthetic_scenes":
        for key in ("image_size", "num_classes", "num_train", "num_test"):
            _positive(config, f"data.synthetic.{key}")
        _positive(config, "data.synthetic.num_val", allow_zero=True)


def _validate_selection(config: ml_collections.ConfigDict) -> None:
    """The validation split, the selection rule and the weight EMA."""
    data, train = config.data, config.train
    if not 0.0 <= data.val_fraction < 1.0:
        _fail("data.val_fraction", data.val_fraction, "must be in [0, 1) (0 = no carve-out).")
    if data.val_split is not None and data.val_fraction > 0:
        _fail(
            "data.val_fraction",
            data.val_fraction,
            f"a carve-out and data.val_split={data.val_split!r} exclude each other; set one to "
            "0 / None.",
        )
    if data.val_fraction > 0 and data.mask_mode == "reference":
        _fail(
            "data.val_fraction",
            data.val_fraction,
            "the reference masks index the whole train split; set data.val_fraction=0 with "
            "mask_mode='reference' (the reference selects on the test split).",
        )
    if (
        data.val_fraction > 0
        and data.partial_labels_file is not None
        and partial_labels.cole_images_file(data.partial_labels_file) is None
    ):
        _fail(
            "data.val_fraction",
            data.val_fraction,
            "a partial-labels file indexes the whole train split; use data.val_split or 0 (only "
            "Cole et al.'s formatted_train_labels_obs.npy, named by image, can be carved).",
        )
    _choice(config, "data.val_labels", ("partial", "full"))
    _choice(config, "train.select_on", ("val", "test"))
    if train.select_on == "val" and data.val_split is None and data.val_fraction == 0:
        _fail(
            "train.select_on",
            "val",
            "there is no validation split: set data.val_split or data.val_fraction > 0, or "
            "select_on='test' (only to reproduce a paper that selects on the test set).",
        )
    if train.select_on == "val" and data.val_labels == "partial" and data.setting in ("ppl", "spl"):
        warnings.warn(
            f"config.data.setting={data.setting!r} keeps no negative label, so the validation "
            "split's partial labels give mAP 100 to every checkpoint and train.select_on='val' "
            "cannot choose; set data.val_labels='full' (Cole et al. validate on clean labels) to "
            "select on the validation split.",
            stacklevel=2,
        )
    if train.early_stop_drop < 0:
        _fail(
            "train.early_stop_drop", train.early_stop_drop, "must be >= 0 (0 = never stop early)."
        )
    if not 0.0 <= train.ema_decay < 1.0:
        _fail("train.ema_decay", train.ema_decay, "must be in [0, 1) (0 = no weight EMA).")
