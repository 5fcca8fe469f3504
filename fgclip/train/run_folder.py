"""The run folder (`--output_dir`): never mix two runs, never destroy what the trainer did not write.

* The folder may not be a file or one of the run's inputs (`fgclip.outputs.prepare_output_dir`), nor hold
  anything the trainer does not write unless `--overwrite_output_dir` is given or a run there is resumed.
* A folder holding a run (finished or not) is continued with `--resume`, or replaced with
  `--overwrite_output_dir`, which removes that run's files first (checkpoints, metrics, TensorBoard
  events, final/), so the new run's files never mix with the old one's. Anything else is refused.
* An input inside the run's files (e.g. `--init OUT/final` with `--output_dir OUT`) is refused: the run
  would overwrite what it reads.
* One run at a time: the job's rank 0 holds an exclusive lock on `OUTPUT_DIR/.run.lock` while it trains (the
  kernel drops it when the process ends, however it ends), so a second job started on the same folder, by
  mistake or by a scheduler's retry while the first still runs, stops with one line naming the holder instead
  of interleaving checkpoints with it or removing its files.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir

RUN_FILES = ("train_config.json", "metrics.jsonl", "summary.json", "checkpoints", "final", "tensorboard")
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".run.lock"  # the trainer's own (never "a run" by itself: a crash before any other file leaves only it)
# The files of a command's runs: pretraining's by default; Fashion-FINE finetuning adds its own
# (fgclip.fashion.train.RUN_FILES).


def is_run_file(entry: Path, names: tuple[str, ...] = RUN_FILES) -> bool:
    """What a training run writes at the top of its folder, temporary names (`final.partial`, `x.tmp`) included."""
    return entry.name in names or entry.name.startswith(tuple(f"{name}." for name in names))


def run_files(output_dir: Path, names: tuple[str, ...] = RUN_FILES) -> list[Path]:
    return sorted(entry for entry in output_dir.iterdir() if is_run_file(entry, names)) if output_dir.is_dir() else []


def describe_run(output_dir: Path, names: tuple[str, ...] = RUN_FILES) -> str:
    """ "a finished run" / "an unfinished run (last checkpoint step-00000040)" / "the files of a run"."""
    summary = output_dir / SUMMARY_FILE
    if summary.is_file():
        try:
            status = json.loads(summary.read_text()).get("status", "finished")
        except (json.JSONDecodeError, AttributeError):
            status = "finished"
        if status == "finished":
            return "a finished run (summary.json, final/)"
    latest = output_dir / "checkpoints" / "latest"
    if latest.is_file():
        return f"an unfinished run (last checkpoint {latest.read_text().strip()})"
    return "the files of a run (" + ", ".join(p.name for p in run_files(output_dir, names)[:3]) + ")"


def check_run_folder(
    output_dir: str | Path,
    inputs: Iterable[str | Path | None],
    resume: bool,
    overwrite: bool,
    names: tuple[str, ...] = RUN_FILES,
) -> list[Path]:
    """Check `--output_dir` (on every rank, before anything is written); returns the run files to remove
    (non-empty only with `--overwrite_output_dir`)."""
    inputs = [Path(path) for path in inputs if path is not None]
    continuing = resume and bool(run_files(Path(output_dir), names))  # the user's own notes beside a run may stay
    owned = (lambda entry: True) if continuing else (lambda entry: entry.name == LOCK_FILE or is_run_file(entry, names))
    output = prepare_output_dir(
        output_dir,
        inputs=inputs,
        owned=owned,
        overwrite=overwrite,
        overwrite_flag="--overwrite_output_dir",
        option="--output_dir",
        what="files that are not a training run's",
    )
    existing = run_files(output, names)
    for path in inputs:
        resolved = path.expanduser().resolve()
        for entry in existing:
            if resolved == entry.resolve() or entry.resolve() in resolved.parents:
                raise UserError(
                    f"--output_dir {output_dir} holds the input {path} in its {entry.name}/, which "
                    "this run would overwrite; choose another --output_dir"
                )
    if not existing or resume:
        return []
    if overwrite:
        return existing
    raise UserError(
        f"--output_dir {output_dir} holds {describe_run(output, names)}; pass --resume latest to continue it "
        "or --overwrite_output_dir to replace it"
    )


def remove_run_files(files: list[Path]) -> None:
    """Delete an earlier run's files (rank 0, after every rank has checked the folder)."""
    for path in files:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


_held_locks: dict[Path, object] = {}  # folder -> the open lock file: held until the process ends or releases it


def lock_run_folder(output_dir: str | Path) -> str | None:
    """Take the run lock of `output_dir` for this process (rank 0 of a job); None when this process holds it,
    else who does ("pid 1234 on node-7 since 2026-11-24 20:45:02"). Taking it again in the same process is a no-op,
    so a notebook or a test may run twice in one folder."""
    folder = Path(output_dir).resolve()
    if folder in _held_locks:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        return holder
    except OSError as error:  # a file system without locks (some NFS and Lustre mounts): train, and say so
        handle.close()
        print(
            f"warning: {folder} does not support file locks ({error.strerror}); nothing keeps a second job "
            "started on this --output_dir from mixing with this one",
            file=sys.stderr,
        )
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _held_locks[folder] = handle
    return None


def unlock_run_folder(output_dir: str | Path) -> None:
    """Let another process train in `output_dir` (a finished run, in a process that goes on: a notebook)."""
    handle = _held_locks.pop(Path(output_dir).resolve(), None)
    if handle is not None:
        handle.close()  # closing the only descriptor of the lock file drops the lock


def claim_run_folder(output_dir: str | Path, is_main: bool) -> None:
    """Every rank of a job: rank 0 takes the folder's run lock, and every rank reads its answer (so all stop alike,
    with one line, when another job holds it). Also a point every rank passes before rank 0 changes the folder."""
    from fgclip.train.distributed import gather_objects  # torch: only for a job that trains anyway

    holder = gather_objects(lock_run_folder(output_dir) if is_main else None)[0]
    if holder is not None:
        raise UserError(
            f"--output_dir {output_dir} is in use by another run ({holder}); wait for it to end or choose another "
            "--output_dir",
            every_rank=True,
        )
