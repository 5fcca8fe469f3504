"""The benchmark CLI: usage errors exit 2 with one line, and every benchmark runs end to end in smoke mode.

Smoke mode runs tiny shapes once; nothing here looks at a timing, only at the report being complete.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.run import BENCHMARKS, main
from fgclip.cli import run

REPO = Path(__file__).resolve().parents[2]


def exit_code(argv: list[str]) -> int:
    """What `python -m benchmarks.run ARGV` exits with (argparse's usage errors exit from the parser)."""
    try:
        return run(main, argv)
    except SystemExit as stop:
        return stop.code


def test_help_lists_every_benchmark(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in [*BENCHMARKS, "default_experiment", "all", "--smoke", "--device", "--output_dir", "--compile"]:
        assert name in text
    assert "--out " not in text and "--batch-size" not in text  # old spellings work but are not shown


@pytest.mark.parametrize(
    "argv, message",
    [
        (["no_such_benchmark"], "unknown benchmark"),
        (["train_step", "--batch-size", "0"], "--batch_size: must be a positive integer, got 0"),
        (["train_step", "--repeats", "0"], "--repeats: must be a positive integer, got 0"),
        (["train_step", "--device", "tpu"], "--device"),
        (["train_step", "--tag", "a/b"], "--tag"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, message, capsys):
    assert exit_code(argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_usage_error(capsys):
    assert exit_code(["train_step", "--smoke", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_a_missing_benchmark_module_is_a_usage_error(capsys, monkeypatch):
    import benchmarks.run as run

    monkeypatch.setitem(run.EXTERNAL, "ghost", ("benchmarks.no_such_module", "absent"))
    assert exit_code(["ghost", "--smoke"]) == 2
    assert "benchmarks/no_such_module.py is not in this checkout" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_runs_in_smoke_mode(name, tmp_path, capsys):
    assert main([name, "--smoke", "--quiet", "--output_dir", str(tmp_path)]) == 0
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert report["benchmark"] == name and report["settings"]["smoke"] is True
    assert report["device"]["name"] and report["date"] and report["command"].startswith("python -m benchmarks.run")
    assert report["figures"], "a benchmark must report figures"
    for figure in report["figures"]:
        assert figure["value"] is not None and figure["value"] == figure["value"], figure  # not None, not NaN
    assert f"### {name}" in capsys.readouterr().out


def test_gpu_suite_is_valid_bash_and_refuses_without_an_output_folder():
    script = REPO / "benchmarks" / "gpu_suite.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 2 and "OUT_DIR" in result.stdout
    result = subprocess.run(["bash", str(script), "/tmp/unused", "--bogus"], capture_output=True, text=True)
    assert result.returncode == 2 and "unknown option" in result.stderr


HIDE_DEEPSPEED = """
import importlib, sys
class Hide:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "deepspeed":
            return None
        find = getattr(self.inner, "find_spec", None)
        return find(name, path, target) if find else None
    def __getattr__(self, name):  # find_distributions, invalidate_caches, ...
        return getattr(self.inner, name)
sys.meta_path[:] = [Hide(finder) for finder in sys.meta_path]
for module in sys.argv[1:]:
    importlib.import_module(module)
assert "deepspeed" not in sys.modules
"""


@pytest.mark.slow
def test_gpu_benchmarks_import_without_deepspeed():
    """The GPU machine has no DeepSpeed: the benchmarks the GPU suite runs must not need it."""
    modules = [module for module, _ in BENCHMARKS.values()]
    result = subprocess.run([sys.executable, "-c", HIDE_DEEPSPEED, *modules], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_module_with_a_dict_returning_main_is_reported(tmp_path, monkeypatch, capsys):
    """How the trainer's benchmarks/default_experiment.py plugs in: `main(argv) -> dict`."""
    import types

    import benchmarks.run as run

    module = types.ModuleType("fake_experiment")
    module.main = lambda argv: {"region_top1": 0.5, "steps": 10, "argv": argv, "ok": True}
    monkeypatch.setitem(sys.modules, "fake_experiment", module)
    monkeypatch.setitem(run.EXTERNAL, "fake", ("fake_experiment", "a dict-returning main"))
    assert main(["fake", "--out", str(tmp_path), "--", "--max_steps", "3"]) == 0  # --out: the old spelling
    report = json.loads((tmp_path / "fake.json").read_text())
    assert {f["name"]: f["value"] for f in report["figures"]} == {"region_top1": 0.5, "steps": 10.0}
    assert report["details"]["argv"] == ["--max_steps", "3"]
