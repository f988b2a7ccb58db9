"""Global-pooling linear classifier on top of a backbone (the `plain` baseline's model)."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class GlobalPoolClassifier(nn.Module):
    """backbone -> global average pooling -> linear head.

    Attributes:
      backbone: module mapping images (B, H, W, 3) to feature maps (B, H', W', D).
      num_classes: C.
    """

    backbone: nn.Module
    num_classes: int

    @nn.compact
    def __call__(self, images: jax.Array, train: bool) -> tuple[jax.Array, dict[str, Any]]:
        """Args: images (B, H, W, 3) normalised float. Returns logits (B, C) float32 and
        aux {'features': (B, D) pooled features}."""
        feature_map = self.backbone(images, train=train)
        features = jnp.mean(feature_map.astype(jnp.float32), axis=(1, 2))
        logits = nn.Dense(self.num_classes, name="head")(features)
        return logits, {"features": features}
