"""Resumable checkpoints, written so that a crash never leaves `latest` pointing at a partial one.

Layout under `OUTPUT_DIR/checkpoints/`:

    step-00000100/            engine state (DeepSpeed's files, or trainer_state.pt for one process),
                              rank_00000.pt ... (each rank's RNG states and bad-record counts),
                              trainer_state.json (step, epoch, batch position, run settings)
    latest                    the name of the newest complete checkpoint

A checkpoint is first written as `step-N.partial/`; only when every rank has finished is it renamed
to `step-N/`, and only then is `latest` replaced (write to a temporary file, fsync, rename). So
`latest` always names a complete checkpoint, whatever moment a crash hits.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from fgclip.errors import UserError
from fgclip.train.distributed import DistributedContext, barrier

CHECKPOINTS = "checkpoints"
LATEST = "latest"
STATE_FILE = "trainer_state.json"
PARTIAL_SUFFIX = ".partial"


class ResumeError(UserError, ValueError):
    """`--resume` names nothing usable, or a checkpoint of an incompatible run (one-line message)."""


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS


def tag_for(step: int) -> str:
    return f"step-{step:08d}"


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def save_checkpoint(engine, output_dir: str | Path, step: int, trainer_state: dict, rank_state: dict,
                    context: DistributedContext, keep: int = 2) -> Path:
    """Write the checkpoint of `step` on every rank (all must call); returns its folder."""
    root = checkpoint_root(output_dir)
    final = root / tag_for(step)
    partial = root / (tag_for(step) + PARTIAL_SUFFIX)
    if context.is_main:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)  # left by an earlier crash
    barrier()
    engine.save(partial, trainer_state)
    partial.mkdir(parents=True, exist_ok=True)
    torch.save({**rank_state, "rng": rng_state()}, partial / f"rank_{context.rank:05d}.pt")
    barrier()
    if context.is_main:
        _write_atomic(partial / STATE_FILE, json.dumps(trainer_state, indent=2, default=str) + "\n")
        if final.exists():  # the same step saved again (e.g. the end of a run that just saved)
            shutil.rmtree(final)
        partial.rename(final)
        _write_atomic(root / LATEST, final.name + "\n")
        _prune(root, keep, final.name)
    barrier()
    return final


def _prune(root: Path, keep: int, newest: str) -> None:
    """Delete all but the `keep` newest complete checkpoints (never the one `latest` names)."""
    if keep <= 0:
        return
    complete = sorted(p for p in root.glob("step-*") if p.is_dir() and not p.name.endswith(PARTIAL_SUFFIX))
    for old in complete[:-keep]:
        if old.name != newest:
            shutil.rmtree(old, ignore_errors=True)


def resolve_resume(resume: str, output_dir: str | Path) -> Path:
    """The checkpoint folder `--resume` names: `latest` (in this run's output) or a path.

    A path may be a checkpoint folder, a `checkpoints/` folder, or a run's output folder.
    """
    if resume == "latest":
        candidates = [checkpoint_root(output_dir)]
    else:
        path = Path(resume)
        if not path.exists():
            raise ResumeError(f"--resume {resume}: no such file or folder")
        candidates = [path, path / CHECKPOINTS]
    for candidate in candidates:
        if (candidate / STATE_FILE).is_file():
            return candidate
        pointer = candidate / LATEST
        if pointer.is_file():
            folder = candidate / pointer.read_text().strip()
            if not (folder / STATE_FILE).is_file():
                raise ResumeError(f"{pointer} names {folder.name}, which is not a complete checkpoint")
            return folder
    raise ResumeError(f"--resume {resume}: no checkpoint found (looked in {', '.join(str(c) for c in candidates)})")


def read_trainer_state(checkpoint_dir: Path) -> dict:
    return json.loads((checkpoint_dir / STATE_FILE).read_text())


def check_compatible(saved: dict, current: dict) -> None:
    """Resuming must not change what decides the sample order or the optimizer's state layout."""
    for key in ("engine", "world_size", "batch_size", "grad_accum", "stage", "seed", "num_samples", "total_steps"):
        if saved.get(key) != current.get(key):
            raise ResumeError(
                f"cannot resume: the checkpoint was made with {key}={saved.get(key)!r}, this run has "
                f"{current.get(key)!r} (a resumed run must keep the data, batch layout, seed and schedule)"
            )


def load_rank_state(checkpoint_dir: Path, rank: int) -> dict:
    path = checkpoint_dir / f"rank_{rank:05d}.pt"
    if not path.is_file():
        raise ResumeError(f"{checkpoint_dir} has no state for rank {rank}")
    return torch.load(path, map_location="cpu", weights_only=False)
