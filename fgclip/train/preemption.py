"""Pre-emption: SIGTERM (how SLURM, Kubernetes and the `deepspeed` / `torchrun` launchers stop a job) asks the
run to finish its step, save a checkpoint, say where, and exit; `--resume latest` continues it.

The handler only sets a flag; the training loop reads it once per micro-batch together with the other
ranks' flags (one all-reduce it already makes), so every rank stops after the same step. Data-loader
workers ignore SIGTERM (a process-group signal reaches them too): the main process ends them.
"""

from __future__ import annotations

import signal
import threading

EXIT_CODE = 143  # 128 + SIGTERM, what a job killed by SIGTERM reports: schedulers treat the job as not done


class Terminated(Exception):
    """Raised after the checkpoint of a terminated run is saved; the message says where it is."""


class TerminationRequest:
    """Context manager that turns SIGTERM into a flag (`requested`) while a run trains."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> TerminationRequest:  # noqa: PYI034 (typing.Self needs 3.11)
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


def ignore_termination_in_worker(worker_id: int) -> None:
    """`DataLoader(worker_init_fn=...)`: a worker leaves SIGTERM to the main process."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
