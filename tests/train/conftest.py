"""Shared pieces of the training tests: a small synthetic set and a tiny model folder to start from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fgclip.data.synthetic import generate
from fgclip.train.config import DataConfig, ModelInit, OptimConfig, TrainConfig
from tests.conftest import save_tiny_fgclip


@pytest.fixture(scope="session")
def synthetic_set(tmp_path_factory) -> Path:
    """48 synthetic scenes (38 train / 10 held out) at 32 px; returns the set's folder."""
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, 48, seed=7, image_size=32, heldout_fraction=0.2, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_init(tmp_path_factory) -> Path:
    """A tiny FG-CLIP folder (32-px images, 4x4 grid) to pass as --init."""
    return save_tiny_fgclip(tmp_path_factory.mktemp("tiny_init"))


@pytest.fixture(scope="session")
def wide_init(tmp_path_factory) -> Path:
    """`tiny_init` with 128-wide embeddings: wide enough that, with 16 images a batch, the loss's gather
    backward runs on several threads (what made runs differ before deterministic kernels)."""
    return save_tiny_fgclip(tmp_path_factory.mktemp("wide_init"), projection_dim=128)


def run_argv(data: Path, init: Path | str, output_dir: Path, *extra: str) -> list[str]:
    """The pretraining command line of a short test run: --data, --init, --output_dir, batch 4, `extra`, no
    progress bar."""
    return [
        *("--data", str(data), "--init", str(init), "--output_dir", str(output_dir), "--batch_size", "4"),
        *extra,
        "--no_progress",
    ]


def final_weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(Path(run_dir) / "final" / "model.safetensors"))


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[name].double() - b[name].double()).abs().max().item() for name in a)


def small_config(data: Path, init: Path, output_dir: Path, stage: int = 1, **overrides) -> TrainConfig:
    """A few-step run of the tiny model on `data` in one process, no progress bar."""
    values = dict(
        stage=stage,
        model=ModelInit(init=str(init)),
        data=DataConfig(paths=[str(data)], num_workers=0),
        optim=OptimConfig(lr=1e-3, weight_decay=0.01, warmup_steps=2),
        output_dir=str(output_dir),
        max_steps=6,
        batch_size=4,
        log_every=1,
        seed=11,
        progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def read_metrics(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(output_dir) / "metrics.jsonl").read_text().splitlines()]


def records_file(synthetic_set: Path, path: Path, count: int, bad: int = 0, change=None) -> Path:
    """`count` distinct records made from the synthetic train split (its images, the caption numbered), the
    first `bad` of every evenly spread group pointing at a missing image; `change(record, i)` edits each."""
    base = [json.loads(line) for line in (synthetic_set / "train.jsonl").read_text().splitlines()]
    bad_at = {round(i * count / bad) for i in range(bad)} if bad else set()
    lines = []
    for i in range(count):
        record = json.loads(json.dumps(base[i % len(base)]))
        record["image"] = str(synthetic_set / record["image"])
        record["short_caption"] += f" number {i}"
        if i in bad_at:
            record["image"] = str(synthetic_set / "images" / f"missing_{i}.png")
        if change is not None:
            change(record, i)
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path
