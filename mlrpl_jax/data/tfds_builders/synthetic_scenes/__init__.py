"""`synthetic_scenes`: procedurally generated multi-label scenes, built with TFDS.

Importing this package registers the ``synthetic_scenes`` TFDS builder.
"""

from mlrpl_jax.data.tfds_builders.synthetic_scenes.synthetic_scenes import (
    CAPTION_WORDS,
    COLOUR_NAMES,
    SHAPES,
    SPLIT_INDEX,
    TEXTURE_ADJECTIVES,
    TEXTURES,
    ClassWorld,
    SyntheticScenes,
    SyntheticScenesConfig,
    class_names,
    class_world,
    config_name,
    generate_example,
    load_source,
    make_builder,
    prepare,
)

__all__ = [
    "CAPTION_WORDS",
    "COLOUR_NAMES",
    "SHAPES",
    "SPLIT_INDEX",
    "TEXTURES",
    "TEXTURE_ADJECTIVES",
    "ClassWorld",
    "SyntheticScenes",
    "SyntheticScenesConfig",
    "class_names",
    "class_world",
    "config_name",
    "generate_example",
    "load_source",
    "make_builder",
    "prepare",
]
