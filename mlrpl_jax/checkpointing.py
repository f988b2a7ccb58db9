"""Checkpoints with orbax: TrainState and the grain iterator saved together; best-by-mAP kept apart.

Layout in the workdir:
  checkpoints/<step>/{state, data_iter}   periodic (every epoch by default), newest `max_to_keep` kept
  best/<step>/state                       the state with the highest selection mAP so far (the
                                          validation split, or test where a paper config says so)

orbax writes each checkpoint into a temporary directory and renames it only once complete, so a kill at
any moment leaves either the previous checkpoints or a complete new one (an unfinished temporary
directory is ignored and cleaned up on the next start). Saving is synchronous so that the iterator
state written is exactly the one that goes with the saved TrainState.
"""

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs (with shardings) of a pytree of arrays, the restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class Checkpointer:
    """Periodic and best checkpoints of one run directory."""

    def __init__(self, workdir: str, *, max_to_keep: int, keep_best: bool):
        """Args: workdir, the run directory; max_to_keep periodic checkpoints; keep_best."""
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), "checkpoints"),
            options=options,
            item_names=("state", "data_iter"),
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "data_iter": grain.checkpoint.CheckpointHandler(),
            },
        )
        self.best = None
        if keep_best:
            self.best = ocp.CheckpointManager(
                os.path.join(os.path.abspath(workdir), "best"),
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

    def save(self, state: Any, data_iter: Any) -> None:
        """Saves `state` and the iterator position under the state's step (no-op if it exists)."""
        step = int(jax.device_get(state.step))
        if step in self.manager.all_steps():
            return
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data_iter=grain.checkpoint.CheckpointSave(data_iter),
            ),
        )
        self.manager.wait_until_finished()

    def restore(self, state: Any, data_iter: Any, step: int | None = None) -> Any:
        """Restores the checkpoint at `step` (default newest) into the shapes/shardings of `state`.

        `data_iter` is set to the saved position in place. Returns the restored state.
        """
        step = self.manager.latest_step() if step is None else step
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(_abstract(state)),
                data_iter=grain.checkpoint.CheckpointRestore(data_iter),
            ),
        )
        return restored["state"]

    def restore_state(self, state: Any, *, which: str = "latest") -> tuple[Any, int]:
        """Restores only the TrainState: `which` = 'latest' (periodic) or 'best'. Returns (state, step)."""
        manager = self.best if which == "best" else self.manager
        step = None
        if manager is not None:
            step = manager.best_step() if which == "best" else manager.latest_step()
        if step is None:
            raise FileNotFoundError(
                f"No {which} checkpoint in {os.path.dirname(self.manager.directory)}; train first "
                "(python -m mlrpl_jax.train --config ... --workdir ...)."
            )
        restored = manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(state)))
        )
        return restored["state"], step

    def best_map(self) -> float:
        """The best selection mAP saved so far (-inf if none)."""
        if self.best is None or self.best.best_step() is None:
            return float("-inf")
        metrics = self.best.metrics(self.best.best_step())
        return float(metrics["mAP"]) if metrics else float("-inf")

    def save_best(self, state: Any, metrics: dict[str, float]) -> bool:
        """Saves `state` as the best one if its mAP beats the best so far. Returns whether it did."""
        if self.best is None or not metrics["mAP"] > self.best_map():
            return False
        step = int(jax.device_get(state.step))
        if step in self.best.all_steps():
            return False
        self.best.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
            metrics={"mAP": float(metrics["mAP"])},
        )
        self.best.wait_until_finished()
        return True

    def close(self) -> None:
        """Waits for pending writes and releases the managers."""
        self.manager.close()
        if self.best is not None:
            self.best.close()
