"""Process set-up shared by the entry points: jax.distributed on clusters, logging, jax settings.

Several processes (hosts) run the same command; `maybe_initialize_distributed` decides from the
environment whether this process is one of several, and then initialises `jax.distributed` or
stops. It never falls back to a single process when the environment says several were launched
(that would run N independent jobs in one workdir). The environments read, in this order:

- `MLRPL_DISTRIBUTED`: '0' never initialises (one process, whatever the rest says); '1' always
  calls `jax.distributed.initialize()` with jax's own cluster detection (e.g. a Cloud TPU pod,
  whose workers jax finds through the TPU metadata); unset or 'auto' = the rules below.
- Explicit: `JAX_COORDINATOR_ADDRESS` (host:port of process 0), `JAX_NUM_PROCESSES`,
  `JAX_PROCESS_ID` (0 .. n-1), optionally `JAX_LOCAL_DEVICE_IDS`: several GPU hosts, or any
  launcher. All three are required together.
- SLURM: `SLURM_JOB_ID` with `SLURM_NTASKS` > 1 (jax reads `SLURM_STEP_NODELIST`, `SLURM_PROCID`,
  `SLURM_LOCALID`, and `JAX_COORDINATOR_PORT` if set). Every task must be started by `srun`.
- Open MPI: `OMPI_COMM_WORLD_SIZE` > 1 (`mpirun`).
- TPU pods on GKE / multislice: `TPU_WORKER_HOSTNAMES` or `TPU_PROCESS_ADDRESSES` with more than
  one host, or `MEGASCALE_COORDINATOR_ADDRESS`.

`MLRPL_DISTRIBUTED_TIMEOUT` (seconds, default 300) bounds the wait for the other processes. jax
aborts the process (status 134) when initialisation fails after it started connecting; a missing
or inconsistent variable, or an unreachable coordinator seen from a process other than 0, is a
`LaunchError` (status 2). Either way nothing has been written: initialisation happens first.

After initialisation, processes other than 0 print nothing on stdout (their stderr, where errors
go, stays): the run's lines and files come from process 0 only.
"""

import os
import socket
import sys
import time
from typing import NamedTuple

from mlrpl_jax.errors import LaunchError

DEFAULT_TIMEOUT_S = 300


class Launch(NamedTuple):
    """What the environment says about this process's launch."""

    source: str  # 'explicit', 'slurm', 'openmpi', 'tpu' or 'forced' (MLRPL_DISTRIBUTED=1)
    num_processes: int | None  # None: jax's detection decides
    process_id: int | None
    coordinator: str | None  # host:port, when the environment names it


def _int(environ, name: str) -> int:
    value = environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not an integer.") from None


def _hosts(value: str | None) -> int:
    return len([h for h in (value or "").split(",") if h.strip()])


