"""README "From downloads to results", CLIP and FG-CLIP parts: every command shown runs, verbatim, on tiny
faithful copies of the downloaded folders. `hf download REPO --local-dir DIR` makes the copy in DIR; the
commands run through their own `main` with the README's arguments (training runs get `--max_steps 2
--batch_size 2` appended, evaluations `--device cpu --no-cache`); the data files they name are written
first, in the formats the README gives."""

import json
import shlex
from pathlib import Path

import pytest
from PIL import Image

from eval import fgovd, retrieval
from fgclip.cli import run
from fgclip.convert import main as convert_main
from fgclip.data.synthetic import generate
from fgclip.train.cli import main as train_main
from tests.hub_copies.clip import HUB_FOLDERS, make_hub_copy

README = Path(__file__).resolve().parents[2] / "README.md"
SUBSECTIONS = ("### CLIP checkpoints (OpenAI, LAION)", "### Official FG-CLIP releases")
RUNNERS = {
    ("-m", "fgclip.convert"): lambda argv: run(convert_main, argv),
    ("-m", "eval.fgovd"): lambda argv: run(fgovd.main, argv + ["--device", "cpu", "--no-cache"]),
    ("-m", "eval.retrieval"): lambda argv: run(retrieval.main, argv + ["--device", "cpu", "--no-cache"]),
    ("scripts/pretrain_fgclip.py",): lambda argv: train_main(
        argv + ["--max_steps", "2", "--batch_size", "2", "--num_workers", "0", "--no_progress"]
    ),
}


def section_commands(heading: str) -> list[list[str]]:
    """The command lines of the ```bash blocks of one sub-section of "From downloads to results"."""
    text = README.read_text()
    section = text[text.index("## From downloads to results") :]
    section = section[: section.index("\n## ", 3)]
    part = section[section.index(heading) + len(heading) :]
    part = part[: part.index("\n### ")] if "\n### " in part else part
    commands = []
    for block in part.split("```bash\n")[1:]:
        commands += [shlex.split(line) for line in block.split("```")[0].splitlines() if line.strip()]
    return commands


def _runner(command: list[str]):
    assert command[0] == "python", command
    for prefix, runner in RUNNERS.items():
        if tuple(command[1 : 1 + len(prefix)]) == prefix:
            return runner, command[1 + len(prefix) :]
    raise AssertionError(f"no runner for {command}")


@pytest.mark.parametrize("heading", SUBSECTIONS)
def test_every_command_is_a_download_or_a_known_entry_point(heading):
    commands = section_commands(heading)
    downloads = [command for command in commands if command[:2] == ["hf", "download"]]
    assert downloads and all(command[2] in HUB_FOLDERS and command[3] == "--local-dir" for command in downloads)
    for command in commands:
        if command[:2] != ["hf", "download"]:
            _runner(command)
    # Each downloaded folder is used by a command.
    for download in downloads:
        assert any(download[4] in command for command in commands if command[0] == "python"), download


def test_the_sub_sections_cover_every_real_asset():
    downloaded = {
        command[2]
        for heading in SUBSECTIONS
        for command in section_commands(heading)
        if command[:2] == ["hf", "download"]
    }
    assert downloaded == set(HUB_FOLDERS)


def _write_data(root: Path) -> None:
    """train.jsonl / val.jsonl (this project's records, images/), fgovd/1_attributes.jsonl (public FG-OVD
    lines) with its images under coco/."""
    generate(root / "scenes", 8, seed=3, image_size=32, heldout_fraction=0.25, progress=False)
    (root / "images").symlink_to(root / "scenes" / "images")
    (root / "train.jsonl").write_text((root / "scenes" / "train.jsonl").read_text())
    (root / "val.jsonl").write_text((root / "scenes" / "heldout.jsonl").read_text())
    (root / "coco" / "val2017").mkdir(parents=True)
    (root / "fgovd").mkdir()
    lines = []
    for record in map(json.loads, (root / "val.jsonl").read_text().splitlines()):
        name = "val2017/" + Path(record["image"]).name
        with Image.open(root / record["image"]) as image:
            image.save(root / "coco" / name)
            width, height = image.size
        for region in record["regions"]:
            x1, y1, x2, y2 = region["bbox"]
            lines.append(
                {
                    "img_path": name,
                    "bbox": [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height],
                    "width": width,
                    "height": height,
                    "pos_expression": region["caption"],
                    "neg_expression": region["hard_negatives"][:3],
                }
            )
    (root / "fgovd" / "1_attributes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("heading", SUBSECTIONS)
def test_readme_commands_run_on_the_downloaded_folders(heading, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path)
    for command in section_commands(heading):
        if command[:2] == ["hf", "download"]:
            make_hub_copy(command[2], tmp_path / command[4])
            continue
        runner, argv = _runner(command)
        assert runner(argv) == 0, shlex.join(command)
        out = argv[argv.index("--out") + 1] if "--out" in argv else argv[-1]
        if "--output_dir" in argv:
            out = str(Path(argv[argv.index("--output_dir") + 1]) / "final")
        assert any((tmp_path / out).iterdir()), f"{shlex.join(command)} wrote nothing to {out}"
