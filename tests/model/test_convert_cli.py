"""`python -m fgclip.convert` never destroys what it did not write, and every bad input is one line, exit 2.

Each case of issue 15 (items 1 and 6) for the conversions, with the folders made in the test."""

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open

from eval import fgovd
from fgclip import FGCLIPModel
from fgclip.cli import run
from fgclip.convert import main as convert_main
from fgclip.errors import UserError
from fgclip.folders import save_with_processors
from fgclip.train.cli import main as train_main
from tests.conftest import write_one_region_record

CLIP = "openai/clip-vit-base-patch16"


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


@pytest.fixture
def fgclip_folder(tiny_model, tmp_path) -> Path:
    save_with_processors(tiny_model, tmp_path / "model")
    return tmp_path / "model"


def test_export_vision_onto_its_own_source_is_refused_even_with_overwrite(fgclip_folder, capsys):
    before = _snapshot(fgclip_folder)
    for extra in ([], ["--overwrite"]):
        capsys.readouterr()
        assert run(convert_main, ["export-vision", str(fgclip_folder), str(fgclip_folder), *extra]) == 2
        assert "is the input" in _one_error_line(capsys)
    assert _snapshot(fgclip_folder) == before  # the text tower is still there


def test_from_clip_onto_the_stock_clip_folder_is_refused(hub_copy, tmp_path, capsys):
    clip = tmp_path / "clip"
    shutil.copytree(hub_copy(CLIP), clip)
    before = _snapshot(clip)
    for extra in ([], ["--overwrite"]):
        assert (
            run(convert_main, ["from-clip", str(clip), str(clip) + "/", *extra]) == 2
        )  # same folder, spelled otherwise
        assert "is the input" in _one_error_line(capsys)
    assert _snapshot(clip) == before


