r"""Pretrains the CPU-scale backbone (ImageNet's role at CPU scale) and measures what it learned.

  python -m mlrpl_jax.pretrain --workdir runs/pretrain_synthetic \
      --out weights/synthetic_resnet18_w16.npz

Three stages, each safe to interrupt and rerun:

1. **Train** `--config` (default ``configs/pretrain_synthetic.py``: `plain` with every label
   known on the 40-class *pretraining world* of the synthetic scenes) in ``--workdir`` with the
   usual trainer, which resumes from the newest checkpoint there and skips a finished run.
2. **Export** the last checkpoint's backbone (params and BatchNorm statistics) as a torchvision-
   layout ``.npz`` state dict at ``--out`` (written atomically), the format
   ``config.model.backbone_weights`` reads; it is read back and checked before the command ends.
3. **Probe** the exported backbone on the *evaluation world* (``--probe_config``, default the
   transfer benchmark's ``configs/synthetic_transfer.py``): globally average-pooled layer4 features
   of its train and test images (evaluation transform, no augmentation), one L2-regularised
   logistic regression per class (scikit-learn, standardised features, C=1) fitted on the train
   split's full labels, test mAP. The same probe on a randomly initialised backbone (seed 0) is
   reported beside it, so the figure says how much the pretraining transfers. (The probe uses full
   labels of the evaluation world's train split: it measures the representation, it trains no
   method; no method's loss ever sees them.)

The figures (pretraining-world test mAP / OF1 / CF1 of the exported weights, probe mAPs, wall
times) are printed and written beside the weights as ``<out>.json``.
"""

from mlrpl_jax import cli

cli.quiet_logs()

import json
import os
import sys
import time
from typing import Any

from absl import flags
from ml_collections import config_flags

from mlrpl_jax import errors

_FLAGS: dict = {}
# The config flags' defaults (the files are relative to the repository root).
CONFIG_DEFAULTS = {
    "config": "configs/pretrain_synthetic.py",
    "probe_config": "configs/synthetic_transfer.py:plain",
}


def with_config_defaults(argv: list[str], defaults: dict[str, str]) -> list[str]:
    """`argv` with `--NAME=DEFAULT` inserted for each config flag NAME it does not set.

    ml_collections loads a default config file, applying the command line's `--NAME.KEY=...`
    overrides, as soon as the flag is *defined*, outside any error handling; given on the command
    line, the file is loaded while the command line is *parsed*, where `cli.run_absl` turns a
    misspelt key or a bad value into a message."""
    given = {a.split("=", 1)[0].lstrip("-") for a in argv[1:] if a.startswith("-")}
    return [argv[0], *(f"--{k}={v}" for k, v in defaults.items() if k not in given), *argv[1:]]


def _define_flags() -> None:
    """The command line's flags (defined only when run as a program: `mlrpl_jax.train` defines
    flags of the same names, and both modules may be imported in one process)."""
    _FLAGS["config"] = config_flags.DEFINE_config_file(
        "config", CONFIG_DEFAULTS["config"], "Pretraining config.", lock_config=True
    )
    _FLAGS["probe_config"] = config_flags.DEFINE_config_file(
        "probe_config",
        CONFIG_DEFAULTS["probe_config"],
        "Config whose data is the evaluation world of the linear probe.",
        lock_config=True,
    )
    _FLAGS["workdir"] = flags.DEFINE_string("workdir", None, "Run directory of the pretraining.")
    _FLAGS["out"] = flags.DEFINE_string("out", None, "Where to write the backbone weights (.npz).")
    _FLAGS["probe"] = flags.DEFINE_bool(
        "probe", True, "Run the linear probe on the evaluation world."
    )
    _FLAGS["print_config"] = flags.DEFINE_bool(
        "print_config", False, "Print the resolved configs and exit."
    )


def check_workdir_and_out(workdir: str | None, out: str | None) -> None:
    """Fails (status 2) unless --workdir is given and --out names a .npz file."""
    if not workdir:
        cli.fail("--workdir is required: the pretraining's run directory (created or resumed).")
    if not out:
        cli.fail("--out is required: the .npz file to write the weights to (e.g. weights/x.npz).")
    if not out.endswith(".npz"):
        cli.fail(f"--out={out!r} must end with .npz (the weights are written as a numpy .npz).")
    if os.path.isdir(out):
        cli.fail(f"--out={out!r} is a directory; give the path of the .npz file to write.")


def validated(holder):
    """The config of the config flag `holder`, validated as `mlrpl_jax.train` validates its
    config; a user error names the flag."""
    from mlrpl_jax import config_validation

    flag = holder.name
    path = flags.FLAGS[flag].config_filename.split(":", 1)[0]
    if not os.path.isfile(path):
        raise errors.MissingFileError(
            f"--{flag}: config file {path!r} does not exist (the default configs are relative to "
            "the repository root: run the command there, or give a path)."
        )
    try:
        config = cli.config_value(holder)
        config_validation.validate(config_validation.resolve_none(config))
    except errors.UserError as e:
        raise errors.ConfigError(f"--{flag}: {e}") from None
    return config


def print_configs(**configs) -> None:
    """Prints each config flag's resolved config (`--print_config`); None ones are skipped."""
    for name, config in configs.items():
        if config is not None:
            print(f"--{name}:\n{config}")


