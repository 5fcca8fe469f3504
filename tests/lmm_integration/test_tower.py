"""FGCLIPVisionTower called the way the original LLaVA codebase calls its vision tower, and its
registration with that codebase (a stand-in `llava` package with the same module layout)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from torch import nn
from transformers import CLIPVisionModel

from fgclip import FGCLIPModel
from fgclip.cli import run
from fgclip.value_path import value_path_features
from lmm_integration.tower import FGCLIPVisionTower, main, register_with_llava


@pytest.fixture(scope="module")
def exported(fgclip_dir, tmp_path_factory):
    return FGCLIPModel.from_pretrained(fgclip_dir).export_vision_tower(tmp_path_factory.mktemp("tower") / "t")


def _args(path, **more):
    values = dict(mm_vision_tower=str(path), mm_vision_select_layer=-2, mm_vision_select_feature="patch")
    return SimpleNamespace(**{**values, **more})


def _reference(path, images):
    with torch.no_grad():
        return CLIPVisionModel.from_pretrained(str(path))(images, output_hidden_states=True).hidden_states


def test_llava_call_pattern_delay_load_then_forward(exported):
    tower = FGCLIPVisionTower(str(exported), _args(exported), delay_load=True)  # as LlavaMetaModel.__init__
    assert not tower.is_loaded and tower.config.hidden_size == 32
    assert (tower.num_patches_per_side, tower.num_patches, tower.hidden_size) == (4, 16, 32)
    tower.load_model()  # as initialize_vision_modules / load_pretrained_model
    assert tower.is_loaded and not any(p.requires_grad for p in tower.parameters())
    tower.to(dtype=torch.float32, device="cpu")
    processor = tower.image_processor
    assert processor.crop_size["height"] == 32 and len(processor.image_mean) == 3  # LLaVA reads both
    images = processor.preprocess(Image.new("RGB", (32, 32), (10, 200, 30)), return_tensors="pt")["pixel_values"]
    features = tower(images)  # as encode_images
    assert features.shape == (1, 16, 32) and not features.requires_grad
    torch.testing.assert_close(features, _reference(exported, images)[-2][:, 1:])
    as_list = tower([images[0], images[0]])
    assert len(as_list) == 2 and as_list[0].shape == (1, 16, 32)
    projector = nn.Sequential(nn.Linear(tower.hidden_size, 64), nn.GELU(), nn.Linear(64, 64))  # mlp2x_gelu
    assert projector(features).shape == (1, 16, 64)
    assert tower.dummy_feature.shape == (1, 32) and tower.dtype == torch.float32 and tower.device.type == "cpu"


def test_select_layer_and_cls_patch_are_honoured(exported):
    tower = FGCLIPVisionTower(
        str(exported), _args(exported, mm_vision_select_layer=-1, mm_vision_select_feature="cls_patch")
    )
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tower(images), _reference(exported, images)[-1])
    with pytest.raises(ValueError, match="select feature"):
        FGCLIPVisionTower(str(exported), _args(exported, mm_vision_select_feature="cls"))


def test_dense_features_from_a_dense_folder_or_from_args(exported, fgclip_dir, tmp_path):
    assert (
        run(main, ["export", "--vision", str(fgclip_dir), "--out", str(tmp_path / "dense"), "--features", "dense"]) == 0
    )
    images = torch.randn(1, 3, 32, 32)
    reference = CLIPVisionModel.from_pretrained(str(exported))
    with torch.no_grad():
        expected = value_path_features(reference, reference(images, output_hidden_states=True).hidden_states[-2])[:, 1:]
    from_folder = FGCLIPVisionTower(f"fgclip:{tmp_path / 'dense'}", _args(tmp_path / "dense"))
    from_args = FGCLIPVisionTower(str(exported), _args(exported, mm_vision_features="dense"))
    assert from_folder.features == "dense"
    torch.testing.assert_close(from_folder(images), expected)
    torch.testing.assert_close(from_args(images), expected)


def test_fgclip_folder_directly_and_unfrozen_training(fgclip_dir, exported):
    tower = FGCLIPVisionTower(str(fgclip_dir), _args(fgclip_dir, unfreeze_mm_vision_tower=True), delay_load=True)
    assert tower.is_loaded  # LLaVA loads an unfrozen tower at once
    images = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(tower(images), _reference(exported, images)[-2][:, 1:])
    tower.vision_tower.requires_grad_(True)
    tower(images).sum().backward()
    assert tower.vision_tower.embeddings.patch_embedding.weight.grad is not None


def test_export_writes_the_prefixed_layout_and_errors_exit_2(fgclip_dir, tmp_path):
    assert run(main, ["export", "--vision", str(fgclip_dir), "--out", str(tmp_path / "t")]) == 0
    with safe_open(str(tmp_path / "t" / "model.safetensors"), framework="pt") as handle:
        assert all(key.startswith("vision_model.") for key in handle.keys())
    _, info = CLIPVisionModel.from_pretrained(str(tmp_path / "t"), output_loading_info=True)
    assert not info["missing_keys"]
    assert run(main, ["export", "--vision", str(tmp_path / "missing"), "--out", str(tmp_path / "u")]) == 2


@pytest.fixture
def fake_llava(tmp_path, monkeypatch):
    """A `llava` package with the original's module layout: a builder that knows only its own towers,
    and `llava_arch` importing `build_vision_tower` by name (which is why both must be patched)."""
    root = tmp_path / "fake_llava"
    files = {
        "llava/__init__.py": "",
        "llava/model/__init__.py": "",
        "llava/model/multimodal_encoder/__init__.py": "",
        "llava/model/multimodal_encoder/builder.py": """
            import os

            class StockTower:
                def __init__(self, name, args, delay_load=False):
                    self.name = name

            def build_vision_tower(vision_tower_cfg, **kwargs):
                name = getattr(vision_tower_cfg, "mm_vision_tower", getattr(vision_tower_cfg, "vision_tower", None))
                if os.path.exists(name) or name.startswith("openai"):
                    return StockTower(name, vision_tower_cfg, **kwargs)
                raise ValueError(f"Unknown vision tower: {name}")
        """,
        "llava/model/llava_arch.py": "from .multimodal_encoder.builder import build_vision_tower\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [m for m in sys.modules if m == "llava" or m.startswith("llava.")]:
        del sys.modules[name]


def test_register_with_llava_routes_fgclip_names_only(fake_llava, fgclip_dir, exported, tmp_path):
    register_with_llava()
    register_with_llava()  # idempotent
    import llava.model.llava_arch as llava_arch
    import llava.model.multimodal_encoder.builder as builder

    assert llava_arch.build_vision_tower is builder.build_vision_tower
    by_prefix = llava_arch.build_vision_tower(_args(f"fgclip:{exported}"), delay_load=True)
    by_folder = llava_arch.build_vision_tower(_args(fgclip_dir), delay_load=True)
    assert isinstance(by_prefix, FGCLIPVisionTower) and isinstance(by_folder, FGCLIPVisionTower)
    assert type(llava_arch.build_vision_tower(_args(exported))).__name__ == "StockTower"  # plain CLIP folder: theirs
    assert type(llava_arch.build_vision_tower(_args("openai/clip-vit-large-patch14-336"))).__name__ == "StockTower"
    with pytest.raises(ValueError, match="Unknown vision tower"):
        llava_arch.build_vision_tower(_args(tmp_path / "nowhere"))


def test_run_registers_then_runs_the_script_unchanged(fake_llava, exported, tmp_path, monkeypatch):
    script = tmp_path / "train_mem.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from types import SimpleNamespace
        from llava.model.llava_arch import build_vision_tower
        tower = build_vision_tower(SimpleNamespace(mm_vision_tower="fgclip:{exported}", mm_vision_select_layer=-2))
        open(sys.argv[1], "w").write(type(tower).__name__ + " " + " ".join(sys.argv[2:]))
    """)
    )
    marker = tmp_path / "marker.txt"
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    assert run(main, ["run", str(script), str(marker), "--local_rank=0"]) == 0
    assert marker.read_text() == "FGCLIPVisionTower --local_rank=0"


