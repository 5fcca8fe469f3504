"""Resumable checkpoints, written so that a crash never leaves `latest` pointing at a partial one.

Layout under `OUTPUT_DIR/checkpoints/`:

    step-00000100/            engine state (DeepSpeed's files, or trainer_state.pt for one process),
                              rank_00000.pt ... (each rank's RNG states and bad-record counts),
                              trainer_state.json (step, epoch, batch position, run settings)
    latest                    the name of the newest complete checkpoint

A checkpoint is first written as `step-N.partial/`; only when every rank has finished is it renamed
to `step-N/`, and only then is `latest` replaced (write to a temporary file, fsync, rename). Old
checkpoints are renamed away before they are deleted, and a step saved again replaces its folder by two
renames. So a crash at any moment leaves `latest` naming a complete checkpoint, or (between those two
renames) no folder at all, in which case resuming takes the newest complete one.

Each checkpoint also records the run's identity (`run_identity`): resuming refuses another run (other data,
model, stage or optimisation values) with one line naming the difference, unless `--resume_anyway`.
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
REPLACED_SUFFIX = ".replaced"
DELETING_SUFFIX = ".deleting"


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


def save_checkpoint(
    engine,
    output_dir: str | Path,
    step: int,
    trainer_state: dict,
    rank_state: dict,
    context: DistributedContext,
    keep: int = 2,
) -> Path:
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
        replaced = final.with_name(final.name + REPLACED_SUFFIX)
        if final.exists():  # the same step saved again (e.g. after a resume from an earlier checkpoint)
            shutil.rmtree(replaced, ignore_errors=True)
            final.rename(replaced)
        partial.rename(final)
        _write_atomic(root / LATEST, final.name + "\n")
        shutil.rmtree(replaced, ignore_errors=True)
        _prune(root, keep, final.name)
    barrier()
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under `root`, oldest first."""
    return sorted(p for p in root.glob("step-*") if p.is_dir() and "." not in p.name and (p / STATE_FILE).is_file())


def _resumable(root: Path) -> list[Path]:
    """Complete checkpoints, also one set aside while its step was saved again, oldest first."""
    folders = [
        p
        for p in root.glob("step-*")
        if p.is_dir() and (p / STATE_FILE).is_file() and p.suffix in ("", REPLACED_SUFFIX)
    ]
    return sorted(folders, key=lambda p: (p.name.split(".")[0], p.suffix == ""))


def _prune(root: Path, keep: int, newest: str) -> None:
    """Delete all but the `keep` newest complete checkpoints (never the one `latest` names); leftovers of
    crashed saves and deletions go too."""
    for leftover in root.glob(f"step-*{DELETING_SUFFIX}"):
        shutil.rmtree(leftover, ignore_errors=True)
    if keep <= 0:
        return
    for old in complete_checkpoints(root)[:-keep]:
        if old.name != newest:
            doomed = old.with_name(old.name + DELETING_SUFFIX)
            old.rename(doomed)  # never a half-deleted folder that still looks complete
            shutil.rmtree(doomed, ignore_errors=True)


def resolve_resume(resume: str, output_dir: str | Path) -> Path | None:
    """The checkpoint folder `--resume` names: `latest` (in this run's output) or a path.

    A path may be a checkpoint folder, a `checkpoints/` folder, or a run's output folder. `latest` in a
    folder without any checkpoint is None (a fresh start); a path without one is a `UserError`.
    """
    if resume == "latest":
        candidates = [checkpoint_root(output_dir)]
    else:
        path = Path(resume)
        if not path.exists():
            raise UserError(f"--resume {resume}: no such file or folder")
        candidates = [path, path / CHECKPOINTS]
    for candidate in candidates:
        if (candidate / STATE_FILE).is_file():
            return candidate
        pointer = candidate / LATEST
        if pointer.is_file():
            folder = candidate / pointer.read_text().strip()
            if (folder / STATE_FILE).is_file():
                return folder
        complete = _resumable(candidate) if candidate.is_dir() else []
        if complete:  # `latest` names a folder lost in a crash between two renames: the newest complete one
            return complete[-1]
    if resume == "latest":
        return None
    raise UserError(f"--resume {resume}: no checkpoint found (looked in {', '.join(str(c) for c in candidates)})")


def read_trainer_state(checkpoint_dir: Path) -> dict:
    return json.loads((checkpoint_dir / STATE_FILE).read_text())


# Keys of the run identity that fix the optimizer-state partition and the meaning of the saved data position:
# a checkpoint cannot continue with other values, --resume_anyway or not.
LAYOUT_KEYS = ("engine", "world_size", "batch_size", "grad_accum")


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: value}


def _describe_data(saved: list, current: list) -> str:
    saved_map, current_map = dict(map(tuple, saved)), dict(map(tuple, current))
    for path in saved_map.keys() - current_map.keys():
        return f"the checkpoint's run read {path}, this run does not"
    for path in current_map.keys() - saved_map.keys():
        return f"this run reads {path}, the checkpoint's run did not"
    for path, size in saved_map.items():
        if current_map[path] != size:
            return f"data file {path} had {size:,} bytes in the checkpoint's run and has {current_map[path]:,} now"
    return "the data files are listed in another order"


def identity_differences(saved: dict, current: dict) -> list[str]:
    """What differs between the identity a checkpoint recorded and this run's, one phrase each."""
    differences = []
    flat_saved, flat_current = _flatten(saved), _flatten(current)
    for key in flat_current:
        if key not in flat_saved:  # a checkpoint from before this key was recorded
            continue
        before, now = flat_saved[key], flat_current[key]
        if before == now:
            continue
        if key == "data":
            differences.append(_describe_data(before, now))
        else:
            differences.append(f"{key} was {before!r} in the checkpoint's run, this run has {now!r}")
    return differences


def run_layout(engine: str, world_size: int, batch_size: int, grad_accum: int) -> dict:
    """The part of a run's identity that a resumed run must keep (`LAYOUT_KEYS`), even with --resume_anyway."""
    return dict(zip(LAYOUT_KEYS, (engine, world_size, batch_size, grad_accum)))


def check_compatible(saved: dict, current: dict, resume_anyway: bool = False) -> list[str]:
    """Refuse to resume another run. Returns the differences accepted with `resume_anyway`."""
    saved_identity, current_identity = saved.get("identity") or {}, current.get("identity") or {}
    for key in LAYOUT_KEYS:  # also checked for checkpoints written before identities were recorded
        before = saved_identity.get("layout", saved).get(key)
        now = current_identity.get("layout", current).get(key)
        if before is not None and before != now:
            raise UserError(
                f"cannot resume: the checkpoint was made with {key}={before!r}, this run has {now!r} (a resumed run "
                "must keep the engine, processes, batch size and accumulation; --resume_anyway cannot change them)"
            )
    differences = identity_differences(saved_identity, current_identity)
    if differences and not resume_anyway:
        more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
        raise UserError(
            f"cannot resume: {differences[0]}{more}; pass --resume_anyway to continue with this run's "
            "settings (recorded in train_config.json)"
        )
    return differences


def load_rank_state(checkpoint_dir: Path, rank: int) -> dict:
    path = checkpoint_dir / f"rank_{rank:05d}.pt"
    if not path.is_file():
        raise UserError(f"{checkpoint_dir} has no state for rank {rank}")
    return torch.load(path, map_location="cpu", weights_only=False)
