"""Metrics to a JSONL file and TensorBoard event files in the workdir, plus the final table.

Only process 0 writes. Each JSONL line is one record {"step": int, "epoch": float, "<name>": value, ...};
lines are appended and flushed immediately, so a kill loses at most the line being written (a partial
last line is repaired on the next start instead of corrupting the file).

Each step is recorded once however often the run is resumed: a run resumed from the checkpoint at
step S replays the steps after S, so `MetricWriter(workdir, resume_step=S)` first drops the
records after S (written before the kill that the replay rewrites) and asks TensorBoard to purge
its events after S. Events (a resume, a recorded config change) go to events.jsonl, not among the
metrics.

Every file goes through `etils.epath` (`mlrpl_jax.paths`), so the workdir may be any path it
handles (``gs://...`` on a TPU pod, as for TFDS and orbax). TensorBoard gets the path string:
tensorboardX writes ``gs://`` through its own writer factories.
"""

import json
import os
from typing import Any

import jax
from etils import epath

from mlrpl_jax.paths import append_text, atomic_write, atomic_write_json  # noqa: F401 (re-export)


class MetricWriter:
    """Appends scalar records to workdir/metrics.jsonl and workdir/tensorboard/."""

    def __init__(self, workdir: str, resume_step: int | None = None):
        """Args: workdir; resume_step: the step the run resumes at (None or 0: a new run), after
        which existing records are dropped."""
        self.active = jax.process_index() == 0
        self.path = epath.Path(workdir) / "metrics.jsonl"
        self.events_path = epath.Path(workdir) / "events.jsonl"
        self._tb = None
        if self.active:
            self._repair_tail()
            self._drop_after(resume_step or 0)
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                os.fspath(epath.Path(workdir) / "tensorboard"),
                purge_step=None if resume_step is None else resume_step + 1,
            )

    def _drop_after(self, step: int) -> None:
        """Rewrites metrics.jsonl (atomically) without the records of steps after `step`."""
        if not self.path.exists():
            return
        with self.path.open() as f:
            lines = f.readlines()
        kept = [line for line in lines if json.loads(line)["step"] <= step]
        if len(kept) == len(lines):
            return
        atomic_write(self.path, "".join(kept))

    def event(self, step: int, event: str, **details: Any) -> None:
        """Appends {'step', 'event', ...details} to events.jsonl (a resume, a config change)."""
        if not self.active:
            return
        record = {"step": int(step), "event": event, **details}
        append_text(self.events_path, json.dumps(record) + "\n")

    def _repair_tail(self) -> None:
        """Drops a partial last line left by a kill in the middle of a write (atomically)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            atomic_write(self.path, data[: data.rfind(b"\n") + 1])

    def write(self, step: int, scalars: dict[str, float], **extra: Any) -> None:
        """Writes one record: scalars go to both sinks, `extra` (e.g. epoch, event) only to JSONL."""
        if not self.active:
            return
        record = {"step": int(step), **extra, **{k: float(v) for k, v in scalars.items()}}
        append_text(self.path, json.dumps(record) + "\n")
        for name, value in scalars.items():
            self._tb.add_scalar(name, float(value), int(step))
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def format_table(metrics: dict[str, float], title: str = "test metrics (%)") -> str:
    """The final metrics as a small text table: rows all / top-3, columns CP CR CF1 OP OR OF1.
    Metrics of partially labelled targets (`metrics.partial_label_metrics`: mAP over the known
    entries, no threshold metrics) print as mAP and the known fraction."""
    cols = ["CP", "CR", "CF1", "OP", "OR", "OF1"]
    if not all(c in metrics for c in cols):
        known = metrics.get("known_fraction")
        extra = "" if known is None else f" (over the known entries, {known:.2f}% of all)"
        return "\n".join([title, f"mAP {metrics['mAP']:.2f}{extra}"])
    lines = [title, f"mAP {metrics['mAP']:.2f}", "       " + "".join(f"{c:>8}" for c in cols)]
    for row, suffix in (("all", ""), ("top-3", "_top3")):
        lines.append(f"{row:<7}" + "".join(f"{metrics[c + suffix]:8.2f}" for c in cols))
    return "\n".join(lines)
