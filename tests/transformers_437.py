"""A Python with transformers 4.37.2 (the original LLaVA's pin) over this environment's torch: what the towers
and modules meant for old LLaVA environments are tested under. Built once and cached; a test is skipped when
the package cannot be installed (no network)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.overlay_venv import overlay_venv, printed_by

VERSION = "4.37.2"


def transformers_437_python() -> str:
    """The interpreter of a cached virtual environment with transformers 4.37.2 (`$FGCLIP_TF437_VENV`, else
    ~/.cache/fgclip/tf437-venv), made on first use."""
    venv = Path(os.environ.get("FGCLIP_TF437_VENV", Path.home() / ".cache" / "fgclip" / "tf437-venv"))
    python = overlay_venv(venv, f"transformers=={VERSION}", timeout=900)
    assert printed_by(python, "import transformers; print(transformers.__version__)") == VERSION
    return str(python)


def run_437(script: str, *args: str, cwd: Path, with_repository: bool = False) -> subprocess.CompletedProcess:
    """Run `script` under transformers 4.37.2; the repository is importable only `with_repository`."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if with_repository:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    return subprocess.run(
        [transformers_437_python(), "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
