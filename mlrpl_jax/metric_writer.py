"""Metrics to a JSONL file and TensorBoard event files in the workdir, plus the final table.

Only process 0 writes. Each JSONL line is one record {"step": int, "epoch": float, "<name>": value, ...};
lines are appended and flushed immediately, so a kill loses at most the line being written (a partial
last line is repaired on the next start instead of corrupting the file).
"""

import json
import os
from typing import Any

import jax


def atomic_write_json(path: str, obj: Any) -> None:
    """Writes JSON to `path` via a temporary file and an atomic rename (never a half-written file)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class MetricWriter:
    """Appends scalar records to workdir/metrics.jsonl and workdir/tensorboard/."""

    def __init__(self, workdir: str):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.active:
            self._repair_tail()
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def _repair_tail(self) -> None:
        """Drops a partial last line left by a kill in the middle of a write."""
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def write(self, step: int, scalars: dict[str, float], **extra: Any) -> None:
        """Writes one record: scalars go to both sinks, `extra` (e.g. epoch, event) only to JSONL."""
        if not self.active:
            return
        record = {"step": int(step), **extra, **{k: float(v) for k, v in scalars.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
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
