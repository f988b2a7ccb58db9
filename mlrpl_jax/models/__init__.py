"""Models: backbones (ResNet), heads, and construction from the config."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mlrpl_jax.models import resnet

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_config: ml_collections.ConfigDict):
    """The computation dtype of `model_config.dtype` ('float32' | 'bfloat16')."""
    return _DTYPES[model_config.dtype]


def make_backbone(model_config: ml_collections.ConfigDict) -> nn.Module:
    """Builds the ResNet named by `model_config.backbone`; returns (B, H, W, D) feature maps."""
    return resnet.RESNETS[model_config.backbone](
        width=model_config.width,
        avg_pool_2x2=model_config.avg_pool_2x2,
        frozen_stages=model_config.frozen_stages,
        dtype=compute_dtype(model_config),
    )


def backbone_frozen_params(model_config: ml_collections.ConfigDict) -> tuple[tuple[str, ...], ...]:
    """Parameter path prefixes of the frozen backbone stages, below the model's 'backbone' scope."""
    return tuple(("backbone",) + p for p in resnet.frozen_path_prefixes(model_config.frozen_stages))
