"""Result files turn back into the markdown tables RESULTS.md holds."""

from __future__ import annotations

import torch

from benchmarks.harness import Figure, Report, describe_device
from benchmarks.tables import main
from fgclip.cli import run


def test_tables_print_each_result_file(tmp_path, capsys):
    report = Report(
        "demo",
        [Figure("ratio", 1.01, "x", ("<=", 1.05))],
        {},
        describe_device(torch.device("cpu")),
        {},
        command="python -m benchmarks.run demo --smoke",
    )
    report.write(tmp_path)
    assert main([str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "### demo" in text and "`python -m benchmarks.run demo --smoke`" in text
    assert "| ratio | 1.010x | <= 1.05x met |" in text


def test_bad_inputs_exit_2(tmp_path, capsys):
    assert run(main, [str(tmp_path)]) == 2
    (tmp_path / "x.json").write_text("{}")
    assert run(main, [str(tmp_path / "x.json")]) == 2
    assert "not a benchmark result file" in capsys.readouterr().err
