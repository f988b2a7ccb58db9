"""Checkpoints with orbax: the TrainState (its step is the data position); best-by-mAP kept apart.

Layout in the workdir:
  checkpoints/<step>/state                periodic (every epoch by default), newest `max_to_keep` kept
  best/<step>/state                       the state with the highest selection mAP so far (the
                                          validation split, or test where a paper config says so)

orbax writes each checkpoint into a temporary directory and renames it only once complete, so a kill at
any moment leaves either the previous checkpoints or a complete new one (an unfinished temporary
directory is ignored and cleaned up on the next start). Saving is synchronous. The input pipeline's
position is not saved: it is a function of the step (`pipeline.GlobalOrderSampler`), so a run resumes
under any process layout. (Checkpoints written before this also hold a `data_iter` item, the grain
iterator state; it is ignored.)

Every finished checkpoint gets a manifest (`mlrpl_manifest.json`: each file's size and CRC-32), so
damage done afterwards (a truncated file, a disk error) is found before orbax reads the files. It is
survived: `restore_newest` tries the periodic checkpoints from the newest down; when an older one restores, each unreadable
newer one is moved aside to `workdir/damaged/` (never deleted) and the run resumes from the older
one. When none restores, nothing is moved and a `RunDirError` says what to do.

The workdir may be any path `etils.epath` handles (``gs://...``): orbax takes it as it is, and the
manifests and the moves aside go through epath.
"""

import contextlib
import gc
import json
import os
import sys
import time
import zlib
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from mlrpl_jax.errors import RunDirError
from mlrpl_jax.paths import is_local

DAMAGED_DIR = "damaged"


def _brief(error: Exception) -> str:
    """The first sentence of an error (TensorStore appends its whole spec to its messages)."""
    text = str(error).split(" See full TensorStore")[0].strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160] if text else ''}"


MANIFEST = "mlrpl_manifest.json"


def _workdir_path(workdir: str | os.PathLike) -> epath.Path:
    """`workdir` as an epath.Path: a local one made absolute, a URI (gs://...) as it is."""
    return epath.Path(os.path.abspath(workdir) if is_local(workdir) else workdir)


def _files(directory: epath.Path) -> list[str]:
    """The '/'-separated paths, relative to `directory`, of every file under it."""
    found = []
    pending = [(directory, "")]
    while pending:
        folder, prefix = pending.pop()
        for child in folder.iterdir():
            if child.is_dir():
                pending.append((child, f"{prefix}{child.name}/"))
            else:
                found.append(prefix + child.name)
    return sorted(found)


def _move(source: epath.Path, target: epath.Path) -> None:
    """Renames the directory `source` to `target`. An object store has neither directories nor
    renames (epath's rename wants the target's parent to exist): there each file is copied, then
    `source` is deleted."""
    if is_local(source):
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        return
    for name in _files(source):
        (source / name).copy(target / name)
    source.rmtree()


def _measure(path: epath.Path) -> tuple[int, int]:
    """(size in bytes, CRC-32) of the file `path`, in one read."""
    size, crc = 0, 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            size, crc = size + len(chunk), zlib.crc32(chunk, crc)
    return size, crc


def write_manifest(directory: str | os.PathLike) -> None:
    """Records the size and CRC-32 of every file of a finished checkpoint in `directory`, so a
    later truncation or corruption is found before orbax is asked to read it (a failed orbax
    read leaves unfinished reads behind that print tracebacks until the process exits)."""
    directory = epath.Path(directory)
    names = [f for f in _files(directory) if f.split("/")[-1] != MANIFEST]
    entries = {f: list(_measure(directory / f)) for f in names}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(entries))
    tmp.replace(directory / MANIFEST)


