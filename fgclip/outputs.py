"""Output folders that never destroy what a command did not create.

Every writing command (conversions, exports, LLaVA builds, training runs, evaluations, the data engine)
calls `prepare_output_dir` before any heavy work, so a bad `--out` fails in the first second with one line,
not after an hour of encoding. The rules:

* the output may not be a file, nor one of the command's inputs (no flag overrides this: writing over what
  is being read is never what the user meant);
* an existing, non-empty folder is accepted only when everything in it is something this command writes
  (`owned`, e.g. a previous run of the same evaluation), or when the user said `--overwrite` (the flag's
  name is the command's own, e.g. `--overwrite_output_dir` for training). A folder that holds an input is
  therefore refused too unless the user insists, and even then only the command's own files are written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from fgclip.errors import UserError


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def prepare_output_dir(
    path: str | Path,
    *,
    inputs: Iterable[str | Path | None] = (),
    owned: Callable[[Path], bool] | Iterable[str] = (),
    overwrite: bool = False,
    overwrite_flag: str = "--overwrite",
    option: str = "--out",
    what: str = "",
) -> Path:
    """Check that `path` may be written by this command and create it; returns it.

    inputs: paths the command reads (files or folders; None entries are ignored).
    owned: the names (or a predicate on paths) of the top-level entries this command itself writes; a
        folder holding only such entries is a previous output of the command and may be written again.
    overwrite: the user's explicit permission to write into a folder holding anything else.
    what: a few words for the message about what the folder holds when it is refused (e.g. "a model").
    """
    output = _resolved(path)
    if output.exists() and not output.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder (it is created when missing)")
    for source in inputs:
        if source is None:
            continue
        if output == _resolved(source):
            raise UserError(
                f"{option} {path} is the input {source}: writing there would overwrite what is being "
                "read; choose another output folder"
            )
    if output.is_dir():
        is_owned = owned if callable(owned) else (lambda entry, names=frozenset(owned): entry.name in names)
        foreign = sorted(entry.name for entry in output.iterdir() if not is_owned(entry))
        if foreign and not overwrite:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            holds = f"{what} ({shown})" if what else shown
            raise UserError(
                f"{option} {path} already holds {holds}, which this command did not write; "
                f"choose an empty folder or pass {overwrite_flag} to write into it anyway"
            )
    output.mkdir(parents=True, exist_ok=True)
    return output
