"""Shared test helpers."""

from configs import tiny


def tiny_run_config(data_dir, **overrides):
    """configs/tiny.py with its TFDS data in `data_dir` and dotted-key `overrides`."""
    config = tiny.get_config()
    config.data.data_dir = str(data_dir)
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config