def test_output_holding_another_model_is_refused_unless_overwrite(fgclip_folder, hub_copy, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(hub_copy(CLIP), other)
    before = _snapshot(other)
    capsys.readouterr()
    assert run(convert_main, ["export-vision", str(fgclip_folder), str(other)]) == 2
    line = _one_error_line(capsys)
    assert "already holds a model (" in line and "config.json" in line and "--overwrite" in line
    assert _snapshot(other) == before

    assert run(convert_main, ["export-vision", str(fgclip_folder), str(other), "--overwrite"]) == 0
    with safe_open(str(other / "model.safetensors"), framework="pt") as handle:
        names = list(handle.keys())
    assert names and all(name.startswith("vision_model.") for name in names)
    assert json.loads((other / "config.json").read_text())["model_type"] == "clip_vision_model"
    assert (other / "vocab.json").read_bytes() == before["vocab.json"]  # what it does not write is left


def test_an_empty_or_new_output_folder_is_fine(fgclip_folder, tmp_path):
    (tmp_path / "empty").mkdir()
    assert run(convert_main, ["export-vision", str(fgclip_folder), str(tmp_path / "empty")]) == 0
    assert run(convert_main, ["export-vision", str(fgclip_folder), str(tmp_path / "new" / "deeper")]) == 0


def test_output_that_is_a_file_is_refused_before_any_work(fgclip_folder, tmp_path, capsys):
    target = tmp_path / "tower.safetensors"
    target.write_text("keep me")
    capsys.readouterr()
    assert run(convert_main, ["export-vision", str(fgclip_folder), str(target)]) == 2
    assert "is a file" in _one_error_line(capsys)
    assert target.read_text() == "keep me"


def _truncated_copy(source: Path, directory: Path) -> Path:
    shutil.copytree(source, directory)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return directory


@pytest.mark.parametrize("kind", ["fgclip", "clip"])
def test_a_truncated_model_safetensors_is_one_line_everywhere(kind, fgclip_folder, hub_copy, tmp_path, capsys):
    """convert, FGCLIPModel.from_pretrained, the evaluations' --model and training's --init."""
    source = fgclip_folder if kind == "fgclip" else hub_copy(CLIP)
    broken = _truncated_copy(source, tmp_path / "broken")
    capsys.readouterr()
    assert run(convert_main, ["export-vision", str(broken), str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert "model.safetensors is damaged" in line and "download" in line
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="model.safetensors is damaged"):
        FGCLIPModel.from_pretrained(broken)
    data = write_one_region_record(tmp_path / "regions.jsonl")
    assert (
        run(fgovd.main, ["--model", str(broken), "--data", str(data), "--out", str(tmp_path / "ev"), "--no-cache"]) == 2
    )
    assert "model.safetensors is damaged" in _one_error_line(capsys)
    assert train_main(["--data", str(data), "--init", str(broken), "--output_dir", str(tmp_path / "run")]) == 2
    assert "model.safetensors is damaged" in _one_error_line(capsys)


def test_a_missing_shard_is_named(fgclip_folder, tmp_path, capsys):
    sharded = tmp_path / "sharded"
    shutil.copytree(fgclip_folder, sharded)
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    index = {
        "metadata": {},
        "weight_map": {
            "logit_scale": "model-00001-of-00002.safetensors",
            "text_projection.weight": "model-00002-of-00002.safetensors",
        },
    }
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert run(convert_main, ["export-vision", str(sharded), str(tmp_path / "out")]) == 2
    assert "lists model-00002-of-00002.safetensors, which is not in the folder" in _one_error_line(capsys)


@pytest.mark.parametrize(
    "source, message",
    [
        ("/nonexistent/model", "/nonexistent/model is not a folder"),
        ("missing-here", "missing-here is not a folder"),
    ],
)
def test_a_missing_source_is_not_answered_with_a_hub_message(source, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(convert_main, ["export-vision", source, str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys)
    assert message in line and "Repo id" not in line


def test_from_pretrained_on_a_missing_local_path_is_one_line():
    with pytest.raises(UserError, match="/nonexistent/model is not a folder"):
        FGCLIPModel.from_pretrained("/nonexistent/model")


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_config", "has no config.json"),
        ("bad_json", "config.json is not valid JSON"),
        ("tower", "model_type 'clip_vision_model' is a single CLIP tower"),
        ("no_weights", "has no model.safetensors or pytorch_model.bin"),
        ("weights_file", "is a file; give the model folder"),
    ],
)
def test_folders_that_are_none_of_the_kinds_read(case, message, fgclip_folder, tmp_path, capsys):
    folder = tmp_path / "case"
    shutil.copytree(fgclip_folder, folder)
    source = folder
    if case == "no_config":
        (folder / "config.json").unlink()
    elif case == "bad_json":
        (folder / "config.json").write_text("{not json")
    elif case == "tower":
        shutil.rmtree(folder)
        FGCLIPModel.from_pretrained(fgclip_folder).export_vision_tower(folder)
    elif case == "no_weights":
        (folder / "model.safetensors").unlink()
    elif case == "weights_file":
        source = folder / "model.safetensors"
    capsys.readouterr()
    assert run(convert_main, ["export-vision", str(source), str(tmp_path / "out")]) == 2
    assert message in _one_error_line(capsys)


def test_wrong_sub_command_for_the_folder_says_which_to_use(hub_copy, fgclip_folder, tmp_path, capsys):
    assert run(convert_main, ["from-clip", str(hub_copy("qihoo360/fg-clip-base")), str(tmp_path / "a")]) == 2
    assert "use from-official" in _one_error_line(capsys)
    assert run(convert_main, ["from-official", str(hub_copy(CLIP)), str(tmp_path / "b")]) == 2
    assert "use from-clip" in _one_error_line(capsys)
    assert run(convert_main, ["from-clip", str(fgclip_folder), str(tmp_path / "c")]) == 2
    assert "already an FG-CLIP folder" in _one_error_line(capsys)
    assert not any((tmp_path / name).exists() for name in "abc")


def test_help_explains_overwrite_and_preprocessing(capsys):
    for argv in (["export-vision", "--help"], ["--help"]):
        with pytest.raises(SystemExit):
            run(convert_main, argv)
    shown = " ".join(capsys.readouterr().out.split())
    assert "--overwrite" in shown and "never allowed when OUT_DIR is the source folder" in shown
    assert "resize to a square, no centre crop" in shown and "is not carried over" in shown


def test_an_older_download_with_only_pytorch_model_bin(hub_copy, tmp_path, capsys):
    """Hub snapshots from before safetensors hold pytorch_model.bin only; a cut one is named."""
    import torch
    from safetensors.torch import load_file

    folder = tmp_path / "bin"
    shutil.copytree(hub_copy(CLIP), folder)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert FGCLIPModel.from_pretrained(folder).eos_token_id == 49407
    weights = folder / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()
    assert run(convert_main, ["from-clip", str(folder), str(tmp_path / "out")]) == 2
    assert "pytorch_model.bin is damaged (incomplete zip archive)" in _one_error_line(capsys)
