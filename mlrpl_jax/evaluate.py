"""Evaluates a trained run: `python -m mlrpl_jax.evaluate --config configs/quickstart.py --workdir runs/qs`.

Restores the best checkpoint (or `--checkpoint=latest`) of the workdir, scores the test split, prints
the metrics table and writes workdir/eval_<which>.json. `--config` (with the same overrides) must
describe the run in the workdir: a config whose results-changing keys differ from the saved
config.json is refused, listing them. The pretrained-weight file a run started from is not needed
(every weight is in the checkpoint). User errors print one message and exit with status 2.
"""

from mlrpl_jax import cli

cli.quiet_logs()

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "The run's config file (configs/FILE.py[:METHOD] and overrides).",
    lock_config=True,
)  # fmt: skip
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory written by mlrpl_jax.train.")
_CHECKPOINT = flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "Which checkpoint.")
flags.mark_flags_as_required(["config", "workdir"])


def evaluate_workdir(config, workdir: str, which: str = "best") -> dict[str, float]:
    """Restores `which` checkpoint of `workdir`, evaluates it on the test split and returns the
    metrics of its raw weights; with weight EMA (`train.ema_decay` > 0) the EMA weights' metrics
    are printed and written too (eval_<which>.json 'ema_metrics').

    Raises `errors.RunDirError` when `workdir` holds no run, or a run of another config."""
    import jax
    from etils import epath

    from mlrpl_jax import checkpointing, config_validation, run_dir, trainer
    from mlrpl_jax.metric_writer import atomic_write_json, format_table

    run_dir.check_is_run(workdir)
    config_validation.validate(config_validation.resolve_none(config))
    run_dir.check_same_config(workdir, config)
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
        atomic_write_json(epath.Path(workdir) / f"eval_{which}.json", record)
        for weights, values in results.items():
            title = (
                f"{config.method} on {config.data.name}, {which} checkpoint (step {step}"
                f"{', EMA weights' if weights == 'ema' else ''}): test (%)"
            )
            print(format_table(values, title=title))
    return metrics


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    config = cli.config_value(_CONFIG)
    from mlrpl_jax import launch

    launch.setup_process()
    evaluate_workdir(config, _WORKDIR.value, _CHECKPOINT.value)


if __name__ == "__main__":
    cli.run_absl(main, __doc__)