def final_state(config, workdir: str):
    """(TrainState, step) of `workdir`'s newest checkpoint, which must be the run's last step."""
    from mlrpl_jax import checkpointing, trainer

    exp = trainer.setup(config, pretrained=False)
    ckpt = checkpointing.Checkpointer(workdir, max_to_keep=config.checkpoint.max_to_keep,
                                      keep_best=False)  # fmt: skip
    state, step = ckpt.restore_state(exp.state, which="latest")
    ckpt.close()
    if step < exp.total_steps:
        raise errors.RunDirError(
            f"{workdir} holds step {step} of {exp.total_steps}: the run is not finished; train "
            "first (rerunning the pretraining command resumes it)."
        )
    return state, step


def train_timed(config, workdir: str) -> tuple[dict[str, Any], dict[str, float]]:
    """Trains `config` in `workdir` (resuming; nothing to do when finished) with the settings of
    `mlrpl_jax.train`; returns the start of the report ({'config', 'workdir', 'train_seconds'})
    and the final test metrics."""
    import jax

    from mlrpl_jax import trainer

    jax.config.update("jax_threefry_partitionable", False)  # as mlrpl_jax.train
    report: dict[str, Any] = {"config": config.to_dict(), "workdir": os.path.abspath(workdir)}
    start = time.perf_counter()
    final = trainer.run(config, workdir)
    report["train_seconds"] = time.perf_counter() - start  # ~0 when the run had finished
    return report, final


def export_backbone(config, workdir: str, out: str) -> dict[str, Any]:
    """Writes the backbone of `workdir`'s newest checkpoint to `out` (.npz, torchvision layout)
    and checks that it reads back into the same model. Returns {'step': ..., 'num_tensors': ...}."""
    import jax
    import numpy as np

    from mlrpl_jax.models import pretrained

    state, step = final_state(config, workdir)
    backbone = {"params": state.params["backbone"], "batch_stats": state.batch_stats["backbone"]}
    state_dict = pretrained.flax_resnet_to_torchvision(backbone)
    pretrained.save_npz(out, state_dict)
    reread = pretrained.torchvision_resnet_to_flax(pretrained.read_state_dict(out), backbone)
    for a, b in zip(jax.tree.leaves(reread), jax.tree.leaves(backbone), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(jax.device_get(b)))
    return {"step": step, "num_tensors": len(state_dict)}


def backbone_features(config, variables, source, batch_size: int = 100):
    """(N, D) globally average-pooled backbone features and (N, C) full labels of `source`
    (evaluation transform; ImageNet normalisation as every method's default)."""
    import jax
    import numpy as np

    from mlrpl_jax import models
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.methods import base

    backbone = models.make_backbone(config.model)

    @jax.jit
    def features(images):
        x = base.imagenet_normalize(config, images)
        return backbone.apply(variables, x, train=False).mean(axis=(1, 2))

    feats, labels = [], []
    for batch in pipeline.eval_batches(config.data, source, batch_size):
        valid = batch["valid"]
        feats.append(np.asarray(features(batch["image"]))[valid])
        labels.append(batch["targets"][valid])
    return np.concatenate(feats), np.concatenate(labels)


def linear_probe(config, weights: str | None, seed: int = 0) -> float:
    """Test mAP (%) of per-class logistic regressions on the frozen backbone's pooled features.

    Args:
        config: a config of the evaluation world (its `data` and `model`).
        weights: torchvision-layout backbone weights, or None for a random init (`seed`).
    """
    import jax
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mlrpl_jax import metrics, models
    from mlrpl_jax.data import pipeline
    from mlrpl_jax.models import pretrained

    size = pipeline.image_size(config.data)
    backbone = models.make_backbone(config.model)
    variables = backbone.init(jax.random.key(seed), np.zeros((1, size, size, 3)), train=False)
    if weights is not None:
        variables = pretrained.torchvision_resnet_to_flax(
            pretrained.read_state_dict(weights), variables
        )
    splits = pipeline.make_splits(config.data)
    x_train, y_train = backbone_features(config, variables, splits.train)
    x_test, y_test = backbone_features(config, variables, splits.test)
    probe = make_pipeline(
        StandardScaler(), OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000))
    )
    probe.fit(x_train, y_train)
    scores = probe.decision_function(x_test)
    return float(np.mean(metrics.average_precision(scores, y_test)) * 100)


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    from mlrpl_jax.metric_writer import atomic_write_json

    # Every input is checked before the (long) training starts.
    workdir, out = _FLAGS["workdir"].value, _FLAGS["out"].value
    if not _FLAGS["print_config"].value:
        check_workdir_and_out(workdir, out)
    config = validated(_FLAGS["config"])
    probe_config = validated(_FLAGS["probe_config"]) if _FLAGS["probe"].value else None
    if _FLAGS["print_config"].value:
        print_configs(config=config, probe_config=probe_config)
        return
    from mlrpl_jax import launch

    launch.setup_process()
    report, final = train_timed(config, workdir)
    report["pretraining_world_test"] = {k: final[k] for k in ("mAP", "OF1", "CF1", "OP", "OR")}
    report["export"] = export_backbone(config, workdir, out)
    print(f"Wrote {out} (backbone of step {report['export']['step']}).")
    if probe_config is not None:
        start = time.perf_counter()
        report["linear_probe_test_mAP"] = {
            "pretrained": linear_probe(probe_config, out),
            "random_init": linear_probe(probe_config, None),
        }
        report["probe_seconds"] = time.perf_counter() - start
        report["probe_data"] = probe_config.data.synthetic.to_dict()
    atomic_write_json(out + ".json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    sys.argv = with_config_defaults(sys.argv, CONFIG_DEFAULTS)
    _define_flags()
    cli.run_absl(main, __doc__)