def detect(environ=None) -> Launch | None:
    """The multi-process launch this environment describes, or None for a single process.

    Raises LaunchError when the environment is inconsistent (e.g. a coordinator address without a
    process count)."""
    environ = os.environ if environ is None else environ
    mode = environ.get("MLRPL_DISTRIBUTED", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise LaunchError(f"MLRPL_DISTRIBUTED={mode!r}: use 0 (never), 1 (always) or auto.")
    if mode == "0":
        return None
    coordinator = environ.get("JAX_COORDINATOR_ADDRESS")
    if coordinator:
        missing = [v for v in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if not environ.get(v)]
        if missing:
            raise LaunchError(
                f"JAX_COORDINATOR_ADDRESS={coordinator} is set but {' and '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not: a launch on several hosts sets all "
                "three on every process (JAX_NUM_PROCESSES = the number of processes, "
                "JAX_PROCESS_ID = 0 .. n-1, process 0 at JAX_COORDINATOR_ADDRESS). Unset "
                "JAX_COORDINATOR_ADDRESS to run as a single process."
            )
        n, pid = _int(environ, "JAX_NUM_PROCESSES"), _int(environ, "JAX_PROCESS_ID")
        if n < 1 or not 0 <= pid < n:
            raise LaunchError(f"JAX_PROCESS_ID={pid} is not in 0 .. JAX_NUM_PROCESSES-1 = {n - 1}.")
        return Launch("explicit", n, pid, coordinator)
    if "SLURM_JOB_ID" in environ and "SLURM_NTASKS" in environ:
        n = _int(environ, "SLURM_NTASKS")
        if n > 1:
            if "SLURM_STEP_NODELIST" not in environ or "SLURM_PROCID" not in environ:
                raise LaunchError(
                    f"this SLURM job has {n} tasks (SLURM_NTASKS) but this process was not started "
                    "by srun (no SLURM_STEP_NODELIST / SLURM_PROCID): run the command as `srun "
                    "python -m ...` so that every task runs it, or set MLRPL_DISTRIBUTED=0 to run "
                    "one process."
                )
            return Launch("slurm", n, _int(environ, "SLURM_PROCID"), None)
    if "OMPI_COMM_WORLD_SIZE" in environ and _int(environ, "OMPI_COMM_WORLD_SIZE") > 1:
        return Launch("openmpi", _int(environ, "OMPI_COMM_WORLD_SIZE"),
                      _int(environ, "OMPI_COMM_WORLD_RANK"), None)  # fmt: skip
    hosts = max(_hosts(environ.get("TPU_WORKER_HOSTNAMES")),
                _hosts(environ.get("TPU_PROCESS_ADDRESSES")))  # fmt: skip
    if hosts > 1 or environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        return Launch("tpu", None, None, None)
    if mode == "1":
        return Launch("forced", None, None, None)
    return None


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Waits until process 0's coordinator accepts connections (processes other than 0), so that
    an unreachable one is a message rather than jax's abort."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"could not reach the coordinator at JAX_COORDINATOR_ADDRESS={address} within "
                    f"{timeout_s:g} s ({e}): process 0 must be running the same command on that "
                    "host and port (MLRPL_DISTRIBUTED_TIMEOUT sets the wait)."
                ) from None
            time.sleep(0.5)


def maybe_initialize_distributed(environ=None) -> Launch | None:
    """Initialises jax.distributed when the environment says this is one of several processes
    (`detect`), checks that jax then sees that many processes, and silences stdout on processes
    other than 0. Returns the launch, or None for a single process."""
    import jax

    environ = os.environ if environ is None else environ
    launch = detect(environ)
    if launch is None:
        return None
    timeout = int(environ.get("MLRPL_DISTRIBUTED_TIMEOUT", DEFAULT_TIMEOUT_S))
    who = (f"process {launch.process_id} of {launch.num_processes}"
           if launch.num_processes else "one of several processes")  # fmt: skip
    print(f"jax.distributed: {who} ({launch.source} launch); waiting up to {timeout} s for the "
          "others.", file=sys.stderr, flush=True)  # fmt: skip
    kwargs = {"initialization_timeout": timeout}
    if launch.source == "explicit":
        if launch.process_id != 0:
            _wait_for_coordinator(launch.coordinator, timeout)
        kwargs.update(coordinator_address=launch.coordinator,
                      num_processes=launch.num_processes, process_id=launch.process_id)  # fmt: skip
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as e:
        raise LaunchError(
            f"jax.distributed could not be initialised for this {launch.source} launch ({e}). "
            "The run does not fall back to a single process: every process would train alone "
            "in the same workdir. Fix the launch, or set MLRPL_DISTRIBUTED=0 for one process."
        ) from e
    if launch.num_processes is not None and jax.process_count() != launch.num_processes:
        raise LaunchError(
            f"the {launch.source} environment says {launch.num_processes} processes but "
            f"jax.distributed sees {jax.process_count()}."
        )
    if jax.process_index() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    return launch


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
