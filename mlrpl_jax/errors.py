"""Errors the person running a command can fix, told apart from bugs.

A `UserError` says what is wrong, which config key or file, and how to fix it; the command-line
entry points (`mlrpl_jax.cli`) print its message alone on stderr and exit with status 2. Every
other exception is unexpected and keeps its traceback.

The subclasses also derive from the built-in exception a library caller would expect
(`ConfigError` is a `ValueError`, `MissingFileError` a `FileNotFoundError`, ...), so code that
catches those keeps working. This module imports nothing, so every layer (data, models, methods)
can raise them.
"""


class UserError(Exception):
    """An error in what the user asked for: a config value, a file, a dataset, a run directory."""


class ConfigError(UserError, ValueError):
    """A config key or value that cannot work (unknown key, value out of range, bad combination)."""


class InputError(UserError, ValueError):
    """A file the user supplied that cannot be read as what it should be (labels, weights, ...)."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or directory the config names does not exist."""


class DatasetError(UserError, RuntimeError):
    """A dataset that is not prepared, or whose prepared files are damaged."""


class RunDirError(UserError, RuntimeError):
    """A run directory that cannot be used as asked (another config, damaged checkpoints)."""


class TrainingDiverged(UserError, FloatingPointError):
    """Training produced non-finite values or a loss that grew far beyond its start."""


class LaunchError(UserError, RuntimeError):
    """A multi-process launch whose environment is inconsistent or whose processes cannot meet."""
