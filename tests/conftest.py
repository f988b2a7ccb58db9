"""Test set-up: 8 simulated CPU devices, fast compilation, a per-session compilation cache."""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
_SESSION_PID, _SESSION_DIRS = os.getpid(), []


def _session_dir(prefix: str) -> str:
    """A temporary directory removed when this test session's process exits (not when a process
    forked from it does: mutmut's workers are)."""
    path = tempfile.mkdtemp(prefix=prefix)
    _SESSION_DIRS.append(path)
    return path


@atexit.register
def _remove_session_dirs() -> None:
    if os.getpid() == _SESSION_PID:
        for path in _SESSION_DIRS:
            shutil.rmtree(path, ignore_errors=True)


# Caches the library writes (label indexes of read-only datasets, label statistics) stay per session.
os.environ["MLRPL_JAX_CACHE"] = _session_dir("mlrpl_jax_test_user_cache_")

import jax

# Tests exercise tiny models for a few steps: XLA's optimisation passes cost more than they save
# (as in flax's examples/*/train_test.py). Identical programs compiled by several tests are cached.
jax.config.update("jax_disable_most_optimizations", True)
# scripts/mutation_score.py shares one cache between its mutants' processes (MLRPL_JAX_TEST_CACHE_DIR).
jax.config.update(
    "jax_compilation_cache_dir",
    os.environ.get("MLRPL_JAX_TEST_CACHE_DIR") or _session_dir("mlrpl_jax_test_cache_"),
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from absl import flags

# grain's worker processes read absl flags; the CLI parses them in app.run, tests mark them parsed.
flags.FLAGS.mark_as_parsed()
# As in mlrpl_jax/train.py: much faster compilation of random initialisers on XLA:CPU.
jax.config.update("jax_threefry_partitionable", False)


@pytest.fixture(autouse=True)
def _trace_afresh_when_mutmut_maps_tests():
    """mutmut's statistics run (scripts/mutation_score.py) records which tests call each function,
    and a jitted function is only called while it is traced: each test starts with JAX's caches
    empty so that every test that would trace a function is recorded. No-op otherwise."""
    if os.environ.get("MUTANT_UNDER_TEST") == "stats":
        jax.clear_caches()
    yield
