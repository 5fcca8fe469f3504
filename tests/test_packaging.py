"""A non-editable `pip install .` runs every command: the wheel carries the DeepSpeed configs and a console
script per command, and the installed scripts answer from the installed package, not from this checkout."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DATA = ("fgclip/train/zero2.json", "lmm_integration/zero2_llava.json")


def console_scripts() -> dict[str, str]:
    """`[project.scripts]` of pyproject.toml (read with a pattern: tomllib is Python 3.11+, we support 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = text[text.index("[project.scripts]") :].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+) = "([\w.:]+)"$', table, flags=re.M))


def command_modules() -> set[str]:
    """Every module that runs as a command (`if __name__ == "__main__":`), except benchmark parts that
    `benchmarks.run NAME` runs, and `__main__` modules (their package's command is listed)."""
    modules = set()
    for path in [
        *ROOT.glob("fgclip/**/*.py"),
        *ROOT.glob("eval/**/*.py"),
        *ROOT.glob("lmm_integration/**/*.py"),
        *ROOT.glob("benchmarks/*.py"),
    ]:
        text = path.read_text()
        if 'if __name__ == "__main__":' not in text or path.name == "__main__.py" or "run_as_main" in text:
            continue
        modules.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return modules


def test_every_command_module_has_a_console_script():
    targets = {target.split(":")[0] for target in console_scripts().values()}
    assert command_modules() - targets == set()
    for name, target in console_scripts().items():
        assert re.fullmatch(r"fgclip(-[a-z0-9]+)+", name), name
        module, attribute = target.split(":")
        assert f"\n{attribute} = entry_point(main)" in (ROOT / (module.replace(".", "/") + ".py")).read_text(), target


@pytest.mark.slow
def test_a_wheel_install_runs_the_commands_from_the_installed_package(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = wheels.glob("fgclip-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(PACKAGE_DATA) <= names
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    listed = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{name} = {target}" in listed for name, target in console_scripts().items())

    # A venv that sees this environment's torch & co. but installs fgclip itself from the wheel, not editable.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import fgclip, fgclip.train.config as c; print(fgclip.__file__); "
            "print(c.SHIPPED_DEEPSPEED_CONFIG.is_file())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(venv)) and where[1] == "True"
    for script in ("fgclip-pretrain", "fgclip-eval-fgovd", "fgclip-llava-build"):
        result = subprocess.run([str(venv / "bin" / script), "--help"], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
