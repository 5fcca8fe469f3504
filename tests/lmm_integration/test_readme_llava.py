"""README "### LLaVA" (From downloads to results): every command shown runs verbatim on tiny faithful copies of the
downloaded folders (tests/hub_copies/llava.py) and on data files written as the public ones are laid out. The
training script gets tiny-run settings appended (later KEY=VALUE arguments win), the evaluation `--device cpu`."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from eval import pope
from lmm_integration.build import main as build_main
from tests.hub_copies.clip import make_hub_copy
from tests.hub_copies.llava import LLAVA_HUB_FOLDERS, make_llava_hub_copy
from tests.lmm_integration.conftest import free_port
from tests.official_records import coco_pope_lines, llava_conversation

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
HEADING = "### LLaVA"
TOWER_REPOS = ("qihoo360/fg-clip-large",)
TINY_RUN = [
    "NUM_GPUS=1",
    "MAX_STEPS_A=1",
    "MAX_STEPS_B=1",
    "BATCH_A=1",
    "BATCH_B=1",
    "BF16=0",
    "GRAD_CKPT=0",
    "NUM_WORKERS=0",
    "EXTRA_ARGS=--logging-steps 1",
]


def section_commands(readme: Path = README, heading: str = HEADING, blocks: int | None = None) -> list[list[str]]:
    """The command lines of the ```bash blocks (the first `blocks` of them) of one sub-section of a README,
    continuation lines joined."""
    text = readme.read_text()
    part = text[text.index(f"\n{heading}\n") + len(heading) + 2 :]
    part = part[: min(index for index in (part.find("\n## "), part.find("\n### ")) if index >= 0)]
    commands = []
    for block in part.split("```bash\n")[1:][:blocks]:
        lines = block.split("```")[0].replace("\\\n", " ").splitlines()
        commands += [shlex.split(line) for line in lines if line.strip()]
    return commands


def test_lmm_integration_readme_shows_the_tested_commands():
    shown = section_commands(REPO / "lmm_integration" / "README.md", "### From downloads to results", blocks=1)
    assert shown == section_commands()


def test_every_command_is_a_download_or_a_known_entry_point():
    commands = section_commands()
    downloads = [command for command in commands if command[:2] == ["hf", "download"]]
    assert {command[2] for command in downloads} == set(LLAVA_HUB_FOLDERS) | set(TOWER_REPOS)
    for command in commands:
        assert (
            command[:2] == ["hf", "download"]
            and command[3] == "--local-dir"
            or command[0] == "scripts/finetune_llava.sh"
            or command[:3] in (["python", "-m", "lmm_integration.build"], ["python", "-m", "eval.pope"])
        ), command
    for download in downloads:  # each downloaded folder is used
        assert any(download[4] in " ".join(command) for command in commands if command[:2] != ["hf", "download"])


def _image(path: Path, colour) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 36), colour).save(path)


def _write_data(root: Path) -> None:
    """LLaVA-Pretrain's 558K captions (`<image>` before or after the text), the 665K mix (multi-turn COCO and GQA
    conversations and a text-only ShareGPT one) and POPE's questions, with their images, laid out as released."""
    for path, colour in (
        ("data/LLaVA-Pretrain/images/00453/004539375.jpg", (200, 30, 30)),
        ("data/LLaVA-Pretrain/images/00223/002239345.jpg", (30, 30, 200)),
        ("data/coco/train2017/000000033471.jpg", (240, 240, 240)),
        ("data/gqa/images/2354786.jpg", (20, 160, 40)),
        ("coco/val2014/COCO_val2014_000000310196.jpg", (90, 90, 90)),
    ):
        _image(root / path, colour)
    pretrain = [
        llava_conversation(
            "004539375",
            [
                "Render a clear and concise summary of the photo.\n<image>",
                "select luxury furniture 3 - inch gel memory foam mattress topper",
            ],
            image="00453/004539375.jpg",
        ),
        llava_conversation(
            "002239345",
            ["<image>\nWrite a terse but informative summary of the picture.", "a grey watch with an army style strap"],
            image="00223/002239345.jpg",
        ),
    ]
    (root / "data/LLaVA-Pretrain/blip_laion_cc_sbu_558k.json").write_text(json.dumps(pretrain))
    mix = [
        llava_conversation(
            "000000033471",
            [
                "<image>\nWhat are the colors of the bus in the image?",
                "The bus in the image is white and red.",
                "What feature can be seen on the back of the bus?",
                "The back of the bus features an advertisement.",
            ],
            image="coco/train2017/000000033471.jpg",
        ),
        llava_conversation(
            "2354786",
            ["<image>\nIs the sky dark?\nAnswer the question using a single word or phrase.", "Yes"],
            image="gqa/images/2354786.jpg",
        ),
        llava_conversation(
            "i6IyJda_0",
            [
                "How to tell if a customer segment is well segmented? In 3 bullet points.",
                "1. Homogeneity 2. Distinctiveness 3. Stability",
            ],
        ),
    ]
    (root / "data/llava_v1_5_mix665k.json").write_text(json.dumps(mix))
    (root / "pope").mkdir()
    (root / "pope/coco_pope_random.json").write_text(
        "".join(json.dumps(line) + "\n" for line in coco_pope_lines(("snowboard", "yes"), ("car", "no")))
    )


def _run(command: list[str], root: Path) -> None:
    if command[:2] == ["hf", "download"]:
        target = root / command[4]
        copy = make_llava_hub_copy if command[2] in LLAVA_HUB_FOLDERS else make_hub_copy
        copy(command[2], target)
    elif command[0] == "scripts/finetune_llava.sh":
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        argv = ["bash", str(REPO / command[0]), *command[1:], *TINY_RUN, f"MASTER_PORT={free_port()}"]
        result = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, shlex.join(command) + "\n" + (result.stdout + result.stderr)[-3000:]
    elif command[2] == "lmm_integration.build":
        assert build_main(command[3:]) == 0, shlex.join(command)
    else:
        result = pope.main([*command[3:], "--device", "cpu", "--max-new-tokens", "2"])
        assert result["num_questions"] == 2 and result["num_missing"] == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_llava_commands_run_on_the_downloaded_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_data(tmp_path)
    for command in section_commands():
        _run(command, tmp_path)
    run = tmp_path / "runs/llava-fgclip-7b"
    assert json.loads((run / "built/lmm_build.json").read_text())["image_token_id"] == 32000
    assert json.loads((run / "stage_a/data_report.json").read_text())["kept"] == 2
    assert json.loads((run / "stage_b/data_report.json").read_text()) == {
        "total": 3,
        "kept": 2,
        "skipped": {"without an image": 1},
    }
    assert (run / "stage_b/final/config.json").is_file()
    assert json.loads((tmp_path / "runs/llava-fgclip-swap/lmm_build.json").read_text())["projector"].startswith("kept")
    for name in ("llava-fgclip-7b-pope", "llava-fgclip-swap-pope"):
        assert json.loads((tmp_path / "runs/eval" / name / "results.json").read_text())["num_questions"] == 2
