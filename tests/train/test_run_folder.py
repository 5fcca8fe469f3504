"""--output_dir: a folder holding a run is continued (--resume) or replaced (--overwrite_output_dir), never
mixed; files the trainer did not write and its own inputs are never destroyed."""

import json
import os
import subprocess
import sys

import pytest

from fgclip.train.cli import main
from fgclip.train.run_folder import LOCK_FILE, lock_run_folder, unlock_run_folder
from tests.run_lock import another_job_holding, files_of
from tests.train.conftest import read_metrics, run_argv


@pytest.fixture
def finished_run(tmp_path, synthetic_set, tiny_init):
    out = tmp_path / "run"
    argv = run_argv(synthetic_set / "train.jsonl", tiny_init, out, "--log_every", "1")
    assert main(argv + ["--max_steps", "3", "--save_every", "1", "--save_total_limit", "3"]) == 0
    return out, argv


def error_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]


def test_a_finished_run_is_refused_then_replaced_without_mixing(finished_run, capsys):
    out, argv = finished_run
    assert main(argv + ["--max_steps", "2"]) == 2
    assert error_lines(capsys) == [
        (
            f"error: --output_dir {out} holds a finished run (summary.json, final/); pass "
            "--resume latest to continue it or --overwrite_output_dir to replace it"
        )
    ]
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3]  # untouched
    (out / "notes.txt").write_text("the user's own notes")
    assert main(argv + ["--max_steps", "2", "--overwrite_output_dir"]) == 0
    assert [m["step"] for m in read_metrics(out)] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["latest", "step-00000002"]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    assert (out / "notes.txt").read_text() == "the user's own notes"


def test_resume_latest_on_a_finished_run_keeps_it(finished_run, capsys):
    out, argv = finished_run
    before = (out / "final" / "model.safetensors").read_bytes()
    (out / "notes.txt").write_text("the user's own notes")  # beside a run they stay, and do not block a resume
    assert main(argv + ["--max_steps", "3", "--resume", "latest"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert (out / "final" / "model.safetensors").read_bytes() == before
    assert [m["step"] for m in read_metrics(out)] == [1, 2, 3]


def test_an_unfinished_run_and_foreign_files_are_refused(tmp_path, synthetic_set, tiny_init, capsys):
    out = tmp_path / "run"
    argv = run_argv(synthetic_set / "train.jsonl", tiny_init, out, "--max_steps", "4")
    assert main(argv + ["--save_every", "2", "--stop_at_step", "2"]) == 0
    assert main(argv) == 2
    assert "holds an unfinished run (last checkpoint step-00000002); pass --resume latest" in error_lines(capsys)[0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "weights.bin").write_bytes(b"someone else's")
    assert main(argv[:5] + [str(other)] + argv[6:]) == 2
    assert "already holds files that are not a training run's (weights.bin)" in error_lines(capsys)[0]


def test_an_input_inside_the_run_folder_is_refused(finished_run, capsys):
    out, argv = finished_run
    argv = [str(out / "final") if item == argv[3] else item for item in argv]  # --init OUT/final
    assert main(argv + ["--max_steps", "2", "--overwrite_output_dir"]) == 2
    assert error_lines(capsys) == [
        (
            f"error: --output_dir {out} holds the input {out / 'final'} in its final/, which "
            "this run would overwrite; choose another --output_dir"
        )
    ]
    assert (out / "final" / "model.safetensors").is_file()


def ask_for_the_lock(folder) -> str:
    """What another process gets when it asks for the run lock of `folder` ("None" when it gets it)."""
    code = "import sys; from fgclip.train.run_folder import lock_run_folder; print(lock_run_folder(sys.argv[1]))"
    return subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True).stdout.strip()


def test_the_run_lock_is_one_process_at_a_time(tmp_path):
    assert lock_run_folder(tmp_path) is None and lock_run_folder(tmp_path) is None  # again in one process: a no-op
    try:
        assert ask_for_the_lock(tmp_path).startswith(f"pid {os.getpid()} on ")
    finally:
        unlock_run_folder(tmp_path)
    assert ask_for_the_lock(tmp_path) == "None"  # given back (and a process that ends gives it back too)


def test_a_file_system_without_locks_trains_and_says_so(tmp_path, monkeypatch, capsys):
    """Some NFS and Lustre mounts refuse flock (ENOLCK): the run goes on, with one warning line."""
    import errno
    import fcntl

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    assert lock_run_folder(tmp_path) is None
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"warning: {tmp_path.resolve()} does not support file locks (No locks available)")


def test_a_second_job_on_a_folder_in_use_stops_and_touches_nothing(finished_run, capsys):
    """A scheduler's retry (or a second launch by mistake) while the first job still trains in the folder: one line
    naming the holder, exit 2, nothing removed, even with --overwrite_output_dir."""
    out, argv = finished_run
    before = files_of(out, but=LOCK_FILE)
    with another_job_holding(out) as holder:
        capsys.readouterr()
        assert main(argv + ["--max_steps", "2", "--overwrite_output_dir"]) == 2
        [line] = error_lines(capsys)
        assert line.startswith(f"error: --output_dir {out} is in use by another run (pid {holder.pid} on ")
        assert line.endswith("wait for it to end or choose another --output_dir")
        assert files_of(out, but=LOCK_FILE) == before
    assert main(argv + ["--max_steps", "2", "--overwrite_output_dir"]) == 0  # a killed holder's lock is gone with it