def check_manifest(directory: str | os.PathLike) -> str | None:
    """What is wrong with the checkpoint in `directory` against its manifest (a missing,
    truncated or changed file), or None when it matches or has no manifest."""
    path = epath.Path(directory) / MANIFEST
    if not path.exists():
        return None
    try:
        entries = json.loads(path.read_text())
    except ValueError:
        return f"its manifest {path} is damaged"
    for name, (size, crc) in entries.items():
        file = epath.Path(directory) / name
        if not file.exists():
            return f"{name} is missing"
        found_size, found_crc = _measure(file)
        if found_size != size:
            return f"{name} has {found_size} bytes, {size} when written"
        if found_crc != crc:
            return f"{name} changed since it was written (CRC-32)"
    return None


def _drop_orbax_read_reports(previous):
    """An unraisable-exception hook that drops the reports of orbax's abandoned read coroutines
    (see `_quiet_abandoned_reads`) and passes every other report to `previous`."""

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if code is not None and "orbax" in code.co_filename:
            return
        previous(unraisable)

    hook.drops_orbax_reads = True
    return hook


@contextlib.contextmanager
def _quiet_abandoned_reads():
    """Runs a restore; if it fails, the reads it had started are not reported.

    A failed orbax restore leaves the coroutines of its other array reads unfinished; Python
    reports each one as 'Exception ignored in: <coroutine ...>' (with TensorStore's whole spec)
    when it is garbage-collected, some at once and some at exit. After a failure, the process's
    unraisable-exception hook drops those reports (only coroutines of orbax's own code); the
    failure itself is raised as usual."""
    try:
        yield
    except Exception:
        if not getattr(sys.unraisablehook, "drops_orbax_reads", False):
            sys.unraisablehook = _drop_orbax_read_reports(sys.unraisablehook)
        gc.collect()
        raise


