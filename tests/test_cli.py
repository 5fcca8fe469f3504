"""The command-line contract: parsers derived from config dataclasses, one spelling, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from fgclip.cli import CommandParser, option, options_from, positive_int, run
from fgclip.errors import UserError


@dataclass
class _Options:
    source: Path = option("folder to read", positional=True)
    data: list[str] = option("record files")
    batch_size: int = option("images per step", 64, type=positive_int, aliases=["bs"])
    lr: float | None = option("peak learning rate [recipe]", None)
    precision: Literal["fp32", "bf16"] = option("autocast precision", "fp32")
    strict: bool = option("exit 2 when anything is skipped", False)
    bf16: bool | None = option("bf16 training [on with a bf16 GPU]", None)
    tags: list[str] = option("free labels", default_factory=list)


def _parse(argv):
    parser = CommandParser(prog="demo")
    parser.add_options(_Options)
    return options_from(parser.parse_args(argv), _Options)


def test_defaults_types_and_lists_come_from_the_dataclass():
    options = _parse(["models/m", "--data", "a.jsonl", "b.jsonl"])
    assert options == _Options(
        source=Path("models/m"),
        data=["a.jsonl", "b.jsonl"],
        batch_size=64,
        lr=None,
        precision="fp32",
        strict=False,
        bf16=None,
        tags=[],
    )


def test_one_spelling_with_hidden_aliases():
    options = _parse(["m", "--data", "a", "--batch-size", "8", "--lr", "1e-3", "--strict", "--no-bf16"])
    assert (options.batch_size, options.lr, options.strict, options.bf16) == (8, 1e-3, True, False)
    assert _parse(["m", "--data", "a", "--bs", "4"]).batch_size == 4
    parser = CommandParser(prog="demo")
    parser.add_options(_Options)
    text = parser.format_help()
    assert "--batch_size" in text and "--batch-size" not in text and "--bs" not in text
    assert "(default: 64)" in text and "(default: fp32)" in text


@dataclass
class _StepOptions:
    model: str | None = option("captioning model", None, name="caption_model")
    cross_nms: bool = option("NMS across expressions", True, aliases=["across"])


def test_an_option_named_apart_from_its_field_and_a_flag_turned_off_with_no():
    parser = CommandParser(prog="demo")
    parser.add_options(_StepOptions)
    assert options_from(parser.parse_args([]), _StepOptions) == _StepOptions(model=None, cross_nms=True)
    for off in ("--no_cross_nms", "--no-cross-nms", "--no_across"):
        options = options_from(parser.parse_args(["--caption_model", "m", off]), _StepOptions)
        assert options == _StepOptions(model="m", cross_nms=False), off
    assert options_from(parser.parse_args(["--no_cross_nms", "--across"]), _StepOptions).cross_nms is True
    text = parser.format_help()
    assert "--caption_model CAPTION_MODEL" in text and "--cross_nms, --no_cross_nms" in text
    assert "--no-cross" not in text and "--across" not in text and "--model" not in text


def test_option_dataclasses_given_one_title_share_one_help_group():
    parser = CommandParser(prog="demo", options=[_Options, (_StepOptions, "training"), (_Extra, "training")])
    groups = {group.title: [action.dest for action in group._group_actions] for group in parser._action_groups}
    assert groups["training"] == ["caption_model", "cross_nms", "seed"]  # in the order given, one group
    assert parser.format_help().count("training:") == 1
    assert options_from(parser.parse_args(["x", "--data", "a", "--seed", "3"]), _Extra).seed == 3


@dataclass
class _Extra:
    seed: int = option("random seed", 0)


def test_an_appending_list_takes_one_value_per_occurrence():
    @dataclass
    class Texts:
        text: list[str] = option("a text; repeat for several", default_factory=list, append=True)

    parser = CommandParser(prog="demo")
    parser.add_options(Texts)
    assert options_from(parser.parse_args(["--text", "a red car", "--text", "a tree"]), Texts).text == [
        "a red car",
        "a tree",
    ]
    assert options_from(parser.parse_args([]), Texts).text == [] and Texts().text == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["m"], "the following arguments are required: --data"),
        (["m", "--data", "a", "--batch_size", "0"], "argument --batch_size: must be a positive integer"),
        (["m", "--data", "a", "--precision", "fp16"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        _parse(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_runner_turns_user_errors_into_one_line(capsys):
    def main(argv):
        raise UserError("the folder m holds no model\n(second line)")

    assert run(main, []) == 2
    assert capsys.readouterr().err == "error: the folder m holds no model (second line)\n"
    assert run(lambda argv: None, []) == 0
    assert run(lambda argv: 3, []) == 3


@pytest.mark.parametrize("rank, printed", [("0", True), ("1", False)])
def test_an_error_every_rank_raises_is_printed_by_rank_0_only(rank, printed, monkeypatch, capsys):
    def main(argv):
        raise UserError("--output_dir o is in use by another run", every_rank=True)

    monkeypatch.setenv("RANK", rank)
    assert run(main, []) == 2  # every rank exits 2; the job's log holds the line once
    assert capsys.readouterr().err == ("error: --output_dir o is in use by another run\n" if printed else "")
    assert run(lambda argv: (_ for _ in ()).throw(UserError("a rank's own problem")), []) == 2
    assert capsys.readouterr().err == "error: a rank's own problem\n"  # one rank's own error: always printed


def test_the_module_imports_no_torch():
    code = "import sys, fgclip.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
