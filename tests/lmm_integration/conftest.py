"""Fixtures for lmm_integration: tiny real encoders, a tiny Llama with a word-level tokenizer, built
LLaVA folders and small conversation sets, all made inside the test session (no network)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import TINY_VISION, save_tiny_fgclip
from tests.official_records import llava_conversation

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 230), "yellow": (240, 215, 40)}
QUESTION = "What colour is the picture ?"
WORDS = [
    "Describe the image briefly .",
    QUESTION,
    "Is there a red square in the image ?",
    "Yes",
    "No",
    "It is",
    "[0.12, 0.30, 0.55, 0.91]",
    *COLOURS,
]


def save_fgclip(folder: Path, seed: int = 0, **vision) -> Path:
    """A random tiny FG-CLIP folder (4x4 patch grid unless `vision` overrides the tower)."""
    return save_tiny_fgclip(folder, seed, vision_config={**TINY_VISION, **vision})


@pytest.fixture(scope="session")
def fgclip_dir(tmp_path_factory) -> Path:
    return save_fgclip(tmp_path_factory.mktemp("fgclip"))


@pytest.fixture(scope="session")
def llm_dir(tmp_path_factory) -> Path:
    from benchmarks.llava_miniature.tiny_lm import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("llm"), WORDS, hidden_size=32, num_layers=1)


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory, fgclip_dir, llm_dir) -> Path:
    from lmm_integration.build import BuildOptions, build_llava

    return build_llava(fgclip_dir, llm_dir, tmp_path_factory.mktemp("llava") / "model", BuildOptions(system_prompt=""))


def write_colour_set(folder: Path, count: int = 8, extra: list[dict] | None = None) -> Path:
    """Images of one colour each (not square, so padding matters) and one question per image."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    records = []
    for index in range(count):
        colour = names[index % len(names)]
        Image.new("RGB", (40 + 4 * index, 28), COLOURS[colour]).save(folder / f"{index}.png")
        records.append(
            llava_conversation(str(index), [f"<image>\n{QUESTION}", f"It is {colour}"], image=f"{index}.png")
        )
    records += extra or []
    path = folder / "data.json"
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="session")
def colour_data(tmp_path_factory) -> Path:
    return write_colour_set(tmp_path_factory.mktemp("colours"))


FAST = ["--max-steps", "2", "--batch-size", "4", "--num-workers", "0", "--logging-steps", "1", "--warmup-ratio", "0"]


def stage_argv(stage: str, model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """The `lmm_integration.train` command line of one short stage run: the stage, its folders, `extra` options,
    then the FAST ones (two steps of 4, no workers, every step logged, no warm-up)."""
    return ["--stage", stage, "--model", str(model), "--data", str(data), "--output-dir", str(out), *extra, *FAST]


def free_port() -> int:
    """A free TCP port for a DeepSpeed launch (tests run beside other launches on the same machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
