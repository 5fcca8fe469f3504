"""The README's Fashion-FINE commands, as written, on tiny copies of the downloads: a FashionGen HDF5 pair in the
release's layout (tests/fashion/test_data.py writes its columns), FashionIQ's captions / image_splits / images
folders (the synthetic set is made in that layout), a tiny FG-CLIP folder for the release, and a few steps."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from eval import fashion as eval_fashion
from fgclip.cli import run
from fgclip.fashion import cli as finetune_cli
from fgclip.fashion import export
from tests.fashion.test_data import write_fashiongen_h5

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Fashion-FINE: global + local finetuning"
RUNNERS = {
    "scripts/finetune_fashion.py": (
        finetune_cli.main,
        ["--max_steps", "2", "--batch_size", "4", "--num_workers", "0", "--eval_every", "1", "--no_progress"],
    ),
    "fgclip.fashion.export": (export.main, ["--no_progress"]),
    "eval.fashion": (eval_fashion.main, ["--device", "cpu", "--no_cache", "--num_workers", "0"]),
}


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    body = text[text.index(SECTION) + len(SECTION) :]
    body = body[: re.search(r"\n## ", body).start()]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.split("#")[0])
            if words and "benchmarks." not in line:
                commands.append(words)
    return commands


def fashiongen_rows(products: int) -> list[tuple]:
    """Rows as released: two poses per product, consecutive; titles that differ in one attribute."""
    colours = ("black", "white", "red", "navy", "olive", "grey")
    return [
        (
            1000 + p,
            f"{kind} in {colours[p % 6]}. Spread collar.<br><br>Tonal stitching.",
            category,
            kind.upper(),
            f"id_gridfs_{pose}",
        )
        for p in range(products)
        for pose in (1, 2)
        for kind, category in [(("Shirt", "SHIRTS"), ("Jacket", "JACKETS & COATS"))[p % 2]]
    ]


@pytest.mark.slow
def test_readme_fashion_commands_run_on_the_downloaded_layouts(tmp_path, monkeypatch, products, tiny_towers_dir):
    monkeypatch.chdir(tmp_path)
    write_fashiongen_h5(tmp_path / "fashiongen" / "fashiongen_256_256_train.h5", fashiongen_rows(12))
    write_fashiongen_h5(tmp_path / "fashiongen" / "fashiongen_256_256_validation.h5", fashiongen_rows(6))
    (tmp_path / "fashioniq").symlink_to(products, target_is_directory=True)  # captions/, image_splits/, images/
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "fg-clip-base").symlink_to(tiny_towers_dir, target_is_directory=True)
    commands = readme_commands()
    assert [words[1] if words[0] == "python" and words[1] != "-m" else words[2] for words in commands] == [
        "scripts/finetune_fashion.py",
        "scripts/finetune_fashion.py",
        "fgclip.fashion.export",
        "eval.fashion",
        "eval.fashion",
    ]
    for words in commands:
        name = words[1] if words[1] != "-m" else words[2]
        main, tiny = RUNNERS[name]
        argv = words[words.index(name) + 1 :]
        assert run(main, argv + tiny) == 0, words
    assert (tmp_path / "runs" / "fashion_retrieval" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "fashion_tgir" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "runs" / "eval" / "fashiongen" / "results.json").is_file()
    assert (tmp_path / "runs" / "eval" / "fashioniq" / "results.json").is_file()
