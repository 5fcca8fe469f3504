"""The README's stage-2 commands on official FineHARD files, as written, on a fresh run folder (with
`--resume latest`, which then starts from scratch): tiny copies of the data and a tiny stage-1 model stand in
for the downloads, and a few steps for the run's length."""

import re
import shlex
from pathlib import Path

import pytest

from fgclip.train.cli import main
from tests.data.conftest import official_finehard

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands(section: str) -> list[list[str]]:
    """The training commands of the README section headed `section`, as argument lists."""
    text = README.read_text()
    body = text[text.index(section) + len(section) :]
    following = re.search(r"\n#{2,3} ", body)
    body = body[: following.start()] if following else body
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", body, re.DOTALL):
        joined = block.replace("\\\n", " ")
        commands += [
            shlex.split(line.split("#")[0])
            for line in joined.splitlines()
            if "pretrain_fgclip.py" in line and "--stage 2" in line
        ]
    return commands


def as_tiny_run(command: list[str], replacements: dict[str, str]) -> list[str]:
    argv = command[command.index("scripts/pretrain_fgclip.py") + 1 :]
    argv = [replacements.get(item, item) for item in argv]
    return [item for item in argv if item != "--bf16"] + ["--max_steps", "2", "--batch_size", "2", "--no_progress"]


@pytest.mark.slow
@pytest.mark.parametrize("section", ["## Pretraining on real data", "### FineHARD (official release)"])
def test_the_readme_stage2_command_runs_on_a_fresh_folder(section, tmp_path, tiny_init, capsys):
    official_finehard(tmp_path / "FgGRN-12M")
    (tmp_path / "data").mkdir()
    (tmp_path / "FgGRN-12M" / "grit-12m").rename(tmp_path / "data" / "grit-12m")
    [command] = readme_commands(section)
    replacements = {
        "runs/stage1/final": str(tiny_init),
        "FgGRN-12M/jsonfiles": str(tmp_path / "FgGRN-12M" / "jsonfiles"),
        "data/grit-12m": str(tmp_path / "data" / "grit-12m"),
    }
    argv = as_tiny_run(command, replacements)
    out = argv[argv.index("--output_dir") + 1]
    argv[argv.index("--output_dir") + 1] = str(tmp_path / out)
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "no checkpoint in" in printed and "starting from scratch" in printed
    assert (tmp_path / out / "final" / "model.safetensors").is_file()
