"""Every evaluation command follows the command-line contract: --help explains every option and loads no torch,
transformers or matplotlib; the one spelling is --snake_case (--output_dir); the old spellings still work."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from eval import (
    attributes,
    box_cls,
    clip_benchmark,
    dense_vis,
    fashion,
    fgovd,
    localization,
    pope,
    report,
    retrieval,
    zeroshot,
)
from eval.lmm import refer

COMMANDS = [
    fgovd,
    box_cls,
    retrieval,
    zeroshot,
    fashion,
    dense_vis,
    report,
    pope,
    attributes,
    localization,
    refer,
    clip_benchmark,
]


@pytest.mark.parametrize("module", COMMANDS, ids=lambda module: module.__name__)
def test_every_option_has_help(module):
    parser = module.build_parser()
    undocumented = [
        action.dest
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction) and not (action.help or "").strip()
    ]
    assert undocumented == []
    text = parser.format_help()
    assert (module.__doc__.split("\n")[0] in text) or (parser.description in text)
    options = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", text.split("\n\n")[0]))  # the usage block
    options |= {line.split()[0] for line in text.splitlines() if line.startswith("  --")}
    assert not [name for name in options if "-" in name[2:] and not name.startswith("--no-")], text  # one spelling


def test_help_loads_no_torch_transformers_or_matplotlib():
    code = (
        "import sys\n"
        f"from eval import {', '.join(m.__name__.split('.')[-1] for m in COMMANDS if m is not refer)}\n"
        "from eval.lmm import refer\n"
        f"for module in ({', '.join(m.__name__.split('.')[-1] for m in COMMANDS)},):\n"
        "    module.build_parser().format_help()\n"
        "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'open_clip', 'clip_benchmark') "
        "if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


# (module, argv in the old spellings, the same argv in the one spelling)
OLD_AND_NEW = [
    (
        fgovd,
        "--data d --model m --out o --batch-size 2 --num-workers 0 --cache-dir c --no-cache",
        "--data d --model m --output_dir o --batch_size 2 --num_workers 0 --cache_dir c --no_cache",
    ),
    (
        box_cls,
        "--data d --model m --out o --min-box-size 4 --include-crowd --max-images 3 --per-class",
        "--data d --model m --output_dir o --min_box_size 4 --include_crowd --max_images 3 --per_class",
    ),
    (retrieval, "--data d --model m --out o --caption-field c", "--data d --model m --output_dir o --caption_field c"),
    (zeroshot, "--data d --model m --out o --max-per-class 2", "--data d --model m --output_dir o --max_per_class 2"),
    (
        fashion,
        "--task fashiongen --data d --model m --out o --num-queries 5 --num-negatives 4 --keep-reference "
        "--fusion-image-ratio 0.1 --fusion-text-ratio 0.2 --fusion-temperature 0.3",
        "--task fashiongen --data d --model m --output_dir o --num_queries 5 --num_negatives 4 --keep_reference "
        "--image_ratio 0.1 --text_ratio 0.2 --temperature 0.3",
    ),
    (
        dense_vis,
        "--model m --image i --text a --text b --out o",
        "--model m --image i --text a --text b --output_dir o",
    ),
    (report, "r1 r2 --out o", "r1 r2 --output_dir o"),
    (
        pope,
        "--build-questions --instances i --num-images 3 --per-image 2 --build-seed 1 --out o",
        "--build_questions --instances i --num_images 3 --per_image 2 --build_seed 1 --output_dir o",
    ),
    (
        pope,
        "--questions q --model m --images i --out o --batch-size 2 --max-new-tokens 3 --no-pad-to-square "
        "--prompt-format llava15",
        "--questions q --model m --images i --output_dir o --batch_size 2 --max_new_tokens 3 "
        "--no_pad_to_square --prompt_format llava15",
    ),
    (
        attributes,
        "--data d --answers a --out o --question-seed 2",
        "--data d --answers a --output_dir o --question_seed 2",
    ),
    (
        localization,
        "--data d --answers a --out o --no-pad-to-square",
        "--data d --answers a --output_dir o --no_pad_to_square",
    ),
    (refer, "--refs r --instances i --split val --out o", "--refs r --instances i --split val --output_file o"),
]


@pytest.mark.parametrize("module, old, new", OLD_AND_NEW, ids=lambda value: getattr(value, "__name__", None))
def test_old_spellings_are_hidden_aliases(module, old, new):
    parser = module.build_parser()
    assert vars(parser.parse_args(old.split())) == vars(parser.parse_args(new.split()))


def test_per_command_defaults_come_from_one_place():
    assert pope.build_parser().parse_args(["--questions", "q", "--output_dir", "o"]).max_new_tokens == 16
    assert localization.build_parser().parse_args(["--data", "d", "--output_dir", "o"]).max_new_tokens == 48
    assert "(default: 48)" in localization.build_parser().format_help()


def test_dense_vis_help_explains_inverted_maps():
    text = dense_vis.build_parser().format_help()
    assert all(words in text for words in ("inverted", "value path", "--normalize raw", "softmax over texts"))
