"""Process set-up shared by the entry points: jax.distributed on clusters, logging, jax settings."""

import os


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


def setup_process() -> None:
    """What every training or evaluation command does first: quiet library logs, the CPU
    initialiser setting of `mlrpl_jax.train`, and jax.distributed on a cluster."""
    import jax
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax and grain log every save/read at INFO
    # Faster compilation of random initialisers on CPU (threefry's partitionable mode compiles
    # 4-D kernel draws ~5x slower on XLA:CPU); the state is created replicated, so nothing is lost.
    jax.config.update("jax_threefry_partitionable", False)
    maybe_initialize_distributed()
