"""data tfds_builders package."""
