"""mlrpl_jax: multi-label image recognition with partial labels in JAX/Flax."""

__version__ = "0.1.0"
