"""`vg200`: the VG-200 benchmark (Visual Genome, 200 categories) as a TFDS builder.

Importing this package registers the ``vg200`` TFDS builder.
"""

from mlrpl_jax.data.tfds_builders.vg200.vg200 import (
    IMAGE_DIR,
    LABELS_JSON,
    MANUAL_DIR_LAYOUT,
    NAMES_FILES,
    NUM_CLASSES,
    PLACEHOLDER_NAMES,
    SPLIT_LISTS,
    TEST_LIST,
    TRAIN_LIST,
    ManualFiles,
    Vg200,
    class_names,
    default_manual_dir,
    is_prepared,
    make_builder,
    multi_hot,
    prepare,
    prepare_instructions,
    read_class_names,
    read_labels_index,
    read_manual_dir,
    read_split_list,
)

__all__ = [
    "IMAGE_DIR",
    "LABELS_JSON",
    "MANUAL_DIR_LAYOUT",
    "NAMES_FILES",
    "NUM_CLASSES",
    "PLACEHOLDER_NAMES",
    "SPLIT_LISTS",
    "TEST_LIST",
    "TRAIN_LIST",
    "ManualFiles",
    "Vg200",
    "class_names",
    "default_manual_dir",
    "is_prepared",
    "make_builder",
    "multi_hot",
    "prepare",
    "prepare_instructions",
    "read_class_names",
    "read_labels_index",
    "read_manual_dir",
    "read_split_list",
]
