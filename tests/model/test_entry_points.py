"""Every entry point on every real Hub folder as it is downloaded (tiny faithful copies): the Python API,
`python -m fgclip.convert`, `scripts/pretrain_fgclip.py --init`, `python -m eval.fgovd` and `eval.retrieval`
through their command lines, and FG-CLIP's square preprocessing where a folder's processor says otherwise."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPVisionModel

from eval import fgovd, retrieval
from eval.common.encoder import Encoder, EncoderConfig
from fgclip import FGCLIPModel, FGCLIPTokenizer
from fgclip.cli import run
from fgclip.convert import main as convert_main
from fgclip.data.synthetic import generate
from fgclip.train.cli import main as train_main
from fgclip.transforms import image_transform
from tests.hub_copies.clip import HUB_FOLDERS, OFFICIAL_FGCLIP_IDS

REPO = Path(__file__).resolve().parents[2]
ALL = list(HUB_FOLDERS)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """A small synthetic set with regions and hard negatives: train.jsonl, heldout.jsonl, images/."""
    root = tmp_path_factory.mktemp("scenes")
    generate(root, 8, seed=5, image_size=32, heldout_fraction=0.25, progress=False)
    return root


@pytest.mark.parametrize("repo_id", ALL)
def test_python_api_on_every_folder(hub_copy, repo_id):
    folder, facts = hub_copy(repo_id), HUB_FOLDERS[repo_id]
    model = FGCLIPModel.from_pretrained(folder).eval()
    tokenizer = FGCLIPTokenizer.from_pretrained(folder)
    size, grid, dim = facts.image_size, facts.grid_size, model.config.projection_dim
    assert model.image_size == size and model.grid_size == grid
    pixels = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert model.encode_image(pixels).shape == (2, dim)
        assert model.encode_text(**tokenizer(["a red cube", "item #. on a table"])).shape == (2, dim)
        assert model.encode_text(**tokenizer([" ".join(["word"] * 120)], long=True), long=True).shape == (1, dim)
        assert model.encode_dense(pixels).shape == (2, grid, grid, dim)
        boxes = [torch.tensor([[0.1, 0.1, 0.6, 0.7]]), torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.9, 0.9]])]
        regions = model.encode_regions(pixels, boxes)
    assert regions.shape == (3, dim) and torch.isfinite(regions).all()


@pytest.mark.parametrize("repo_id", ALL)
def test_export_vision_on_every_folder(hub_copy, repo_id, tmp_path):
    folder = hub_copy(repo_id)
    assert run(convert_main, ["export-vision", str(folder), str(tmp_path / "tower")]) == 0
    tower = CLIPVisionModel.from_pretrained(tmp_path / "tower").eval()
    model = FGCLIPModel.from_pretrained(folder).eval()
    size = HUB_FOLDERS[repo_id].image_size
    pixels = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = model.vision_model(pixels, output_hidden_states=True).hidden_states[-2]
        torch.testing.assert_close(tower(pixels, output_hidden_states=True).hidden_states[-2], expected)
    processor = CLIPImageProcessor.from_pretrained(tmp_path / "tower")
    assert processor.size == {"height": size, "width": size} and not processor.do_center_crop


@pytest.mark.parametrize("repo_id", ALL)
def test_convert_to_this_projects_format_on_every_folder(hub_copy, repo_id, tmp_path):
    command = "from-official" if repo_id in OFFICIAL_FGCLIP_IDS else "from-clip"
    assert run(convert_main, [command, str(hub_copy(repo_id)), str(tmp_path / "out")]) == 0
    converted = FGCLIPModel.from_pretrained(tmp_path / "out").eval()
    original = FGCLIPModel.from_pretrained(hub_copy(repo_id)).eval()
    assert all(torch.equal(converted.state_dict()[name], tensor) for name, tensor in original.state_dict().items())
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    assert processor["do_center_crop"] is False and processor["size"]["height"] == HUB_FOLDERS[repo_id].image_size


def _fgovd_public_file(scenes: Path, out: Path) -> Path:
    """The held-out regions written as the public FG-OVD benchmark lines (COCO xywh pixels)."""
    lines = []
    for record in map(json.loads, (scenes / "heldout.jsonl").read_text().splitlines()):
        with Image.open(scenes / record["image"]) as image:
            width, height = image.size
        for region in record["regions"]:
            x1, y1, x2, y2 = region["bbox"]
            lines.append(
                {
                    "img_path": record["image"],
                    "bbox": [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height],
                    "width": width,
                    "height": height,
                    "pos_expression": region["caption"],
                    "neg_expression": region["hard_negatives"][:4],
                }
            )
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("repo_id", ALL)
def test_evaluations_on_every_folder(hub_copy, repo_id, scenes, tmp_path):
    folder = hub_copy(repo_id)
    data = _fgovd_public_file(scenes, tmp_path / "1_attributes.jsonl")
    common = ["--model", str(folder), "--no-cache", "--device", "cpu", "--batch-size", "4"]
    assert (
        run(fgovd.main, [*common, "--data", str(data), "--images", str(scenes), "--out", str(tmp_path / "fgovd")]) == 0
    )
    results = json.loads((tmp_path / "fgovd" / "results.json").read_text())
    assert results["num_regions"] == len(data.read_text().splitlines()) and 0 <= results["top1"] <= 1
    assert (
        run(
            retrieval.main,
            [*common, "--data", str(scenes / "heldout.jsonl"), "--long", "--out", str(tmp_path / "retrieval")],
        )
        == 0
    )
    assert (tmp_path / "retrieval" / "results.json").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("repo_id", ALL)
def test_training_starts_from_every_folder(hub_copy, repo_id, scenes, tmp_path):
    """`--init` takes the folder as downloaded: stage 1 from a CLIP, stage 2 (continued) from a release."""
    stage = "2" if repo_id in OFFICIAL_FGCLIP_IDS else "1"
    out = tmp_path / "run"
    assert (
        train_main(
            [
                "--stage",
                stage,
                "--data",
                str(scenes / "train.jsonl"),
                "--init",
                str(hub_copy(repo_id)),
                "--output_dir",
                str(out),
                "--max_steps",
                "2",
                "--batch_size",
                "2",
                "--lr",
                "1e-4",
                "--warmup_steps",
                "0",
                "--num_workers",
                "0",
                "--log_every",
                "1",
                "--no_progress",
            ]
        )
        == 0
    )
    final = FGCLIPModel.from_pretrained(out / "final")
    assert final.image_size == HUB_FOLDERS[repo_id].image_size
    assert json.loads((out / "final" / "config.json").read_text())["text_config"]["eos_token_id"] == 49407
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))


def test_stock_folders_are_evaluated_on_square_images_not_their_centre_crop(hub_copy, tmp_path):
    """The decision of README "Image preprocessing": a stock CLIP folder's shortest-edge + centre-crop
    processor does not change FG-CLIP's square resize; the evaluation sees the whole (squashed) image."""
    folder = hub_copy("openai/clip-vit-base-patch16")
    image_path = tmp_path / "wide.png"
    wide = np.zeros((40, 120, 3), dtype=np.uint8)
    wide[:, :30] = (250, 20, 20)  # a red strip at the left edge: a centre crop cuts it off
    Image.fromarray(wide).save(image_path)
    encoder = Encoder.load(folder, EncoderConfig(device="cpu"))
    with Image.open(image_path) as image:
        ours = encoder.transform(image)
        cropped = CLIPImageProcessor.from_pretrained(folder)(image, return_tensors="pt")["pixel_values"][0]
        assert torch.equal(ours, image_transform(224)(image))
    assert ours.shape == cropped.shape == (3, 224, 224)
    red = ours[0, :, :40].mean() - ours[2, :, :40].mean()
    assert red > 1.0  # the left strip is still there
    assert cropped[0, :, :40].mean() - cropped[2, :, :40].mean() < 0.1  # the folder's own processor cut it off


@pytest.mark.slow
def test_the_real_module_command_line(hub_copy, tmp_path):
    """`python -m fgclip.convert` as a user types it, in a fresh interpreter."""
    command = [
        sys.executable,
        "-m",
        "fgclip.convert",
        "from-clip",
        str(hub_copy("laion/CLIP-ViT-B-32-laion2B-s34B-b79K")),
        str(tmp_path / "out"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def convert():
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)

    result = convert()
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["text_config"]["pad_token_id"] == 0
    again = convert()
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr
