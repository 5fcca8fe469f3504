"""What /proc says of a process: its state and group, zombies told apart from processes that still run."""

from pathlib import Path


def state_and_group(stat_file: Path) -> tuple[str, int]:
    """(state letter, process group) from a /proc/<pid>/stat file (the name in parentheses may hold spaces)."""
    fields = stat_file.read_text().rsplit(")", 1)[1].split()
    return fields[0], int(fields[2])


def is_zombie(pid: int) -> bool:
    return state_and_group(Path(f"/proc/{pid}/stat"))[0] == "Z"


def group_runs(group: int) -> bool:
    """Whether a process of `group` still runs; zombies do not count (`os.killpg(group, 0)` would count them, and
    where PID 1 is slow to reap orphans a data-loader worker's zombie outlives its parent)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, process_group = state_and_group(stat)
        except OSError:  # ended while we looked
            continue
        if process_group == group and state != "Z":
            return True
    return False
