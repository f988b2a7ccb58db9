"""Test set-up: 8 simulated CPU devices, fast compilation, a per-session compilation cache."""

import os
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Caches the library writes (label indexes of read-only datasets, label statistics) stay per session.
os.environ["MLRPL_JAX_CACHE"] = tempfile.mkdtemp(prefix="mlrpl_jax_test_user_cache_")

import jax

# Tests exercise tiny models for a few steps: XLA's optimisation passes cost more than they save
# (as in flax's examples/*/train_test.py). Identical programs compiled by several tests are cached.
jax.config.update("jax_disable_most_optimizations", True)
jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="mlrpl_jax_test_cache_"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

from absl import flags

# grain's worker processes read absl flags; the CLI parses them in app.run, tests mark them parsed.
flags.FLAGS.mark_as_parsed()
# As in mlrpl_jax/train.py: much faster compilation of random initialisers on XLA:CPU.
jax.config.update("jax_threefry_partitionable", False)
