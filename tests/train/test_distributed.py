"""fgclip.train.distributed: one process without a launcher runs DeepSpeed as a group of one, and leaves the Python
process as it found it: a notebook or test that trains twice, or starts a launched command
afterwards, must not inherit RANK/WORLD_SIZE/MASTER_PORT from the first run."""

import os

from fgclip.train.distributed import cleanup_quietly, is_initialized, setup_distributed

LAUNCHER_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")


def test_a_group_of_one_gives_the_launcher_variables_back(monkeypatch):
    for name in LAUNCHER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for _ in range(2):  # twice in one process: the second run starts from a clean slate too
        context = setup_distributed(force_deepspeed=True)
        assert context.use_deepspeed and is_initialized()
        assert os.environ["WORLD_SIZE"] == "1" and os.environ["RANK"] == "0"
        cleanup_quietly()
        assert not is_initialized()
        assert [name for name in LAUNCHER_VARIABLES if name in os.environ] == []


def test_a_launchers_variables_are_left_alone(monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "10.0.0.1")  # set by a launcher: not ours to take back
    cleanup_quietly()
    assert os.environ["MASTER_ADDR"] == "10.0.0.1"
