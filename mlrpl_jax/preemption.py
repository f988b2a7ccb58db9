"""Preemption: SIGTERM (what TPU, cloud and SLURM schedulers send before evicting a job) makes the
run finish its step, save a checkpoint on every process at the same step, and exit with
`EXIT_PREEMPTED` (75, EX_TEMPFAIL: "try again"); the same command then resumes at that step.

Several processes agree on the step through jax's preemption sync manager (`jax.distributed`
installs its SIGTERM handler; a notice on any process reaches all, and
`multihost_utils.reached_preemption_sync_point` turns true on every process at the same step). A
single process installs its own SIGTERM handler for the duration of the training loop.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator

import jax

EXIT_PREEMPTED = 75


class Preempted(Exception):
    """Training stopped at `step` after a preemption notice; a checkpoint of that step is saved."""

    def __init__(self, step: int, workdir: str):
        super().__init__(
            f"preempted (SIGTERM) at step {step}: checkpoint saved in {workdir}/checkpoints/{step}. "
            "Run the same command again to resume there."
        )
        self.step = step
        self.workdir = workdir


class Watch:
    """`reached(step)`: True once a preemption notice arrived, on every process at the same step.
    Call it at every step, on every process."""

    def __init__(self):
        self._noticed = threading.Event()
        self._distributed = jax.process_count() > 1

    def notice(self, *_) -> None:
        self._noticed.set()

    def reached(self, step: int) -> bool:
        if self._distributed:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self._noticed.is_set()


@contextlib.contextmanager
def watch() -> Iterator[Watch]:
    """A `Watch` for a training loop; on a single process, SIGTERM sets it while the loop runs
    (the previous handler is restored after). Outside the main thread (where Python cannot set
    signal handlers) a single process is not watched."""
    w = Watch()
    installed = None
    if not w._distributed and threading.current_thread() is threading.main_thread():
        installed = signal.signal(signal.SIGTERM, w.notice)
    try:
        yield w
    finally:
        if installed is not None:
            signal.signal(signal.SIGTERM, installed)
