"""The step loop every training command shares (FG-CLIP pretraining, Fashion-FINE finetuning).

A command builds its model, data, engine and a `TrainingTask` that says how one batch becomes a loss and how
the model is exported; `Runner.run` does the rest the same way for all:

* resuming (`find_resume` checks the run's identity first, `--resume_anyway` accepts differences) restores the
  engine (weights, optimizer, scheduler), the data position (epoch and batch of a seeded
  `EpochBatchSampler`), every rank's RNG states, the record counts and the task's own state; with
  deterministic kernels (`fgclip.train.determinism`, the default on CPU) a resumed run reaches the
  uninterrupted run's weights bitwise, wherever it was killed;
* a non-finite loss skips its batch on every rank; too many in a row stop the run (`TrainingError`);
* metrics are averaged over ranks every `log_every` steps (`metrics.jsonl`, TensorBoard, progress bar); a
  loss term no batch of a window had is logged as null, not as a perfect 0.0;
* records are counted once, at their first sighting (`fgclip.data.accounting`), and the run stops only on
  evidence that the data is bad;
* SIGTERM (`fgclip.train.preemption`) finishes the step; a stop, for SIGTERM or bad data, always saves a
  checkpoint first, writes summary.json with the reason and raises `Terminated` / `UserError`;
* checkpoints are atomic (`fgclip.train.checkpoint`); exported folders (`final/`, a task's `best/`) are
  written beside their place and renamed into it (`export_folder`), so they are never half written.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from fgclip.data.accounting import RecordAccounting, RecordTotals, should_stop
from fgclip.errors import UserError, reported_here
from fgclip.train import checkpoint as ckpt
from fgclip.train.determinism import configure_determinism
from fgclip.train.distributed import (
    DistributedContext,
    all_reduce_sum,
    available_cores,
    barrier,
    gather_objects,
)
from fgclip.train.preemption import Terminated, TerminationRequest, ignore_termination_in_worker
from fgclip.train.reporting import RunReporter
from fgclip.train.run_folder import (
    RUN_FILES,
    SUMMARY_FILE,
    check_run_folder,
    claim_run_folder,
    remove_run_files,
)

FINAL_DIR = "final"


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. repeated non-finite losses); the message says why."""


def training_exit_code(start: Callable[[], object]) -> int:
    """Run a training command's work and map how it ended to the exit code: 0 done; 2 a `UserError` (one line on
    stderr; a stop every rank raises alike, printed by rank 0 only); 1 a `TrainingError`; 143 stopped by SIGTERM
    after saving a checkpoint. The process group is left quietly in every case."""
    from fgclip.cli import one_line
    from fgclip.train.distributed import cleanup_quietly
    from fgclip.train.preemption import EXIT_CODE

    try:
        start()
    except UserError as error:
        if reported_here(error):
            print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    except Terminated as stopped:
        if reported_here(stopped):
            print(str(stopped), file=sys.stderr)
        return EXIT_CODE
    finally:
        cleanup_quietly()
    return 0


class TrainingTask(ABC):
    """What a command plugs into the runner: how a batch is moved, counted and turned into a loss, and how the
    model is written out."""

    loss_terms: tuple[str, ...] = ()  # logged as loss_<name>, each averaged over the micro-batches that had it

    @abstractmethod
    def compute_loss(self, engine, batch, micro_batch: int):
        """The `LossOutput` (`total`, `terms`) of `batch`; `micro_batch` numbers the run's batches from 0 (the
        same number for the same batch after a resume), e.g. to seed random choices made in the loss."""

    def present_terms(self, batch) -> set[str]:
        """The loss terms `batch` really has (read before it moves to the device); an absent term is a zero
        kept in the graph, logged as null rather than as a perfect 0.0."""
        return set(self.loss_terms)

    def describe_term(self, name: str) -> str:
        """What a batch lacks when term `name` is absent (for the one message saying so)."""
        return name

    def to_device(self, batch, device: torch.device, input_dtype: torch.dtype | None):
        return batch.to(device, input_dtype)

    def account(self, accounting: RecordAccounting, batch) -> None:
        """Count the batch's first sightings, bad records and truncated texts."""
        accounting.add_batch(batch)

    def num_samples(self, batch) -> int:
        return batch.num_images

    def after_step(self, step: int, runner: Runner) -> None:  # noqa: B027 - an optional hook
        """Called on every rank after each optimizer step (e.g. validation every N steps)."""

    @abstractmethod
    def export(self, engine, checkpoint_dir: Path, directory: Path) -> None:
        """Write the model of `checkpoint_dir` as a `from_pretrained` folder in `directory` (main rank only)."""

    def summary(self) -> dict:
        """The task's own entries of summary.json."""
        return {}

    def state_dict(self) -> dict:
        """The task's resumable state (saved with every checkpoint)."""
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027 - an optional hook
        pass


