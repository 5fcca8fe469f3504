"""eval.report: any results.json (encoder benchmarks and LMM runs) grouped, tabled and plotted."""

from __future__ import annotations

import json

import pytest

from eval import report
from eval.common.reporting import write_results
from fgclip.cli import run
from fgclip.errors import UserError


def fake_run(folder, benchmark, metrics, data="d.jsonl", model="runs/x/final"):
    return write_results(
        folder,
        benchmark,
        metrics,
        model=model,
        data=data,
        counts={"items": 1, "scored": 1},
        started=0.0,
        table="",
        extra={"details": {"per_class": {"cat": {"top1": 1.0}}}},
    )


def test_flatten_keeps_numbers_and_drops_metadata():
    result = {
        "benchmark": "pope",
        "f1": 0.5,
        "num_questions": 9,
        "complete": True,
        "seconds": 3.0,
        "random": {"f1": 0.4, "label": "x"},
        "details": {"a": 1},
        "counts": {"n": 2},
        "flag": False,
    }
    assert report.flatten_metrics(result) == {"f1": 0.5, "num_questions": 9, "random/f1": 0.4}


def test_report_groups_by_benchmark_and_data(tmp_path):
    fake_run(tmp_path / "clip" / "fgovd", "fgovd", {"top1": 0.2, "top1_hard": 0.1, "num_regions": 10})
    fake_run(tmp_path / "clip" / "retrieval", "retrieval", {"i2t_r1": 0.5, "t2i_r1": 0.4}, data="coco.json")
    fake_run(tmp_path / "fg" / "fgovd", "fgovd", {"top1": 0.6, "top1_hard": 0.5, "num_regions": 10, "extra": 0.3})
    fake_run(tmp_path / "fg" / "retrieval", "retrieval", {"i2t_r1": 0.7, "t2i_r1": 0.6}, data="coco.json")
    fake_run(tmp_path / "fg" / "flickr", "retrieval", {"i2t_r1": 0.9, "t2i_r1": 0.8}, data="flickr.json")
    pope = tmp_path / "llava" / "results.json"
    pope.parent.mkdir()
    pope.write_text(
        json.dumps(
            {
                "benchmark": "pope",
                "data": "coco_pope.jsonl",
                "f1": 0.85,
                "accuracy": 0.86,
                "num_questions": 9000,
                "adversarial": {"f1": 0.84},
            }
        )
    )
    out = tmp_path / "report"
    summary = report.main(
        [
            str(tmp_path / "clip"),
            str(tmp_path / "fg"),
            str(pope),
            "--names",
            "CLIP",
            "FG-CLIP",
            "LLaVA",
            "--out",
            str(out),
        ]
    )
    assert set(summary) == {
        "fgovd (d.jsonl)",
        "retrieval (coco.json)",
        "retrieval (flickr.json)",
        "pope (coco_pope.jsonl)",
    }
    fgovd = summary["fgovd (d.jsonl)"]
    assert fgovd["metrics"] == ["top1", "top1_hard", "num_regions"]  # "extra" is not shared
    assert fgovd["runs"]["FG-CLIP"]["top1"] == 0.6 and fgovd["runs"]["CLIP"]["top1"] == 0.2
    assert summary["pope (coco_pope.jsonl)"]["metrics"] == ["f1", "accuracy", "num_questions", "adversarial/f1"]
    text = (out / "report.md").read_text()
    assert "| CLIP | `x/final` | 0.2000 | 0.1000 | 10 |" in text
    assert "not in every run (left out): extra" in text
    assert (out / fgovd["plot"]).stat().st_size > 0
    assert json.loads((out / "report.json").read_text()) == summary


def test_report_errors(tmp_path, capsys):
    assert run(report.main, [str(tmp_path / "absent"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no results.json"):
        report.main([str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        report.main([str(tmp_path / "bad"), "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="--names has 2 labels for 1 runs"):
        report.main([str(tmp_path / "bad"), "--names", "a", "b", "--out", str(tmp_path / "o")])
