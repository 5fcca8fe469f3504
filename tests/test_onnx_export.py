"""`python -m fgclip.convert export-onnx`: onnxruntime's outputs equal PyTorch's encode_* (batch 1 and 3, short
and long texts, right-padded rows), dynamic axes, the README's numpy region example, the command's errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from fgclip import FGCLIPModel, FGCLIPTokenizer  # noqa: E402
from fgclip.cli import run  # noqa: E402
from fgclip.convert import main as convert_main  # noqa: E402
from fgclip.folders import save_with_processors  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ATOL = 1e-4
SHORT_TEXTS = ["a cat", "a red umbrella beside a small striped dog on the grass", "x"]
LONG_TEXTS = [" ".join(["a long caption that goes on about colours, sizes and textures"] * 12), "short", "a dog"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[FGCLIPModel, Path, Path]:
    torch.manual_seed(0)
    model = FGCLIPModel(tiny_config()).eval()
    with torch.no_grad():  # the long path's own weights, as after stage 2
        model.long_text_positions.residual.add_(torch.randn_like(model.long_text_positions.residual))
        model.long_text_projection.weight.add_(torch.randn_like(model.long_text_projection.weight))
    root = tmp_path_factory.mktemp("onnx")
    save_with_processors(model, root / "model")
    assert run(convert_main, ["export-onnx", str(root / "model"), str(root / "fgclip-onnx")]) == 0
    return model, root / "model", root / "fgclip-onnx"


def _session(folder: Path, name: str):
    return ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 3])
def test_vision_graph_equals_pytorch(exported, batch):
    model, _, folder = exported
    pixels = torch.randn(batch, 3, model.image_size, model.image_size)
    image_embeds, dense, dense_raw = _session(folder, "vision.onnx").run(None, {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(image_embeds, model.encode_image(pixels).numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(dense, model.encode_dense(pixels).numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(dense_raw, model.encode_dense(pixels, normalize=False).numpy(), rtol=0, atol=ATOL)
    assert dense.shape == (batch, model.grid_size, model.grid_size, model.config.projection_dim)
    np.testing.assert_allclose(np.linalg.norm(image_embeds, axis=-1), 1, atol=1e-5)


@pytest.mark.parametrize("long", [False, True], ids=["text", "text_long"])
@pytest.mark.parametrize("batch", [1, 3])
def test_text_graphs_equal_pytorch_with_right_padding(exported, long, batch):
    model, model_dir, folder = exported
    tokens = FGCLIPTokenizer.from_pretrained(model_dir)((LONG_TEXTS if long else SHORT_TEXTS)[:batch], long=long)
    if batch > 1:
        assert (tokens["attention_mask"] == 0).any()  # rows of different lengths, right-padded
    if long:
        assert tokens["input_ids"].shape[1] > 77  # past the short path's limit
    session = _session(folder, "text_long.onnx" if long else "text.onnx")
    (got,) = session.run(None, {name: tensor.numpy() for name, tensor in tokens.items()})
    with torch.no_grad():
        expected = model.encode_text(tokens["input_ids"], tokens["attention_mask"], long=long).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_graph_interfaces_and_config(exported):
    model, _, folder = exported
    vision, text = _session(folder, "vision.onnx"), _session(folder, "text_long.onnx")
    assert [i.name for i in vision.get_inputs()] == ["pixel_values"]
    assert [o.name for o in vision.get_outputs()] == ["image_embeds", "dense", "dense_unnormalized"]
    assert isinstance(vision.get_inputs()[0].shape[0], str)  # dynamic batch
    assert [(i.name, i.type) for i in text.get_inputs()] == [
        ("input_ids", "tensor(int64)"),
        ("attention_mask", "tensor(int64)"),
    ]
    assert all(isinstance(dim, str) for dim in text.get_inputs()[0].shape)  # dynamic batch and length
    assert [o.name for o in text.get_outputs()] == ["text_embeds"]
    config = json.loads((folder / "onnx_config.json").read_text())
    assert (config["image_size"], config["short_max_length"], config["long_max_length"]) == (32, 77, 248)
    assert config["eos_token_id"] == 49407 and config["embedding_dim"] == model.config.projection_dim


def test_readme_region_example_runs_and_equals_encode_regions(exported, tmp_path, monkeypatch):
    model, _, folder = exported
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- onnx-example -->\n```python\n(.*?)```", readme, re.DOTALL).group(1)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    (tmp_path / "fgclip-onnx").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md:onnx-example", "exec"), namespace)
    pixels = torch.from_numpy(namespace["pixels"])
    box = torch.tensor([[0.1, 0.2, 0.6, 0.9]])
    with torch.no_grad():
        np.testing.assert_allclose(namespace["image_embeds"], model.encode_image(pixels).numpy(), atol=ATOL)
        np.testing.assert_allclose(namespace["region"], model.encode_regions(pixels, [box])[0].numpy(), atol=ATOL)
    # Boxes on cell edges, a thin one, the whole image: the numpy RoIAlign is torchvision's.
    grid = namespace["grid"][0]
    for corners in ([0.0, 0.0, 1.0, 1.0], [0.25, 0.5, 0.75, 1.0], [0.3, 0.31, 0.33, 0.9], [0.0, 0.9, 0.05, 1.0]):
        with torch.no_grad():
            expected = model.encode_regions(pixels, [torch.tensor([corners])])[0].numpy()
        np.testing.assert_allclose(namespace["region_embedding"](grid, corners), expected, atol=ATOL)


def test_output_folder_rules_and_missing_packages(exported, tmp_path, monkeypatch, capsys):
    _, model_dir, _ = exported
    assert run(convert_main, ["export-onnx", str(model_dir), str(model_dir)]) == 2
    assert "is the input" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("mine")
    assert run(convert_main, ["export-onnx", str(model_dir), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "notes.txt" in err and "--overwrite" in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert run(convert_main, ["export-onnx", str(model_dir), str(tmp_path / "new")]) == 2
    assert "fgclip[onnx]" in capsys.readouterr().err


def test_export_folder_carries_a_model_card(exported):
    from huggingface_hub import ModelCard

    _, model_dir, folder = exported
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "onnx" and "onnx" in card.data.tags
    assert f"`{model_dir}` exported with `python -m fgclip.convert export-onnx`" in card.text
    assert 'ort.InferenceSession("' in card.text


@pytest.mark.slow
def test_official_release_folder_exports_as_downloaded(tmp_path):
    """The folder users asked ONNX for (official FG-CLIP issue #45), as `hf download` leaves it."""
    from tests.hub_copies.clip import make_hub_copy

    release = make_hub_copy("qihoo360/fg-clip-base", tmp_path / "fg-clip-base")
    assert run(convert_main, ["export-onnx", str(release), str(tmp_path / "onnx")]) == 0
    model, tokenizer = FGCLIPModel.from_pretrained(release).eval(), FGCLIPTokenizer.from_pretrained(release)
    assert json.loads((tmp_path / "onnx" / "onnx_config.json").read_text())["eos_token_id"] == model.eos_token_id
    tokens = tokenizer(LONG_TEXTS, long=True)
    (got,) = _session(tmp_path / "onnx", "text_long.onnx").run(None, {k: v.numpy() for k, v in tokens.items()})
    pixels = torch.randn(2, 3, model.image_size, model.image_size)
    image_embeds, _, _ = _session(tmp_path / "onnx", "vision.onnx").run(None, {"pixel_values": pixels.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(got, model.encode_text(**tokens, long=True).numpy(), rtol=0, atol=ATOL)
        np.testing.assert_allclose(image_embeds, model.encode_image(pixels).numpy(), rtol=0, atol=ATOL)
