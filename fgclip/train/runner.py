"""The step loop every training command shares: resume, steps, logs, checkpoints, bad-record accounting.

A command (FG-CLIP pretraining, Fashion-FINE finetuning) builds its model, data, engine and a
`TrainingTask` that says how one batch becomes a loss; `Runner.run` does the rest the same way for all:

* resuming restores the engine (weights, optimizer, scheduler), the data position (epoch and batch of a
  seeded `EpochBatchSampler`), every rank's RNG states, bad-record counts and the task's own state, so a
  resumed run continues the same sample order and reaches the same weights as an uninterrupted one;
* a non-finite loss skips its batch on every rank; too many in a row stop the run (`TrainingError`);
* metrics are averaged over ranks every `log_every` steps (`metrics.jsonl`, TensorBoard, progress bar);
* checkpoints are atomic (`fgclip.train.checkpoint`); the last one is where `final/` is exported from.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from fgclip.data.dataset import BadRecordCounter
from fgclip.train import checkpoint as ckpt
from fgclip.train.distributed import DistributedContext, all_reduce_sum, any_rank
from fgclip.train.reporting import RunReporter


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. repeated non-finite losses); the message says why."""


class TrainingTask:
    """What a command plugs into the runner: how a batch is moved, counted and turned into a loss."""

    def compute_loss(self, engine, batch, micro_batch: int):
        """The `LossOutput` (`total`, `terms`) of `batch`; `micro_batch` numbers the run's batches from 0 (the
        same number for the same batch after a resume), e.g. to seed random choices made in the loss."""
        raise NotImplementedError

    def to_device(self, batch, device: torch.device, input_dtype: torch.dtype | None):
        return batch.to(device, input_dtype)

    def num_records(self, batch) -> int:
        """Usable records in `batch` (for the bad-record share)."""
        return batch.num_images

    def skipped(self, batch) -> list:
        """Bad records passed over while loading `batch` (`BadRecord`s)."""
        return batch.skipped

    def after_step(self, step: int, runner: Runner) -> None:
        """Called on every rank after each optimizer step (e.g. validation every N steps)."""

    def state_dict(self) -> dict:
        """The task's resumable state (saved with every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@dataclass
class RunSettings:
    total_steps: int
    seed: int
    log_every: int = 10
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end
    save_total_limit: int = 2
    max_nonfinite_steps: int = 10
    stop_at_step: int | None = None  # end right after this step without a final save (simulates a crash)
    resume: str | None = None  # "latest" or a checkpoint path
    report_to: str = "none"
    progress: bool = True
    description: str = "training"


@dataclass
class RunOutcome:
    steps: int
    first_loss: float | None
    last_loss: float | None
    nonfinite_steps: int
    final_checkpoint: Path | None  # None when the run stopped early (`stop_at_step`)
    stopped_early: bool = False


class _Window:
    """Loss sums between two log lines."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.count, self.loss, self.terms, self.samples, self.started = 0, 0.0, {}, 0, time.time()

    def add(self, loss: float, terms: dict[str, float], samples: int) -> None:
        self.count += 1
        self.loss += loss
        self.samples += samples
        for name, value in terms.items():
            self.terms[name] = self.terms.get(name, 0.0) + value


