"""ops package."""

from mlrpl_jax.ops.kmeans import KMeansResult, accumulate_by_class, batched_kmeans, pad_by_class

__all__ = ["KMeansResult", "accumulate_by_class", "batched_kmeans", "pad_by_class"]
