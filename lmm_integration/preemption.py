"""Pre-emption: SIGTERM (how SLURM and Kubernetes stop a job) ends a training stage cleanly.

The signal only raises a flag. At the end of every optimizer step all processes agree (one all-reduce of the
flag) whether any of them was signalled, so that they stop after the same step and save one checkpoint
together; the Trainer then saves `OUTPUT_DIR/checkpoint-N` (weights, optimizer, scheduler, RNG states) and
training returns, and `--resume` continues from it. A first Ctrl-C (SIGINT) does the same; a second one
stops at once.

DataLoader worker processes ignore SIGTERM and SIGINT: a scheduler (or the terminal) signals every process of
the job, and a worker killed by it would make the main process fail before it can save. The workers still
end with their parent.
"""

from __future__ import annotations

import signal
import sys

import torch
import torch.distributed as dist
from transformers import TrainerCallback

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a job stopped by SIGTERM conventionally returns


class GracefulStop(TrainerCallback):
    """Stops the Trainer after the current step, with a checkpoint, once SIGTERM or SIGINT has arrived."""

    def __init__(self):
        self.signal_name: str | None = None
        self.stopped_at_step: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def stopped(self) -> bool:
        return self.stopped_at_step is not None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signal_name == "SIGINT":
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            print(f"{self.signal_name} received: finishing this step, then saving a checkpoint{again}",
                  file=sys.stderr, flush=True)

    def _any_process_signalled(self, args) -> bool:
        requested = self.signal_name is not None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([1 if requested else 0], device=args.device)  # on the GPU for NCCL
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            requested = bool(flag.item())
        return requested

    def on_step_end(self, args, state, control, **kwargs):
        if not self.stopped and self._any_process_signalled(args):
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class WorkerIgnoresStopSignals:
    """A DataLoader `worker_init_fn`: the Trainer's own, then SIGTERM and SIGINT ignored in the worker."""

    def __init__(self, worker_init_fn=None):
        self.worker_init_fn = worker_init_fn

    def __call__(self, worker_id: int) -> None:
        if self.worker_init_fn is not None:
            self.worker_init_fn(worker_id)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
