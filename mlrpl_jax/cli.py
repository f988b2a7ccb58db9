"""What every command-line entry point shares: user errors as a message, `--help`, config loading.

A user error (`mlrpl_jax.errors.UserError`: a bad config key or value, a missing or unreadable file,
an unprepared or damaged dataset, a changed config on resume) prints as

    error: <what is wrong, which key or file, how to fix it>

on stderr, and the process exits with status 2 (as argparse does for a bad command line). Any other
exception is unexpected and keeps its traceback (status 1).

The absl programs (`mlrpl_jax.train`, `.evaluate`, `.pretrain`, `.pretrain_clip`) run through
`run_absl`, which also turns absl's and ml_collections' flag-parsing failures (a misspelt config key
in `--config.a.b=1`, a value of the wrong type, a config file that does not exist or whose
`get_config` raises a user error) into such messages; the argparse programs (`report`, `scripts/`)
wrap their body in `user_errors()`.
"""

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from mlrpl_jax.errors import ConfigError, UserError

EXIT_USER_ERROR = 2


def fail(message: str) -> None:
    """Prints `error: message` on stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Runs the body; a `UserError` raised in it ends the process with its message and status 2."""
    try:
        yield
    except UserError as e:
        fail(str(e))


def _root_cause(e: BaseException) -> BaseException:
    """The innermost exception of `e`'s chain (`raise ... from`, or raised while handling)."""
    seen = set()
    while id(e) not in seen:
        seen.add(id(e))
        nxt = e.__cause__ or e.__context__
        if nxt is None:
            break
        e = nxt
    return e


def _config_error(e: BaseException, argv: list[str]) -> str | None:
    """A one-message explanation of a config-loading failure, or None when it is not the user's."""
    root = _root_cause(e)
    if isinstance(root, UserError):
        return str(root)
    text = str(e)
    missing = None
    if "Failed loading config file" in text and "No such file or directory" in text:
        missing = text.split("No such file or directory:")[-1].strip().splitlines()[0]
        missing = missing.strip("'\" ")
    elif isinstance(root, FileNotFoundError) and root.filename:
        missing = root.filename
    if missing is not None:
        return (
            f"config file {missing!r} does not exist (--config takes a path such as "
            "configs/quickstart.py, or configs/FILE.py:METHOD for a file whose get_config takes a "
            "method)."
        )
    overrides = [a.split("=")[0] for a in argv if re.match(r"--\w+\.", a)]
    if isinstance(root, (KeyError, AttributeError)) and overrides:
        detail = str(root.args[0]) if root.args else str(root)
        detail = detail.strip("'\"").replace("\\n", " ").replace("\n", " ")
        key = re.split(r"['\"\s]", detail.strip("'\""))[0]
        named = [a for a in overrides if f".{key}" in a] or overrides
        return (
            f"unknown config key in {' '.join(named)}: {detail}. Every key is declared in "
            "configs/base.py or in its method's default_config(); "
            "`--print_config` prints the resolved config."
        )
    return None


def _flag_error_message(e: Exception) -> str:
    """absl's flag error text without the traceback it sometimes embeds."""
    text = str(e).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    # A config file whose get_config raised: absl embeds the traceback; keep its last line.
    if any(line.lstrip().startswith("Traceback") or line.lstrip().startswith("File ")
           for line in lines):  # fmt: skip
        lines = [lines[0].split(":")[0] + ": " + lines[-1].strip()]
    return " ".join(lines)


def run_absl(main: Callable[[list[str]], Any], usage: str | Callable[[], str]) -> None:
    """`absl.app.run(main)` with user errors as messages (status 2) and `--help` printing `usage`
    (a text, or a function returning it) and the program's flags (status 0)."""
    from absl import app, flags

    def parse(argv: list[str]) -> list[str]:
        if any(a in ("--help", "-h", "--helpshort", "-help") for a in argv[1:]):
            print((usage() if callable(usage) else usage).strip() + "\n")
            print("Flags:")
            print(flags.FLAGS.main_module_help() or flags.FLAGS.module_help(sys.argv[0]))
            sys.exit(0)
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            message = _config_error(e, argv) or _flag_error_message(e)
            fail(f"{message}\nRun with --help for the flags.")
        except (UserError, KeyError, AttributeError, OSError) as e:
            message = _config_error(e, argv)
            if message is None:
                raise
            fail(message)
        raise AssertionError  # unreachable

    def wrapped(argv: list[str]) -> Any:
        with user_errors():
            return main(argv)

    app.run(wrapped, flags_parser=parse)


def config_value(holder: Any, argv: list[str] | None = None) -> Any:
    """The config of a `config_flags.DEFINE_config_file` flag; a config file that fails to load
    (ml_collections defers that error to the first read) becomes a user error."""
    try:
        value = holder.value
        value.keys()  # a file that failed to load is a stand-in that raises on first use
        return value
    except (OSError, UserError, KeyError, AttributeError) as e:
        message = _config_error(e, list(argv if argv is not None else sys.argv))
        if message is None:
            raise
        raise ConfigError(message) from None


def quiet_logs() -> None:
    """TensorFlow's C++ logs off (set before TensorFlow loads)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # TensorFlow (imported only to prepare catalogue datasets) announces its oneDNN kernels at
    # import through absl's C++ log, which ignores the level above.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
