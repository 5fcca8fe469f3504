"""The run folder (`--output_dir`): never mix two runs, never destroy what the trainer did not write.

* The folder may not be a file or one of the run's inputs (`fgclip.outputs.prepare_output_dir`), nor hold
  anything the trainer does not write unless `--overwrite_output_dir` is given or a run there is resumed.
* A folder holding a run (finished or not) is continued with `--resume`, or replaced with
  `--overwrite_output_dir`, which removes that run's files first (checkpoints, metrics, TensorBoard
  events, final/), so the new run's files never mix with the old one's. Anything else is refused.
* An input inside the run's files (e.g. `--init OUT/final` with `--output_dir OUT`) is refused: the run
  would overwrite what it reads.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir

RUN_FILES = ("train_config.json", "metrics.jsonl", "summary.json", "checkpoints", "final", "tensorboard")
SUMMARY_FILE = "summary.json"
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
    owned = (lambda entry: True) if continuing else (lambda entry: is_run_file(entry, names))
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
