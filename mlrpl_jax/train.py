"""Trains a method: `python -m mlrpl_jax.train --config configs/quickstart.py --workdir runs/qs`.

The config is a Python file whose `get_config()` returns an ml_collections ConfigDict; every key is
declared once, with a comment, in `configs/base.py` or in its method's `default_config()`
(`config.method_config`). A file whose `get_config` takes a method is run as
`--config configs/FILE.py:METHOD` (e.g. `configs/synthetic_transfer.py:sst`). Any key can be
overridden on the command line, `--config.data.known_proportion=0.1 --config.train.num_epochs=3`;
a misspelt key or a bad value is an error before anything is written. `--print_config` prints the
resolved config and exits.

The workdir holds config.json, metrics.jsonl, TensorBoard logs, checkpoints/, best/ and, when the
run ends, results.json. Running the same command again resumes from the newest checkpoint (or
re-evaluates a finished run). A different config for an existing workdir is refused, listing the
keys that differ, unless they are in `run_dir.HARMLESS_KEYS` (progress bar, worker counts, logging
cadence, ...); `--allow_config_change` accepts the change and records it in
workdir/config_changes.jsonl.

User errors (bad key or value, missing file, unprepared dataset, changed config) print one message
and exit with status 2. On clusters the same command runs on every host (jax.distributed is
initialised from the environment, `mlrpl_jax.launch`; README "Several hosts"). SIGTERM (a
preemption notice) saves a checkpoint at the next step on every process and exits with status 75;
the same command resumes there.
"""

import sys

from mlrpl_jax import cli

cli.quiet_logs()

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file: configs/FILE.py or configs/FILE.py:METHOD.", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (checkpoints, metrics, TensorBoard)."
)
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume an existing workdir with a config whose results-changing keys differ from the saved "
    "one; the change is recorded in workdir/config_changes.jsonl.",
)
flags.mark_flags_as_required(["config"])


def usage() -> str:
    """The --help text: this module's docstring and the list of methods."""
    from mlrpl_jax import methods

    return f"{__doc__}\nMethods: {', '.join(sorted(methods.METHODS))}.\n"


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {argv[1:]}; every setting is a --flag (see --help).")
    config = cli.config_value(_CONFIG)
    if _PRINT_CONFIG.value:
        from mlrpl_jax import config_validation

        config_validation.validate(config_validation.resolve_none(config))
        print(config)
        return
    if not _WORKDIR.value:
        cli.fail("--workdir is required (the run directory to write or resume).")
    from mlrpl_jax import launch

    launch.setup_process()
    from mlrpl_jax import preemption, trainer

    try:
        trainer.run(config, _WORKDIR.value, allow_config_change=_ALLOW_CHANGE.value)
    except preemption.Preempted as e:
        print(str(e), flush=True)
        sys.exit(preemption.EXIT_PREEMPTED)


if __name__ == "__main__":
    cli.run_absl(main, usage)
