"""Command-line entry point: `python -m mlrpl_jax.train --config configs/quickstart.py --workdir runs/qs`.

Config values can be overridden with `--config.a.b=value`; unknown keys are errors. On multi-host GPU/TPU
systems the same command runs on every host (jax.distributed is initialised from the cluster environment).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (checkpoints, metrics, TensorBoard)."
)
flags.mark_flags_as_required(["config", "workdir"])


def maybe_initialize_distributed() -> None:
    """Initialises jax.distributed when launched as one of several processes (SLURM, TPU pods, ...)."""
    import jax

    if any(
        k in os.environ for k in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES")
    ):
        try:
            jax.distributed.initialize()
        except (RuntimeError, ValueError) as e:  # single-process launch in such an environment
            print(f"jax.distributed not initialised ({e}); running as a single process.")


def main(argv):
    del argv
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax and grain log every save/read at INFO
    # Faster compilation of random initialisers on CPU (threefry's partitionable mode compiles
    # 4-D kernel draws ~5x slower on XLA:CPU); the state is created replicated, so nothing is lost.
    jax.config.update("jax_threefry_partitionable", False)
    maybe_initialize_distributed()
    from mlrpl_jax import trainer

    trainer.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
