"""The command line: the contract command, raw images through every step, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fgclip.data.schema import BadRecord, Record, iter_record_file
from fgclip.pipeline.cli import build_parser, main

from tests.pipeline.conftest import make_images, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def read_output(path: Path) -> list[Record]:
    items = list(iter_record_file(path))  # captions required: what the trainer reads
    assert not [i for i in items if isinstance(i, BadRecord)], [i for i in items if isinstance(i, BadRecord)]
    return items


def test_contract_negatives_on_a_record_file(record_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--input", str(record_file), "--out", str(out), "--steps", "negatives", "--shard_size", "5"]) == 0
    records = read_output(out / "data.jsonl")
    assert len(records) == 12
    for record in records:
        assert Path(record.image).is_absolute() and Path(record.image).is_file()
        assert [len(r.hard_negatives) for r in record.regions] == [10, 10, 10]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == 12 and stats["negatives_per_region"] == {"10": 36}
    assert (out / "stats.png").is_file()
    assert "12 images, 36 regions, 360 hard negatives" in capsys.readouterr().out


def test_images_folder_through_every_step(tmp_path, tiny_llava_dir, tiny_owlv2_dir):
    make_images(tmp_path / "photos" / "nested", 3)
    make_images(tmp_path / "photos", 3, size=(40, 40))
    (tmp_path / "photos" / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "out"
    code = main(
        [
            "--images",
            str(tmp_path / "photos"),
            "--out",
            str(out),
            "--shard_size",
            "4",
            "--caption_model",
            str(tiny_llava_dir),
            "--caption_max_new_tokens",
            "24",
            "--grounding_model",
            str(tiny_owlv2_dir),
            "--score_threshold",
            "0",
            "--min_box_area",
            "0",
            "--min_box_side",
            "0",
            "--webdataset",
        ]
    )
    assert code == 0
    records = read_output(out / "data.jsonl")
    assert len(records) == 6
    stats = json.loads((out / "stats.json").read_text())
    steps = stats["steps"]
    assert list(steps)[:5] == ["captions", "expressions", "grounding", "negatives", "filter"]
    assert steps["captions"]["long_captions_generated"] == 6
    # Whatever the random models wrote, every expression was either grounded or counted as not.
    assert steps["grounding"]["expressions_grounded"] + steps["grounding"]["expressions_not_grounded"] == steps[
        "expressions"
    ].get("expressions", 0)
    regions = [region for record in records for region in record.regions]
    assert stats["regions"] == len(regions)
    for record in records:
        assert record.long_caption and record.short_caption and "expressions" not in record.extra
        for region in record.regions:
            assert 0 <= region.bbox[0] < region.bbox[2] <= 1 and 0 <= region.bbox[1] < region.bbox[3] <= 1
            assert region.hard_negatives  # every surviving region got negatives
    webdataset = json.loads((out / "webdataset" / "shards.json").read_text())
    assert webdataset["written"] == 6


def test_every_option_is_explained():
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
    text = parser.format_help()
    assert "--images DIR_OR_LIST" in text and "--engine {local,ray}" in text


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "missing.jsonl"], "no such file"),
        (["--images", "missing_folder"], "no such folder"),
        (["--images", "{images}"], "--caption_model"),
        (["--images", "{images}", "--steps", "grounding"], "--grounding_model"),
        (["--input", "{records}", "--shard_size", "0"], "--shard_size must be at least 1"),
        (["--input", "{records}", "--score_threshold", "1.5"], "--score_threshold"),
        (["--input", "{all_bad}"], "unusable"),
        pytest.param(
            ["--input", "{records}", "--device", "cuda"],
            "sees none",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present"),
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, tmp_path, record_file, capsys):
    all_bad = write_jsonl(tmp_path / "bad.jsonl", ["{broken", json.dumps({"image": "nowhere.png"})])
    args = [a.format(records=record_file, all_bad=all_bad, images=record_file.parent / "images") for a in args]
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_a_line_of_invalid_utf8_is_counted_not_a_traceback(record_file, tmp_path):
    with record_file.open("ab") as handle:
        handle.write(b'{"image": "images/img_000.png", "long_caption": "a caf\xe9"}\n')  # Latin-1 bytes
    out = tmp_path / "out"
    assert main(["--input", str(record_file), "--out", str(out), "--steps", "negatives"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == 12 and stats["input"] == {"items": 13, "bad_record": 1}
    assert stats["drop_reasons"] == {"input/bad_record": 1}


def test_an_image_as_input_exits_2_with_one_line(tmp_path, capsys):
    (image,) = make_images(tmp_path, 1)
    assert main(["--input", str(image), "--out", str(tmp_path / "out"), "--steps", "negatives"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --input {image} is an image") and len(err.splitlines()) == 1


def test_output_folder_is_checked_before_any_work(tmp_path, record_file, capsys):
    """issue 15: --out naming a file gave a traceback after the work; a folder holding other files was used."""
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert main(["--input", str(record_file), "--out", str(taken), "--steps", "negatives"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --out {taken} is a file; give a folder (it is created when missing)"
    assert taken.read_text() == "mine"
    # a folder with someone else's files: refused, then written with --overwrite, then re-run as our own
    assert main(["--input", str(record_file), "--out", str(tmp_path), "--steps", "negatives"]) == 2
    assert "already holds files this command did not write" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("keep me")
    assert main(["--input", str(record_file), "--out", str(out), "--steps", "negatives", "--overwrite"]) == 0
    assert (out / "README.md").read_text() == "keep me" and (out / "data.jsonl").is_file()
    fresh = tmp_path / "fresh"
    assert main(["--input", str(record_file), "--out", str(fresh), "--steps", "negatives"]) == 0
    assert main(["--input", str(record_file), "--out", str(fresh), "--steps", "negatives"]) == 0  # its own run
    images = record_file.parent / "images"
    assert main(["--images", str(images), "--out", str(images), "--steps", "negatives"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--images", "a", "--input", "b", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", "b", "--out", str(tmp_path), "--steps", "paint"])
    assert exit_info.value.code == 2


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fgclip.pipeline",
            "--input",
            str(tmp_path / "none.jsonl"),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error: --input" in result.stderr