TOWER_IN_437 = """
import sys, torch, transformers
from types import SimpleNamespace
from lmm_integration.tower import FGCLIPVisionTower
assert transformers.__version__ == "4.37.2"
out = {}
for path in sys.argv[2:]:
    args = SimpleNamespace(mm_vision_tower=path, mm_vision_select_layer=-2, mm_vision_select_feature="patch")
    tower = FGCLIPVisionTower(path, args, delay_load=True)
    tower.load_model()
    out[tower.features] = tower(torch.load(sys.argv[1]))
torch.save(out, sys.argv[1] + ".out")
"""


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_tower_class_runs_under_the_transformers_the_original_llava_pins(fgclip_dir, exported, tmp_path):
    """The original LLaVA pins transformers 4.37: the class must import and give the same features there."""
    from tests.transformers_437 import transformers_437_python

    assert (
        run(main, ["export", "--vision", str(fgclip_dir), "--out", str(tmp_path / "dense"), "--features", "dense"]) == 0
    )
    images = torch.randn(2, 3, 32, 32)
    torch.save(images, tmp_path / "images.pt")
    result = subprocess.run(
        [
            transformers_437_python(),
            "-c",
            TOWER_IN_437,
            str(tmp_path / "images.pt"),
            str(exported),
            str(tmp_path / "dense"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = torch.load(tmp_path / "images.pt.out")
    hidden = FGCLIPVisionTower(str(exported), _args(exported))(images)
    dense = FGCLIPVisionTower(str(tmp_path / "dense"), _args(tmp_path / "dense"))(images)
    torch.testing.assert_close(got["hidden"], hidden, rtol=0, atol=1e-5)
    torch.testing.assert_close(got["dense"], dense, rtol=0, atol=1e-5)


def test_export_never_writes_over_its_source_or_another_model(fgclip_dir, tmp_path, capsys):
    import shutil

    before = {path.name: path.read_bytes() for path in fgclip_dir.iterdir() if path.is_file()}
    assert run(main, ["export", "--vision", str(fgclip_dir), "--out", str(fgclip_dir)]) == 2
    assert "is the input" in capsys.readouterr().err
    assert {path.name: path.read_bytes() for path in fgclip_dir.iterdir() if path.is_file()} == before
    other = shutil.copytree(fgclip_dir, tmp_path / "other")
    assert run(main, ["export", "--vision", str(fgclip_dir), "--out", str(other)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run(main, ["export", "--vision", str(fgclip_dir), "--out", str(other), "--overwrite"]) == 0
    assert run(main, ["export", "--vision", str(fgclip_dir), "--out", str(tmp_path / "t")]) == 0
    assert (
        run(main, ["export", "--vision", str(fgclip_dir), "--out", str(tmp_path / "t")]) == 0
    )  # its own earlier export
