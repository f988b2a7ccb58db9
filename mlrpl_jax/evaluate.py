"""Evaluate a trained run: `python -m mlrpl_jax.evaluate --config configs/quickstart.py --workdir runs/qs`.

Restores the best checkpoint (or `--checkpoint=latest`) of the workdir, scores the test split, prints the
metrics table and writes workdir/eval_<which>.json. The pretrained-weight file a run started from is not
needed (every weight is in the checkpoint).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by mlrpl_jax.train.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
flags.mark_flags_as_required(["config", "workdir"])


def evaluate_workdir(config, workdir: str, which: str = "best") -> dict[str, float]:
    """Restores `which` checkpoint of `workdir`, evaluates it on the test split and returns the
    metrics of its raw weights; with weight EMA (`train.ema_decay` > 0) the EMA weights' metrics
    are printed and written too (eval_<which>.json 'ema_metrics')."""
    import jax

    from mlrpl_jax import checkpointing, trainer
    from mlrpl_jax.metric_writer import atomic_write_json, format_table

    # Everything, the pretrained backbone included, comes from the checkpoint: the weight file
    # that started the run is not needed.
    exp = trainer.setup(config, pretrained=False)
    ckpt = checkpointing.Checkpointer(
        workdir, max_to_keep=config.checkpoint.max_to_keep, keep_best=True
    )
    state, step = ckpt.restore_state(exp.state, which=which)
    scored = trainer.evaluate_weights(exp, state, "test", tuple(exp.eval_fns))
    results = {w: values for w, (values, _, _) in scored.items()}
    ckpt.close()
    metrics = results["raw"]
    if jax.process_index() == 0:
        record = {"step": step, "metrics": metrics}
        if "ema" in results:
            record["ema_metrics"] = results["ema"]
        atomic_write_json(os.path.join(workdir, f"eval_{which}.json"), record)
        for weights, values in results.items():
            title = (
                f"{config.method} on {config.data.name}, {which} checkpoint (step {step}"
                f"{', EMA weights' if weights == 'ema' else ''}): test (%)"
            )
            print(format_table(values, title=title))
    return metrics


def main(argv):
    del argv
    from absl import logging

    from mlrpl_jax.train import maybe_initialize_distributed

    logging.set_verbosity(logging.WARNING)
    maybe_initialize_distributed()
    evaluate_workdir(_CONFIG.value, _WORKDIR.value, _CHECKPOINT.value)


if __name__ == "__main__":
    app.run(main)