def start_run(context: DistributedContext, deterministic: bool | None, progress: bool) -> bool:
    """Deterministic kernels (default on CPU; returns whether they are on) and, without progress bars, none from
    transformers either (loading and writing weights)."""
    enabled = configure_determinism(context.device, deterministic)
    if not progress:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return enabled


def default_num_workers(world_size: int) -> int:
    """Loader workers per rank: none on small machines, where they would only compete for cores."""
    per_rank = available_cores() // max(world_size, 1)
    return 0 if per_rank <= 2 else min(8, per_rank - 1)


def resolve_bf16(bf16: bool | None, device: torch.device) -> bool:
    if bf16 is None:
        return device.type == "cuda" and torch.cuda.is_bf16_supported()
    return bf16


def make_loader(dataset, sampler, collate_fn, num_workers: int | None, context: DistributedContext, seed: int):
    """The run's `DataLoader` over `sampler`'s batches (`--num_workers`, else `default_num_workers`); its workers
    leave SIGTERM to the main process."""
    workers = num_workers if num_workers is not None else default_num_workers(context.world_size)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate_fn,
        num_workers=workers,
        pin_memory=context.device.type == "cuda",
        worker_init_fn=ignore_termination_in_worker if workers else None,
        # its own generator: starting an epoch's iterator must not draw from the global RNG
        generator=torch.Generator().manual_seed(seed + context.rank),
    )


def prepare_run_folder(
    output_dir: Path,
    inputs: list,
    resume: bool,
    overwrite: bool,
    context: DistributedContext,
    names: tuple[str, ...] = RUN_FILES,
) -> None:
    """Check `--output_dir` on every rank before anything heavy (`fgclip.train.run_folder`), take the folder's run
    lock on rank 0 (every rank stops alike when another job holds it); with `--overwrite_output_dir`, rank 0 then
    removes the earlier run's files."""
    replaced = check_run_folder(output_dir, inputs, resume=resume, overwrite=overwrite, names=names)
    claim_run_folder(output_dir, context.is_main)
    if context.is_main and replaced:
        remove_run_files(replaced)
        print(
            f"--overwrite_output_dir: removed the earlier run's {', '.join(p.name for p in replaced)} from {output_dir}"
        )
    barrier()


@dataclass
class ResumePoint:
    """The checkpoint a run continues from, and the identity differences `--resume_anyway` accepted."""

    checkpoint_dir: Path
    overrides: list[str]
    step: int


def find_resume(
    resume: str | None, output_dir: str | Path, identity: dict, resume_anyway: bool, say: Callable[[str], None]
) -> ResumePoint | None:
    """The checkpoint `--resume` names, checked against this run's identity before anything heavy is built
    (`UserError` on another run's checkpoint); None for a fresh run."""
    if not resume:
        return None
    checkpoint_dir = ckpt.resolve_resume(resume, output_dir)
    if checkpoint_dir is None:
        say(f"--resume {resume}: no checkpoint in {ckpt.checkpoint_root(output_dir)} yet; starting from scratch")
        return None
    saved = ckpt.read_trainer_state(checkpoint_dir)
    overrides = ckpt.check_compatible(saved, {"identity": identity}, resume_anyway)
    return ResumePoint(checkpoint_dir, overrides, int(saved["step"]))


