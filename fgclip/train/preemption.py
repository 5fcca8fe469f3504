"""Pre-emption: SIGTERM (how SLURM, Kubernetes and the `deepspeed` / `torchrun` launchers stop a job) asks the
run to finish its step, save a checkpoint, say where, and exit; `--resume latest` continues it.

The handler only sets a flag; the training loop reads it once per micro-batch together with the other
ranks' flags (one all-reduce it already makes), so every rank stops after the same step. Data-loader
workers ignore SIGTERM (a process-group signal reaches them too): the main process ends them.
"""

from __future__ import annotations

import signal
import sys
import threading

EXIT_CODE = 143  # 128 + SIGTERM, what a job killed by SIGTERM reports: schedulers treat the job as not done


class Terminated(Exception):
    """Raised after the checkpoint of a terminated run is saved; the message says where it is."""


class TerminationRequest:
    """Context manager that turns SIGTERM into a flag (`requested`) while a run trains.

    interrupt: treat the first Ctrl-C (SIGINT) the same way (a second one stops at once) and say on stderr that the
        step is being finished, as the LLaVA stages do.
    """

    def __init__(self, interrupt: bool = False):
        self.requested = False
        self.signal_name: str | None = None
        self._signals = (signal.SIGTERM, signal.SIGINT) if interrupt else (signal.SIGTERM,)
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if not self.requested:
            self.signal_name = signal.Signals(signum).name
            if len(self._signals) > 1:
                again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
                print(
                    f"{self.signal_name} received: finishing this step, then saving a checkpoint{again}",
                    file=sys.stderr,
                    flush=True,
                )
        self.requested = True

    def __enter__(self) -> TerminationRequest:  # noqa: PYI034 (typing.Self needs 3.11)
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self._signals}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


def ignore_termination_in_worker(worker_id: int) -> None:
    """`DataLoader(worker_init_fn=...)`: a worker leaves SIGTERM to the main process."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def ignore_stop_signals_in_worker(worker_id: int) -> None:
    """The same for SIGTERM and SIGINT (a terminal's Ctrl-C reaches every process of the foreground group)."""
    ignore_termination_in_worker(worker_id)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
