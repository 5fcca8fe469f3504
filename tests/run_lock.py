"""Another job training in a folder, as far as the folder's run lock can tell (`fgclip.train.run_folder`)."""

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

HOLD = (
    "import sys, time\n"
    "from fgclip.train.run_folder import lock_run_folder\n"
    "print(lock_run_folder(sys.argv[1]), flush=True)\n"
    "time.sleep(600)\n"
)


@contextmanager
def another_job_holding(folder: Path):
    """A process that holds `folder`'s run lock until the block ends (then it is killed, as a job can be)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "None"  # it got the lock
        yield holder
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def files_of(folder: Path, but: str = "") -> list:
    """Every file under `folder` (except those named `but`) with its modification time: what a refused run must
    leave as it was."""
    files = [path for path in folder.rglob("*") if path.is_file() and path.name != but]
    return sorted((path.relative_to(folder), path.stat().st_mtime_ns) for path in files)
