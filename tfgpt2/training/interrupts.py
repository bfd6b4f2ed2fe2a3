"""Stopping a fine-tuning run on SIGINT (Ctrl-C) or SIGTERM (preemptible
VMs, Kubernetes, Slurm) without losing it.

The first signal asks the loop to stop: the step in progress finishes, a
checkpoint is written at it (atomically, like the periodic ones) and the run
ends with `TrainingInterrupted`; rerunning the same command resumes there.
A second signal ends the process at once: the handlers are back to the
system's default after the first, and every checkpoint on disk was renamed
into place whole, so the last one stays intact.

Handlers are installed only in the main thread (Python's rule), and not
under MultiWorkerMirroredStrategy: a worker that stopped alone would leave
the others waiting in a collective; there the periodic checkpoints are the
resume points.
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """The run stopped on a signal after writing a checkpoint at `step`.
    `exit_code` is the shell's convention: 128 + the signal's number."""

    def __init__(self, step: int, checkpoint, signum: int):
        self.step, self.checkpoint, self.signum = step, checkpoint, signum
        self.exit_code = 128 + signum
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"checkpoint written to {self.checkpoint}" if self.checkpoint else (
            "the chief wrote the checkpoint")
        return f"Interrupted at step {self.step}; {where}; rerun the same command to resume."


class StopRequests:
    """While active, SIGINT and SIGTERM set `signum` instead of ending the
    process; the loop checks it between steps."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self) -> StopRequests:
        if self.enabled:
            self._previous = {s: signal.signal(s, self._request) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _request(self, signum, frame) -> None:
        self.signum = signum
        for s in SIGNALS:  # a second signal: the default action, at once
            signal.signal(s, signal.SIG_DFL)
        print(f"\n{signal.Signals(signum).name}: stopping after this step and writing a "
              "checkpoint (send it again to quit at once).", file=sys.stderr, flush=True)
