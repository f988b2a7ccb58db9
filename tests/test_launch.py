"""`mlrpl_jax.launch.detect`: which environments mean several processes, and which are errors."""

import pytest

from mlrpl_jax import launch
from mlrpl_jax.errors import LaunchError

SLURM_STEP = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "4", "SLURM_PROCID": "2", "SLURM_LOCALID": "0",
              "SLURM_STEP_NODELIST": "node[001-002]"}  # fmt: skip


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "1", "SLURM_PROCID": "0"},  # a one-task job
        {"OMPI_COMM_WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "0"},
        {"TPU_WORKER_HOSTNAMES": "localhost"},  # a single-host TPU VM
        {**SLURM_STEP, "MLRPL_DISTRIBUTED": "0"},  # forced off
        {"JAX_COORDINATOR_ADDRESS": "h:1", "MLRPL_DISTRIBUTED": "0"},
    ],
)
def test_single_process_environments(environ):
    assert launch.detect(environ) is None


def test_multi_process_environments():
    explicit = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "3",
                "JAX_PROCESS_ID": "2"}  # fmt: skip
    assert launch.detect(explicit) == launch.Launch("explicit", 3, 2, "10.0.0.1:1234")
    assert launch.detect(SLURM_STEP) == launch.Launch("slurm", 4, 2, None)
    ompi = {"OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "5"}
    assert launch.detect(ompi) == launch.Launch("openmpi", 8, 5, None)
    assert launch.detect({"TPU_WORKER_HOSTNAMES": "t0,t1,t2,t3"}).source == "tpu"
    assert launch.detect({"MEGASCALE_COORDINATOR_ADDRESS": "c:8080"}).source == "tpu"
    assert launch.detect({"MLRPL_DISTRIBUTED": "1"}).source == "forced"
    # The explicit variables win over a scheduler's (a launcher inside a SLURM job).
    assert launch.detect({**SLURM_STEP, **explicit}).source == "explicit"


@pytest.mark.parametrize(
    ("environ", "needles"),
    [
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, ["JAX_NUM_PROCESSES and JAX_PROCESS_ID are not"]),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2"},
         ["JAX_PROCESS_ID is not"]),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
         ["JAX_PROCESS_ID=2 is not in 0 .. JAX_NUM_PROCESSES-1 = 1"]),
        ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"},
         ["JAX_NUM_PROCESSES='two' is not an integer"]),
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"}, ["2 tasks", "not started by srun", "srun"]),
        ({"MLRPL_DISTRIBUTED": "yes"}, ["MLRPL_DISTRIBUTED='yes'"]),
    ],
)  # fmt: skip
def test_inconsistent_environments_are_errors(environ, needles):
    with pytest.raises(LaunchError) as e:
        launch.detect(environ)
    for needle in needles:
        assert needle in str(e.value)