class Runner:
    """Runs `task` for `settings.total_steps` optimizer steps (see the module docstring)."""

    def __init__(self, engine, loader, sampler, task: TrainingTask, counter: BadRecordCounter,
                 context: DistributedContext, output_dir: str | Path, run_facts: dict, settings: RunSettings,
                 config_json: str):
        self.engine, self.loader, self.sampler, self.task = engine, loader, sampler, task
        self.counter, self.context, self.settings = counter, context, settings
        self.output_dir = Path(output_dir)
        self.run_facts, self.config_json = run_facts, config_json
        self.step = self.epoch = self.batch_in_epoch = self.nonfinite = 0
        self.last_saved: Path | None = None
        self.reporter: RunReporter | None = None

    # ------------------------------------------------------------------ state
    def _resume(self) -> Path | None:
        if not self.settings.resume:
            torch.manual_seed(self.settings.seed + self.context.rank)  # per-rank streams; the weights are made
            return None
        checkpoint_dir = ckpt.resolve_resume(self.settings.resume, self.output_dir)
        ckpt.check_compatible(ckpt.read_trainer_state(checkpoint_dir), self.run_facts)
        saved = self.engine.load(checkpoint_dir)
        self.step, self.epoch, self.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        self.nonfinite = saved.get("nonfinite_steps", 0)
        self.task.load_state_dict(saved.get("task", {}))
        rank_state = ckpt.load_rank_state(checkpoint_dir, self.context.rank)
        self.counter.load_state_dict(rank_state["bad_records"])
        ckpt.set_rng_state(rank_state["rng"])
        return checkpoint_dir

    def save(self) -> Path:
        """A resumable checkpoint of the current step (every rank must call); returns its folder."""
        if self.last_saved is not None and self.last_saved.name == ckpt.tag_for(self.step):
            return self.last_saved
        state = {**self.run_facts, "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                 "nonfinite_steps": self.nonfinite, "task": self.task.state_dict(),
                 "config": json.loads(self.config_json)}
        self.last_saved = ckpt.save_checkpoint(self.engine, self.output_dir, self.step, state,
                                               {"bad_records": self.counter.state_dict()}, self.context,
                                               keep=self.settings.save_total_limit)
        return self.last_saved

    def check_bad_records(self, final: bool = False) -> None:
        good, bad = all_reduce_sum([self.counter.good, self.counter.bad], self.context.device)
        self.counter.check(int(good), int(bad), final=final)

    def message(self, text: str) -> None:
        if self.reporter is not None:
            self.reporter.message(text)

    def log_validation(self, metrics: dict) -> None:
        """Write a validation result to validation.jsonl / TensorBoard on the main rank."""
        if self.reporter is not None:
            self.reporter.log_validation(metrics)

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunOutcome:
        settings, context, engine = self.settings, self.context, self.engine
        resumed_from = self._resume()
        if context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.reporter = RunReporter(self.output_dir, settings.total_steps, self.step, context.is_main,
                                    settings.report_to, settings.progress, description=settings.description)
        if resumed_from is not None:
            self.message(f"resumed from {resumed_from} at step {self.step} (epoch {self.epoch}, "
                         f"batch {self.batch_in_epoch})")
        window, first_loss, last_loss, consecutive = _Window(), None, None, 0
        input_dtype = engine.input_dtype
        try:
            while self.step < settings.total_steps:
                self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
                for batch in self.loader:
                    self.batch_in_epoch += 1
                    self.counter.add(self.task.num_records(batch), self.task.skipped(batch))
                    batch = self.task.to_device(batch, context.device, input_dtype)
                    micro_batch = self.epoch * len(self.sampler) + self.batch_in_epoch - 1
                    result = self.task.compute_loss(engine, batch, micro_batch)
                    if any_rank(not torch.isfinite(result.total.detach()).item(), context.device):
                        self.nonfinite, consecutive = self.nonfinite + 1, consecutive + 1
                        self.message(f"non-finite loss at step {self.step + 1}: batch skipped ({consecutive} in a row)")
                        if consecutive >= settings.max_nonfinite_steps:
                            raise TrainingError(f"{consecutive} non-finite losses in a row (last at step "
                                                f"{self.step + 1}); lower --lr, use fp32 (no --bf16) or check the data")
                        continue
                    consecutive = 0
                    engine.backward(result.total)
                    window.add(result.total.item(), {k: v.item() for k, v in result.terms.items()},
                               self.task.num_records(batch))
                    if not engine.step():
                        continue
                    self.step += 1
                    self.reporter.advance()
                    if self.step % settings.log_every == 0 or self.step == settings.total_steps:
                        last_loss = self._log_window(window)
                        first_loss = self.reporter.first_logged_loss if context.is_main else first_loss
                        self.check_bad_records()
                    if settings.save_every and self.step % settings.save_every == 0:
                        self.save()
                    self.task.after_step(self.step, self)
                    if settings.stop_at_step is not None and self.step >= settings.stop_at_step:
                        return RunOutcome(self.step, first_loss, last_loss, self.nonfinite, None, stopped_early=True)
                    if self.step >= settings.total_steps:
                        break
                if self.batch_in_epoch >= len(self.sampler):
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    self.check_bad_records(final=True)
            self.check_bad_records(final=True)
            return RunOutcome(self.step, first_loss, last_loss, self.nonfinite, self.save())
        finally:
            self.reporter.close()

    def _log_window(self, window: _Window) -> float:
        """Average the window over ranks, write it, start a new window; returns the mean loss."""
        counter, context = self.counter, self.context
        names = sorted(window.terms)
        sums = all_reduce_sum([window.loss, float(window.count)] + [window.terms[n] for n in names]
                              + [float(counter.good), float(counter.bad)], context.device)
        count = max(sums[1], 1.0)
        elapsed = max(time.time() - window.started, 1e-9)
        metrics = {
            "step": self.step,
            "epoch": self.epoch,
            "loss": sums[0] / count,
            **{f"loss_{name}": sums[2 + i] / count for i, name in enumerate(names)},
            "lr": self.engine.lr,
            "samples_per_s": window.samples * context.world_size / elapsed,
            "bad_records": int(sums[-1]),
            "seen_records": int(sums[-2] + sums[-1]),
            "nonfinite_steps": self.nonfinite,
        }
        self.reporter.log(metrics)
        window.reset()
        return metrics["loss"]
