"""A run directory that never lies: its config.json describes the run that wrote its checkpoints.

A workdir's `config.json` is written once, when the run starts. Resuming it, or re-evaluating a
finished run, with a config that differs from the saved one in any key that can change results is
refused (`errors.RunDirError`, listing the keys with the saved and the new value), and config.json
is left byte-identical. Keys that cannot change results are listed in `HARMLESS_KEYS`; they may
differ freely (config.json keeps the values the run started with). `allow_change=True` (the
`--allow_config_change` flag of `mlrpl_jax.train`) accepts a results-changing difference: the
change (step, keys, old and new values) is appended to `config_changes.jsonl` and config.json
then holds the new config, so the old values stay on record.

The workdir may be any path `etils.epath` handles (``gs://...``); every file goes through it.
"""

import json
import os
import time
from typing import Any

from etils import epath

from mlrpl_jax.errors import RunDirError

CONFIG_FILE = "config.json"
CHANGES_FILE = "config_changes.jsonl"

# Keys that change how a run is executed or reported, never what it computes.
HARMLESS_KEYS = frozenset({
    "train.progress_bar",  # a terminal bar
    "train.log_every_steps",  # how often train metrics are averaged and written
    "train.eval_batch_size",  # evaluation scores each example alone (BatchNorm in inference mode)
    "train.divergence_factor",  # only whether a diverging run is stopped
    "data.worker_count",  # grain worker processes: the same elements in the same order
    "data.eval_worker_count",
    "data.read_threads",
    "data.data_dir",  # where the same prepared data is read from (a moved or mounted copy)
    "data.cache_dir",  # where label statistics are cached
    "checkpoint.every_epochs",  # how often state is saved (the best checkpoint is kept apart)
    "checkpoint.max_to_keep",
})  # fmt: skip


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} of a nested dict (a `ConfigDict.to_dict()` or a parsed config.json), with
    values as JSON reads them back (tuples become lists)."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.loads(json.dumps(value))
    return out


def config_dict(config: Any) -> dict[str, Any]:
    """The JSON-ready dict of a ConfigDict, as config.json stores it."""
    return json.loads(json.dumps(config.to_dict(), sort_keys=True))


def differences(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{key: (saved value, new value)} of every key outside `HARMLESS_KEYS` whose value differs
    (a key present on one side only reads '<absent>' on the other)."""
    a, b = flatten(saved), flatten(new)
    absent = "<absent>"
    return {
        k: (a.get(k, absent), b.get(k, absent))
        for k in sorted(set(a) | set(b))
        if k not in HARMLESS_KEYS and a.get(k, absent) != b.get(k, absent)
    }


def read_saved_config(workdir: str | os.PathLike) -> dict | None:
    """The config.json of `workdir`, or None when there is none. A damaged file is a RunDirError."""
    path = epath.Path(workdir) / CONFIG_FILE
    if not path.exists():
        return None
    try:
        with path.open() as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(
            f"{path} cannot be read ({e}); it describes the run in {workdir}. Restore it, or train "
            "in a new --workdir."
        ) from None


def _describe(diff: dict[str, tuple[Any, Any]], limit: int = 12) -> str:
    lines = [f"  {k}: saved {old!r}, now {new!r}" for k, (old, new) in list(diff.items())[:limit]]
    if len(diff) > limit:
        lines.append(f"  ... and {len(diff) - limit} more")
    return "\n".join(lines)


def check_is_run(workdir: str | os.PathLike) -> None:
    """Raises RunDirError unless `workdir` holds a run written by `mlrpl_jax.train`."""
    if not epath.Path(workdir).is_dir():
        raise RunDirError(f"--workdir {workdir} does not exist; train first (mlrpl_jax.train).")
    if read_saved_config(workdir) is None:
        raise RunDirError(
            f"{workdir} holds no run ({CONFIG_FILE} is missing); pass the --workdir that "
            "mlrpl_jax.train wrote."
        )


def check_same_config(workdir: str | os.PathLike, config: Any, *, training: bool = False) -> None:
    """Raises RunDirError when `config` differs from `workdir`'s saved config in a key that can
    change results (nothing is written). `training`: the message offers --allow_config_change."""
    saved = read_saved_config(workdir)
    if saved is None:
        return
    diff = differences(saved, config_dict(config))
    if diff:
        raise RunDirError(_refusal(workdir, diff, training))


def _refusal(workdir: str, diff: dict[str, tuple[Any, Any]], training: bool) -> str:
    text = (
        f"{workdir} holds a run of another config; {len(diff)} key(s) that change results "
        f"differ from its {CONFIG_FILE}:\n{_describe(diff)}\nPass the run's own config and "
        "overrides"
    )
    if not training:
        return text + "."
    return text + (
        " to resume or re-evaluate it; use a new --workdir to train this config; add "
        f"--allow_config_change to change the run on purpose (recorded in {CHANGES_FILE})."
    )


def start(workdir: str | os.PathLike, config: Any, step: int | None, *, allow_change: bool) -> None:
    """Checks `config` against `workdir`'s saved config (see the module docstring) and writes
    config.json for a new run. `step` is the step the run resumes at (None for a new run).

    Raises RunDirError on a results-changing difference without `allow_change`; nothing is
    written then."""
    from mlrpl_jax.paths import append_text, atomic_write_json

    saved = read_saved_config(workdir)
    new = config_dict(config)
    if saved is None:
        atomic_write_json(epath.Path(workdir) / CONFIG_FILE, new)
        return
    diff = differences(saved, new)
    if not diff:
        return
    if not allow_change:
        raise RunDirError(_refusal(workdir, diff, training=True))
    record = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "step": step,
        "changed": {k: {"old": old, "new": new_value} for k, (old, new_value) in diff.items()},
    }
    changes = epath.Path(workdir) / CHANGES_FILE
    append_text(changes, json.dumps(record, sort_keys=True) + "\n", sync=True)
    atomic_write_json(epath.Path(workdir) / CONFIG_FILE, new)
    print(f"Config change at step {step} recorded in {changes}.")