def export_folder(directory: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder with `write(path)` beside `directory` and rename it into place, so a kill at any moment
    leaves the old folder or the new one, never half of one."""
    partial = directory.with_name(directory.name + ".partial")
    old = directory.with_name(directory.name + ".replaced")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    partial.rename(directory)
    shutil.rmtree(old, ignore_errors=True)
    return directory


def write_json(path: Path, value: dict) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(value, indent=2, default=str) + "\n")
    temporary.replace(path)


@dataclass
class RunSettings:
    total_steps: int
    seed: int
    log_every: int = 10
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end
    save_total_limit: int = 2
    max_nonfinite_steps: int = 10
    stop_at_step: int | None = None  # end right after this step without a final save (simulates a crash)
    report_to: str = "none"
    progress: bool = True
    description: str = "training"
    optim: object = None  # the run's `OptimConfig`, applied over a checkpoint's when --resume_anyway changed it
    started: float = field(default_factory=time.time)
    summary: dict = field(default_factory=dict)  # the command's own entries of summary.json

    @classmethod
    def from_config(cls, config, total_steps: int, bf16: bool, deterministic: bool, **rest) -> RunSettings:
        """The settings a training config gives every run (seed, logging, saving, stopping, reporting), plus the
        command's own `rest` (description, optim, started, summary); summary.json also records the precision and
        whether kernels were deterministic."""
        rest["summary"] = {**rest.get("summary", {}), "bf16": bf16, "deterministic": deterministic}
        return cls(
            total_steps=total_steps,
            seed=config.seed,
            log_every=config.log_every,
            save_every=config.save_every,
            save_total_limit=config.save_total_limit,
            max_nonfinite_steps=config.max_nonfinite_steps,
            stop_at_step=config.stop_at_step,
            report_to=config.report_to,
            progress=config.progress,
            **rest,
        )


def checkpoint_state(config, identity: dict, stage: str, num_samples: int, total_steps: int) -> dict:
    """What every checkpoint of a run records: the run facts, flat as the model card reads them (the model
    layout, stage, seed, num_samples, total_steps), the model identity and the whole config."""
    return {
        **identity["layout"],
        "stage": stage,
        "seed": config.seed,
        "num_samples": num_samples,
        "total_steps": total_steps,
        "identity": identity,
        "config": json.loads(config.to_json()),
    }


@dataclass
class RunResult:
    """What a training command returns: its run folder, the exported model and how the run went."""

    output_dir: Path
    final_dir: Path | None  # None when the run stopped early (`stop_at_step`)
    steps: int
    seconds: float
    first_loss: float | None = None
    last_loss: float | None = None
    stopped_early: bool = False

    @classmethod
    def of(cls, output_dir: Path, outcome: RunOutcome, **rest):
        """The result of a run that ended with `outcome`, plus the command's own fields `rest`."""
        shared = ("final_dir", "steps", "seconds", "first_loss", "last_loss", "stopped_early")
        return cls(output_dir=output_dir, **{name: getattr(outcome, name) for name in shared}, **rest)


@dataclass
class RunOutcome:
    steps: int
    seconds: float
    first_loss: float | None
    last_loss: float | None
    nonfinite_steps: int
    final_dir: Path | None  # None when the run stopped early (`stop_at_step`)
    summary: dict = field(default_factory=dict)
    stopped_early: bool = False


class _Window:
    """Loss sums between two log lines; each term is averaged over the micro-batches that had it."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.reset()

    def reset(self) -> None:
        self.count, self.loss, self.samples, self.started = 0, 0.0, 0, time.time()
        self.terms = {name: [0.0, 0] for name in self.names}

    def add(self, loss: float, terms: dict[str, float], samples: int) -> None:
        self.count += 1
        self.loss += loss
        self.samples += samples
        for name, value in terms.items():
            if name in self.terms:
                self.terms[name][0] += value
                self.terms[name][1] += 1

    def vector(self) -> list[float]:
        return [self.loss, float(self.count)] + [float(v) for name in self.names for v in self.terms[name]]


class Runner:
    """Runs `task` for `settings.total_steps` optimizer steps (see the module docstring).

    `checkpoint_state` is what every checkpoint's trainer_state.json records besides the position: the flat
    run facts the model card reads, `identity` (checked by `find_resume`) and `config`."""

    def __init__(
        self,
        engine,
        loader,
        sampler,
        task: TrainingTask,
        accounting: RecordAccounting,
        context: DistributedContext,
        output_dir: str | Path,
        checkpoint_state: dict,
        settings: RunSettings,
    ):
        self.engine, self.loader, self.sampler, self.task = engine, loader, sampler, task
        self.accounting, self.context, self.settings = accounting, context, settings
        self.output_dir = Path(output_dir)
        self.checkpoint_state = checkpoint_state
        self.step = self.epoch = self.batch_in_epoch = self.nonfinite = 0
        self.last_saved: Path | None = None
        self.reporter: RunReporter | None = None
        self.first_loss: float | None = None
        self.last_loss: float | None = None
        self._warned_absent: set[str] = set()

    # ------------------------------------------------------------------ state
    def _restore(self, resume: ResumePoint | None) -> None:
        if resume is None:
            torch.manual_seed(self.settings.seed + self.context.rank)  # per-rank streams; the weights are made
            return
        saved = self.engine.load(resume.checkpoint_dir)
        if resume.overrides and self.settings.optim is not None:
            self.engine.apply_optimisation(self.settings.optim)
        self.step, self.epoch, self.batch_in_epoch = saved["step"], saved["epoch"], saved["batch_in_epoch"]
        self.nonfinite = saved.get("nonfinite_steps", 0)
        self.task.load_state_dict(saved.get("task", {}))
        rank_state = ckpt.load_rank_state(resume.checkpoint_dir, self.context.rank)
        if "records" in rank_state:
            self.accounting.load_state_dict(rank_state["records"])
        ckpt.set_rng_state(rank_state["rng"])
        self.last_saved = resume.checkpoint_dir

    def save(self) -> Path:
        """A resumable checkpoint of the current step (every rank must call); returns its folder."""
        if self.last_saved is not None and self.last_saved.name == ckpt.tag_for(self.step):
            return self.last_saved
        state = {
            **self.checkpoint_state,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "nonfinite_steps": self.nonfinite,
            "task": self.task.state_dict(),
        }
        self.last_saved = ckpt.save_checkpoint(
            self.engine,
            self.output_dir,
            self.step,
            state,
            {"records": self.accounting.state_dict()},
            self.context,
            keep=self.settings.save_total_limit,
        )
        return self.last_saved

    def export(self, checkpoint_dir: Path, directory: Path) -> Path:
        """The task's model of `checkpoint_dir` written to `directory` on the main rank (every rank calls)."""
        if self.context.is_main:
            export_folder(directory, lambda path: self.task.export(self.engine, checkpoint_dir, path))
        barrier()
        return directory

    def message(self, text: str) -> None:
        if self.reporter is not None:
            self.reporter.message(text)

    def log_validation(self, metrics: dict) -> None:
        """Write a validation result to validation.jsonl / TensorBoard on the main rank."""
        if self.reporter is not None:
            self.reporter.log_validation(metrics)

    # ------------------------------------------------------------------ records
    def record_totals(self) -> RecordTotals:
        return RecordTotals.from_vector(all_reduce_sum(self.accounting.vector(), self.context.device))

    def _examples(self) -> list:
        return [item for rank_examples in gather_objects(self.accounting.examples) for item in rank_examples]

    def _bad_record_stop(self, totals: RecordTotals, whole_pass: bool) -> str | None:
        accounting = self.accounting
        if not should_stop(totals.bad, totals.seen, accounting.max_bad_fraction, whole_pass, accounting.min_seen):
            return None
        return accounting.stop_message(totals, whole_pass, self._examples())

    def write_summary(self, status: str, final_dir: Path | None) -> dict:
        """summary.json (main rank; every rank calls): status, steps, losses, records, the command's entries."""
        totals, examples = self.record_totals(), self._examples()
        summary = {
            "status": status,
            "steps": self.step,
            "total_steps": self.settings.total_steps,
            "seconds": round(time.time() - self.settings.started, 2),
            "first_logged_loss": self.first_loss,
            "last_logged_loss": self.last_loss,
            "nonfinite_steps": self.nonfinite,
            # updates the plain engine skipped for inf/nan gradients (None: DeepSpeed's engine decides those)
            "skipped_nonfinite_updates": getattr(self.engine, "skipped_nonfinite_grads", None),
            **self.accounting.summary(totals, examples[: self.accounting.keep_examples]),
            **self.settings.summary,
            **self.task.summary(),
            "engine": self.engine.kind,
            "world_size": self.context.world_size,
            "final": str(final_dir) if final_dir else None,
        }
        if self.context.is_main:
            write_json(self.output_dir / SUMMARY_FILE, summary)
        return summary

    # ------------------------------------------------------------------ the loop
    def run(self, resume: ResumePoint | None = None) -> RunOutcome:
        settings, context, engine, task = self.settings, self.context, self.engine, self.task
        self._restore(resume)
        if context.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
        self.reporter = RunReporter(
            self.output_dir,
            settings.total_steps,
            self.step,
            context.is_main,
            settings.report_to,
            settings.progress,
            description=settings.description,
        )
        if resume is not None:
            self.message(
                f"resumed from {resume.checkpoint_dir} at step {self.step} (epoch {self.epoch}, "
                f"batch {self.batch_in_epoch})"
            )
        self.first_loss, self.last_loss = self.reporter.first_logged_loss, self.reporter.last_logged_loss
        window, consecutive = _Window(task.loss_terms), 0
        pending_stop, stop_requested = None, False
        micro_batches_pending = 0  # accumulated since the last optimizer step (stops and saves wait for 0)
        input_dtype = engine.input_dtype
        try:
            with TerminationRequest() as termination:
                while self.step < settings.total_steps:
                    self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
                    for batch in self.loader:
                        self.batch_in_epoch += 1
                        task.account(self.accounting, batch)
                        present = task.present_terms(batch)
                        samples = task.num_samples(batch)
                        batch = task.to_device(batch, context.device, input_dtype)
                        micro_batch = self.epoch * len(self.sampler) + self.batch_in_epoch - 1
                        result = task.compute_loss(engine, batch, micro_batch)
                        nonfinite_ranks, terminating_ranks = all_reduce_sum(
                            [float(not torch.isfinite(result.total.detach()).item()), float(termination.requested)],
                            context.device,
                        )
                        stop_requested = stop_requested or terminating_ranks > 0
                        if nonfinite_ranks > 0:
                            self.nonfinite, consecutive = self.nonfinite + 1, consecutive + 1
                            self.message(
                                f"non-finite loss at step {self.step + 1}: batch skipped ({consecutive} in a row)"
                            )
                            if consecutive >= settings.max_nonfinite_steps:
                                raise TrainingError(
                                    f"{consecutive} non-finite losses in a row (last at step "
                                    f"{self.step + 1}); lower --lr, use fp32 (no --bf16) or check "
                                    "the data"
                                )
                            continue
                        consecutive = 0
                        engine.backward(result.total)
                        window.add(
                            result.total.item(), {k: v.item() for k, v in result.terms.items() if k in present}, samples
                        )
                        micro_batches_pending += 1
                        if not engine.step():
                            continue
                        micro_batches_pending = 0
                        self.step += 1
                        self.reporter.advance()
                        if self.step % settings.log_every == 0 or self.step == settings.total_steps:
                            totals = self._log(window)
                            pending_stop = pending_stop or self._bad_record_stop(totals, whole_pass=False)
                        # before any checkpoint of this step, so that it holds what the task decided (a best model)
                        task.after_step(self.step, self)
                        if settings.save_every and self.step % settings.save_every == 0:
                            self.save()
                        if pending_stop or stop_requested:
                            break
                        if settings.stop_at_step is not None and self.step >= settings.stop_at_step:
                            return self._outcome(None, {}, stopped_early=True)
                        if self.step >= settings.total_steps:
                            break
                    if pending_stop or stop_requested:
                        break
                    if self.batch_in_epoch >= len(self.sampler):
                        self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                        pending_stop = self._bad_record_stop(self.record_totals(), whole_pass=True)
                        if pending_stop and not micro_batches_pending:
                            break
                if not (pending_stop or stop_requested):
                    pending_stop = self._bad_record_stop(self.record_totals(), whole_pass=False)
                if pending_stop or stop_requested:
                    self._stop(pending_stop)
                # a SIGTERM from here on is too late to matter: the run finishes
                final_dir = self.export(self.save(), self.output_dir / FINAL_DIR)
        finally:
            self.reporter.close()
        summary = self.write_summary("finished", final_dir)
        return self._outcome(final_dir, summary)

    def _outcome(self, final_dir: Path | None, summary: dict, stopped_early: bool = False) -> RunOutcome:
        return RunOutcome(
            self.step,
            time.time() - self.settings.started,
            self.first_loss,
            self.last_loss,
            self.nonfinite,
            final_dir,
            summary,
            stopped_early=stopped_early,
        )

    def _stop(self, bad_data: str | None) -> None:
        """Save a checkpoint, write summary.json with the reason, raise the stop (every rank alike)."""
        at = self.save()
        if bad_data:
            self.write_summary("stopped: too many bad records", None)
            stop = UserError(
                f"{bad_data}; checkpoint of step {self.step} saved in {at} (--resume latest continues "
                "once the data is fixed or --max_bad_fraction raised)"
            )
        else:
            self.write_summary("stopped: SIGTERM", None)
            stop = Terminated(
                f"stopped by SIGTERM after step {self.step} of {self.settings.total_steps}: checkpoint "
                f"saved in {at}; continue with --resume latest"
            )
        stop.every_rank = True  # every rank stops alike: the command line prints it once
        raise stop

    def _log(self, window: _Window) -> RecordTotals:
        """Average the window over ranks, write it, start a new window; returns the record totals."""
        context, step = self.context, self.step
        window_values = window.vector()
        sums = all_reduce_sum(window_values + self.accounting.vector(), context.device)
        totals = RecordTotals.from_vector(sums[len(window_values) :])
        count = max(sums[1], 1.0)
        terms = {}
        for index, name in enumerate(window.names):
            total, term_count = sums[2 + 2 * index], sums[3 + 2 * index]
            terms[f"loss_{name}"] = total / term_count if term_count else None  # absent, not a perfect 0.0
            if not term_count and name not in self._warned_absent:
                self._warned_absent.add(name)
                self.message(
                    f"no batch of steps up to {step} had {self.task.describe_term(name)}: loss_{name} is "
                    "absent there (logged as null)"
                )
        elapsed = max(time.time() - window.started, 1e-9)
        metrics = {
            "step": step,
            "epoch": self.epoch,
            "loss": sums[0] / count,
            **terms,
            "lr": self.engine.lr,
            "samples_per_s": window.samples * context.world_size / elapsed,
            "bad_records": totals.bad,
            "seen_records": totals.seen,
            "nonfinite_steps": self.nonfinite,
        }
        self.reporter.log(metrics)
        if context.is_main:
            self.first_loss = self.reporter.first_logged_loss
        self.last_loss = metrics["loss"]
        window.reset()
        return totals
