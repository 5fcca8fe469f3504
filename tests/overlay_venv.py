"""Cached virtual environments that add one pinned requirement over this interpreter's packages (transformers
4.37.2 for the old-LLaVA tests, lmms-eval), so that their pins never touch the project's environment."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


def overlay_venv(venv: Path, requirement: str, timeout: int) -> Path:
    """The interpreter of the virtual environment `venv` with `requirement` pip-installed, made on first use and
    again when it was made for another requirement; the calling test is skipped when the install fails (no
    network). This interpreter's packages (torch, ...) are seen after the venv's own through a .pth file, not
    --system-site-packages, which would give the base interpreter's when the tests run in a venv; what the
    requirement pins differently is installed into the venv and shadows them there."""
    python = venv / "bin" / "python"
    marker = venv / ".ready"
    if not marker.is_file() or marker.read_text().strip() != requirement:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        own = printed_by(python, "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (Path(own) / "fgclip_parent_packages.pth").write_text("".join(f"{path}\n" for path in sorted(ours)))
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", requirement], capture_output=True, text=True, timeout=timeout
        )
        if install.returncode != 0:
            pytest.skip(f"could not install {requirement}: {install.stderr.strip().splitlines()[-1:]}")
        marker.write_text(requirement + "\n")
    return python


def printed_by(python: Path, code: str) -> str:
    """What `python -c code` prints, stripped (an error raises)."""
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()
