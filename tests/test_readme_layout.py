"""The README's layout section is the map a newcomer reads first: every module and package of `fgclip/` and every
top-level folder of the repository is named in it."""

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layout_names() -> set[str]:
    readme = (REPO / "README.md").read_text()
    block = readme.split("```\nfgclip/", 1)[1].split("```", 1)[0]
    return set(re.findall(r"[\w.]+(?:\.py|/)", "fgclip/" + block))


def test_every_library_module_is_on_the_map():
    library = REPO / "fgclip"
    modules = {path.name for path in library.glob("*.py") if path.name != "__init__.py"}
    packages = {f"{path.name}/" for path in library.iterdir() if (path / "__init__.py").is_file()}
    assert sorted((modules | packages) - layout_names()) == []


def test_every_top_level_folder_is_on_the_map():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    folders = {f"{line.split('/')[0]}/" for line in tracked.splitlines() if "/" in line and not line.startswith(".")}
    assert sorted(folders - layout_names()) == []
