"""benchmarks/settings.py: what every benchmark command shares before torch loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("silenced", [False, True])
def test_silence_progress_bars_reaches_the_bars_of_the_code_under_test(silenced):
    """`--quiet` (benchmarks.run) and `--no_progress` (benchmarks.fashion_miniature) silence the evaluations' bars
    too. tqdm reads TQDM_DISABLE once, when it is imported: the commands call `silence_progress_bars` after parsing,
    before anything has imported tqdm, as this child process does."""
    child = (
        "import sys\n"
        "import benchmarks.fashion_miniature, benchmarks.run\n"
        "assert 'tqdm' not in sys.modules, 'a command module imports tqdm before it can be silenced'\n"
        f"if {silenced}:\n"
        "    from benchmarks.settings import silence_progress_bars\n"
        "    silence_progress_bars()\n"
        "from eval.common import encoder\n"
        "for _ in encoder.tqdm(range(3), desc='encode texts'):\n"
        "    pass\n"
    )
    env = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", child], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("encode texts" in done.stderr) is not silenced
