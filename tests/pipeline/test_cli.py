"""The command line: the contract command, raw images through every step, usage errors."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fgclip.data.schema import BadRecord, Record, iter_record_file
from fgclip.pipeline.cli import build_parser, config_from, main
from fgclip.pipeline.config import PipelineConfig
from tests.conftest import command_error
from tests.pipeline.conftest import make_images, run_cli, write_jsonl

REPO = Path(__file__).resolve().parents[2]
README = REPO / "fgclip" / "pipeline" / "README.md"


def read_output(path: Path) -> list[Record]:
    items = list(iter_record_file(path))  # captions required: what the trainer reads
    assert not [i for i in items if isinstance(i, BadRecord)], [i for i in items if isinstance(i, BadRecord)]
    return items


def test_contract_negatives_on_a_record_file(record_file, tmp_path, capsys):
    """The contract's spelling (`--out`, the old name of --output_dir), run as a user runs it."""
    out = tmp_path / "out"
    assert run_cli(["--input", str(record_file), "--out", str(out), "--steps", "negatives", "--shard_size", "5"]) == 0
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
    code = run_cli(
        [
            "--images",
            str(tmp_path / "photos"),
            "--output_dir",
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
    assert "--output_dir DIR" in text and "--out " not in text and "--no_cross_expression_nms" in text
    assert "(default: 256)" in text  # defaults come from the config dataclasses


def test_defaults_are_the_config_dataclasses():
    args = build_parser().parse_args(["--input", "in.jsonl", "--output_dir", "out"])
    assert config_from(args) == PipelineConfig()


# Every option the parser had before the command-line contract, with a value; each sets a non-default.
OLD_SPELLINGS = [
    "--steps",
    "negatives",
    "filter",
    "--webdataset",
    "--webdataset_maxcount",
    "7",
    "--caption_model",
    "m",
    "--caption_prompt",
    "p",
    "--short_prompt",
    "s",
    "--caption_template",
    "t",
    "--caption_batch_size",
    "3",
    "--caption_max_new_tokens",
    "9",
    "--short_max_new_tokens",
    "5",
    "--overwrite_captions",
    "--spacy_model",
    "sp",
    "--max_expressions",
    "4",
    "--max_long_expression_words",
    "6",
    "--grounding_model",
    "g",
    "--grounding_backend",
    "transformers",
    "--score_threshold",
    "0.3",
    "--nms_iou",
    "0.6",
    "--max_boxes_per_expression",
    "2",
    "--no_cross_expression_nms",
    "--grounding_batch_size",
    "2",
    "--overwrite_regions",
    "--num_negatives",
    "5",
    "--seed",
    "3",
    "--negatives_model",
    "lm",
    "--negatives_prompt",
    "np {expression}",
    "--negatives_batch_size",
    "4",
    "--negatives_max_new_tokens",
    "50",
    "--no_insertions",
    "--overwrite_negatives",
    "--min_box_area",
    "0.01",
    "--min_box_side",
    "0.03",
    "--duplicate_iou",
    "0.8",
    "--max_long_tokens",
    "100",
    "--max_short_tokens",
    "50",
    "--max_regions",
    "3",
    "--drop_records_without_regions",
    "--shard_size",
    "16",
    "--engine",
    "ray",
    "--workers",
    "2",
    "--spread_model_over_gpus",
    "--device",
    "cpu",
    "--dtype",
    "float16",
    "--trust_remote_code",
    "--ray_address",
    "auto",
    "--fresh",
    "--redo",
    "grounding",
    "--max_bad_fraction",
    "0.1",
]


def test_old_spellings_still_parse_to_the_same_config():
    old = build_parser().parse_args(["--input", "in.jsonl", "--out", "out", *OLD_SPELLINGS])
    assert str(old.output_dir) == "out"
    config = config_from(old)
    assert config.negatives.allow_insertions is False and config.grounding.cross_expression_nms is False
    assert (
        config.models.dtype == "float16"
        and config.run.redo == ["grounding"]
        and config.steps == ("negatives", "filter")
    )
    defaults = PipelineConfig()
    for section in ("captions", "expressions", "grounding", "negatives", "filter", "models", "run"):
        given, default = vars(getattr(config, section)), vars(getattr(defaults, section))
        unchanged = [name for name in given if given[name] == default[name] and name != "batch_size"]
        assert section == "expressions" or not unchanged, (section, unchanged)  # every option reached its field
    kebab = [a.replace("_", "-") if a.startswith("--") else a for a in OLD_SPELLINGS]
    assert config_from(build_parser().parse_args(["--input", "in.jsonl", "--output-dir", "out", *kebab])) == config


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "missing.jsonl"], "no such file"),
        (["--images", "missing_folder"], "no such folder"),
        (["--images", "{images}"], "--caption_model"),
        (["--images", "{images}", "--steps", "grounding"], "--grounding_model"),
        (["--input", "{records}", "--shard_size", "0"], "argument --shard_size: must be a positive integer"),
        (["--input", "{records}", "--score_threshold", "1.5"], "argument --score_threshold: must be in [0, 1]"),
        (["--input", "{records}", "--nms_iou", "0"], "argument --nms_iou: must be in (0, 1]"),
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
    assert run_cli(args + ["--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    usage_error = "python -m fgclip.pipeline: error: "  # from the parser; the others from the runner
    assert err.startswith(("error: ", usage_error)) and message in err and len(err.splitlines()) == 1


def test_a_line_of_invalid_utf8_is_counted_not_a_traceback(record_file, tmp_path):
    with record_file.open("ab") as handle:
        handle.write(b'{"image": "images/img_000.png", "long_caption": "a caf\xe9"}\n')  # Latin-1 bytes
    out = tmp_path / "out"
    assert run_cli(["--input", str(record_file), "--output_dir", str(out), "--steps", "negatives"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["images"] == 12 and stats["input"] == {"items": 13, "bad_record": 1}
    assert stats["drop_reasons"] == {"input/bad_record": 1}


def test_an_image_as_input_exits_2_with_one_line(tmp_path, capsys):
    (image,) = make_images(tmp_path, 1)
    assert run_cli(["--input", str(image), "--output_dir", str(tmp_path / "out"), "--steps", "negatives"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --input {image} is an image") and len(err.splitlines()) == 1


def test_output_folder_is_checked_before_any_work(tmp_path, record_file, capsys):
    """issue 15: --output_dir naming a file gave a traceback after the work; a folder holding other files was
    used."""
    taken = tmp_path / "notes.txt"
    taken.write_text("mine")
    assert run_cli(["--input", str(record_file), "--output_dir", str(taken), "--steps", "negatives"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --output_dir {taken} is a file; give a folder (it is created when missing)"
    assert taken.read_text() == "mine"
    # a folder with someone else's files: refused, then written with --overwrite, then re-run as our own
    assert run_cli(["--input", str(record_file), "--output_dir", str(tmp_path), "--steps", "negatives"]) == 2
    assert "already holds files this command did not write" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("keep me")
    assert run_cli(["--input", str(record_file), "--output_dir", str(out), "--steps", "negatives", "--overwrite"]) == 0
    assert (out / "README.md").read_text() == "keep me" and (out / "data.jsonl").is_file()
    fresh = tmp_path / "fresh"
    assert run_cli(["--input", str(record_file), "--output_dir", str(fresh), "--steps", "negatives"]) == 0
    assert run_cli(["--input", str(record_file), "--output_dir", str(fresh), "--steps", "negatives"]) == 0  # own run
    images = record_file.parent / "images"
    assert run_cli(["--images", str(images), "--output_dir", str(images), "--steps", "negatives"]) == 2
    assert "is the input" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--images", "a", "--input", "b", "--output_dir", str(tmp_path)])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--input", "b", "--output_dir", str(tmp_path), "--steps", "paint"])
    assert exit_info.value.code == 2


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    error = command_error("fgclip.pipeline", "--input", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "out"))
    assert error.startswith("error: --input")


def test_help_loads_no_torch():
    """`--help` answers before torch, transformers or matplotlib load (the package imports them lazily)."""
    code = (
        "import sys, runpy; sys.argv = ['fgclip.pipeline', '--help']\n"
        "try:\n    runpy.run_module('fgclip.pipeline', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, check=True)
    assert "--output_dir DIR" in result.stdout and result.stdout.splitlines()[-1] == "[]"


def _readme_command_lines() -> list[str]:
    """The README's `python -m fgclip.pipeline ...` commands and option lines (`--caption_model ...`)."""
    text = README.read_text().replace("\\\n", " ")
    lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, re.S) for line in block.splitlines()]
    return [line for line in lines if line.startswith(("python -m fgclip.pipeline", "--"))]


def test_readme_commands_parse_in_the_one_spelling():
    parser = build_parser()
    spellings = {action.option_strings[0] for action in parser._actions if action.option_strings}
    spellings |= {getattr(action, "negation", None) for action in parser._actions} - {None}
    lines = _readme_command_lines()
    assert len(lines) >= 10
    for line in lines:
        words = shlex.split(line, comments=True)
        argv = words[3:] if words[0] == "python" else ["--input", "in.jsonl", "--output_dir", "out", *words]
        config_from(parser.parse_args(argv))  # a usage error exits
        assert {word for word in argv if word.startswith("--")} <= spellings, line
    # Options named in the prose: the one spelling too (placeholders aside).
    named = set(re.findall(r"`(--[a-z][a-z_]*)", README.read_text()))
    assert named - spellings == {"--overwrite_", "--snake_case", "--kebab", "--out", "--no_", "--help"}
