"""The embedded default, shrunk (few images and steps): it runs both stages and writes the stage table.

Whether it reaches its targets is a benchmark (benchmarks/default_experiment.py), not a test.
"""

import json

import pytest

from fgclip import FGCLIPModel
from fgclip.train.cli import main


@pytest.mark.slow
def test_default_experiment_runs_both_stages_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "default"
    assert (
        main(
            [
                "--output_dir",
                str(out),
                "--synthetic_images",
                "40",
                "--max_steps",
                "3",
                "--log_every",
                "1",
                "--no_progress",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| stage 1 (global) |" in printed and "| stage 2 (+ region, hard neg.) |" in printed
    result = json.loads((out / "default_experiment.json").read_text())
    assert [row["model"] for row in result["rows"]] == [
        "untrained",
        "stage 1 (global)",
        "stage 2 (+ region, hard neg.)",
    ]
    assert result["chance"] == pytest.approx(1 / 11)
    assert all(0 <= row["region_top1"] <= 1 for row in result["rows"])
    assert (out / "default_experiment.md").read_text().count("|") > 20
    for stage in ("stage1", "stage2"):
        assert len((out / stage / "metrics.jsonl").read_text().splitlines()) == 3
        FGCLIPModel.from_pretrained(out / stage / "final")
    stage2_config = json.loads((out / "stage2" / "train_config.json").read_text())
    assert stage2_config["model"]["init"] == str(out / "stage1" / "final")
    assert (out / "data" / "heldout.jsonl").is_file()
