"""Loss functions: pure functions of arrays, no Flax or config dependency."""

from mlrpl_jax.losses.partial_bce import partial_bce

__all__ = ["partial_bce"]
