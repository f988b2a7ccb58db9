"""`synthetic_scenes`: procedurally generated multi-label scenes, built with TFDS.

Importing this package registers the ``synthetic_scenes`` TFDS builder.
"""

from mlrpl_jax.data.tfds_builders.synthetic_scenes.synthetic_scenes import (
    SHAPES,
    SPLIT_INDEX,
    TEXTURES,
    ClassWorld,
    SyntheticScenes,
    SyntheticScenesConfig,
    class_world,
    config_name,
    generate_example,
    load_source,
    make_builder,
    prepare,
)

__all__ = [
    "SHAPES",
    "SPLIT_INDEX",
    "TEXTURES",
    "ClassWorld",
    "SyntheticScenes",
    "SyntheticScenesConfig",
    "class_world",
    "config_name",
    "generate_example",
    "load_source",
    "make_builder",
    "prepare",
]