def _barrier(name: str) -> None:
    """Waits for every process (no-op on one): what process 0 wrote is then there for all."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays, the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Periodic and best checkpoints of one run directory."""

    def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int, keep_best: bool):
        """Args: workdir, the run directory (local or any path epath handles, e.g. gs://);
        max_to_keep periodic checkpoints; keep_best."""
        self.workdir = os.fspath(_workdir_path(workdir))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(
            _workdir_path(workdir) / "checkpoints",
            options=options,
            item_names=("state",),
            item_handlers={"state": ocp.StandardCheckpointHandler()},
        )
        self.best = None
        if keep_best:
            self.best = ocp.CheckpointManager(
                _workdir_path(workdir) / "best",
                options=ocp.CheckpointManagerOptions(
                    max_to_keep=1,
                    create=True,
                    best_fn=lambda m: m["mAP"],
                    best_mode="max",
                    enable_async_checkpointing=False,
                ),
                item_names=("state",),
                item_handlers={"state": ocp.StandardCheckpointHandler()},
            )

    def latest_step(self) -> int | None:
        """Step of the newest complete periodic checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, state: Any) -> None:
        """Saves `state` under its step (no-op if it exists). Called by every process."""
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
        )
        self.manager.wait_until_finished()
        if jax.process_index() == 0:
            write_manifest(self._step_dir(step))
        _barrier("mlrpl_checkpoint_manifest")

    def _step_dir(self, step: int) -> epath.Path:
        return epath.Path(self.manager.directory) / str(step)

    def restore(self, state: Any, step: int | None = None) -> Any:
        """Restores the checkpoint at `step` (default newest) into the shapes/shardings of `state`.
        Returns the restored state."""
        step = self.manager.latest_step() if step is None else step
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state))),
        )
        return restored["state"]

    def restore_newest(self, state: Any) -> tuple[Any, int] | None:
        """Restores the newest readable periodic checkpoint into the shapes/shardings of `state`.
        Returns (state, step), or None without checkpoints.

        Unreadable newer checkpoints are moved to workdir/damaged/ once an older one restored
        (and a line says so). Raises RunDirError when no checkpoint can be read; nothing is moved
        then (the cause may be the config rather than the files)."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        failures = []
        for step in steps:
            damage = check_manifest(self._step_dir(step))
            if damage is not None:  # known damaged without asking orbax to read it
                failures.append((step, RunDirError(damage)))
                continue
            try:
                with _quiet_abandoned_reads():
                    restored = self.restore(state, step)
            except Exception as e:  # noqa: BLE001 (any failure to read means: try the older one)
                failures.append((step, e))
                continue
            for bad, error in failures:
                self._move_aside(bad, error)
            if failures:
                _barrier("mlrpl_moved_aside")
                self.manager.reload()
            return restored, step
        if not failures:
            return None
        listing = "; ".join(f"step {s}: {_brief(e)}" for s, e in failures)
        raise RunDirError(
            f"no checkpoint in {self.manager.directory} can be restored ({listing}). If the files "
            "are damaged, move that directory aside to train from the start (the best checkpoint "
            "in best/ and results.json are not touched); if the config differs from the run's "
            "(e.g. a model shape), pass the run's own config."
        )

    def _move_aside(self, step: int, error: Exception) -> None:
        """Moves the periodic checkpoint `step` to workdir/damaged/ and says so."""
        if jax.process_index() != 0:
            return
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = epath.Path(self.workdir) / DAMAGED_DIR / f"checkpoint_{step}_{stamp}"
        _move(self._step_dir(step), target)
        print(
            f"Checkpoint {step} is unreadable ({_brief(error)}); "
            f"moved it to {target} and resumed from the previous one."
        )

    def restore_state(self, state: Any, *, which: str = "latest") -> tuple[Any, int]:
        """Restores only the TrainState: `which` = 'latest' (periodic) or 'best'. Returns (state, step)."""
        manager = self.best if which == "best" else self.manager
        step = None
        if manager is not None:
            step = manager.best_step() if which == "best" else manager.latest_step()
        if step is None:
            raise RunDirError(
                f"no {which} checkpoint in {self.workdir}; train first "
                "(python -m mlrpl_jax.train --config ... --workdir ...)."
            )
        damage = check_manifest(epath.Path(manager.directory) / str(step))
        if damage is not None:
            other = "latest" if which == "best" else "best"
            raise RunDirError(
                f"the {which} checkpoint (step {step}) in {manager.directory} is damaged "
                f"({damage}). Try --checkpoint={other}."
            )
        try:
            with _quiet_abandoned_reads():
                restored = manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state)))
                )
        except Exception as e:  # noqa: BLE001
            other = "latest" if which == "best" else "best"
            raise RunDirError(
                f"the {which} checkpoint (step {step}) in {manager.directory} cannot be restored "
                f"({_brief(e)}); its files may be damaged, or the config "
                f"differs from the run's. Try --checkpoint={other}."
            ) from None
        return restored["state"], step

    def best_map(self) -> float:
        """The best selection mAP saved so far (-inf if none)."""
        record = self.best_record()
        return float(record["mAP"]) if record else float("-inf")

    def best_record(self) -> dict | None:
        """What `save_best` stored with the best checkpoint ({'mAP', and what the caller added,
        e.g. 'step', 'epoch', 'source', 'results'}), or None."""
        if self.best is None or self.best.best_step() is None:
            return None
        return self.best.metrics(self.best.best_step()) or None

    def save_best(self, state: Any, metrics: dict[str, Any]) -> bool:
        """Saves `state` as the best one if `metrics['mAP']` beats the best so far; `metrics` (any
        JSON-able dict) is stored with it. Returns whether it saved."""
        if self.best is None or not metrics["mAP"] > self.best_map():
            return False
        step = int(jax.device_get(state.step))
        if step in self.best.all_steps():
            return False
        self.best.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
            metrics=dict(metrics, mAP=float(metrics["mAP"])),
        )
        self.best.wait_until_finished()
        if jax.process_index() == 0:
            write_manifest(epath.Path(self.best.directory) / str(step))
        return True

    def close(self) -> None:
        """Waits for pending writes and releases the managers."""
        self.manager.close()
        if self.best is not None:
            self.best.close()
