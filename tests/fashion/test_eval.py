"""eval.fashion and eval.retrieval on Fashion-FINE folders use the trained pooling (checked against the model
by hand) and still evaluate plain towers as before."""

import json

import pytest
import torch

from eval import fashion, retrieval
from fgclip import FashionFINEModel, FGCLIPTokenizer
from fgclip.errors import UserError
from fgclip.fashion.synthetic import SyntheticSettings, generate
from fgclip.folders import save_with_processors
from fgclip.images import open_rgb
from fgclip.transforms import image_transform

COMMON = ["--no-cache", "--num-workers", "0", "--batch-size", "8", "--device", "cpu"]


def _fashiongen(data, model, out, *extra):
    """`python -m eval.fashion --task fashiongen` on `data` with `model`, results in `out`: `extra`, then COMMON."""
    return fashion.main(
        ["--task", "fashiongen", "--data", str(data), "--model", str(model), "--out", str(out), *extra, *COMMON]
    )


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    out = tmp_path_factory.mktemp("fashion_eval_set")
    generate(out, SyntheticSettings(families=6, views=2, image_size=32, seed=2), progress=False)
    return out


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory, tiny_towers_dir):
    """Fashion-FINE parts on the tiny towers, with a pooling layer that is not the initial one."""
    model = FashionFINEModel.from_pretrained(tiny_towers_dir).eval()
    with torch.no_grad():
        model.local_pooling.score.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(4))
    directory = tmp_path_factory.mktemp("fashion_fine_folder")
    save_with_processors(model, directory)
    return directory


def test_fashiongen_full_mode_with_the_learned_pooling_by_hand(fashion_dir, test_split, tmp_path):
    data = test_split / "fashiongen" / "test.jsonl"
    result = _fashiongen(data, fashion_dir, tmp_path / "out", "--num-negatives", "5")
    assert result["embeddings"] == ["fusion"] and result["fusion"]["learned"] and result["fusion"]["local_pooling"]
    assert result["encoder"]["checkpoint_kind"] == "fashion-fine"

    model = FashionFINEModel.from_pretrained(fashion_dir).eval()
    items = [json.loads(line) for line in data.read_text().splitlines()]
    texts = list(dict.fromkeys(item["text"] for item in items))
    transform = image_transform(model.image_size)
    pixels = torch.stack([transform(open_rgb(data.parent / item["image"])) for item in items])
    with torch.no_grad():
        images = model.encode_image_fused(pixels)
        text_embeds = model.encode_text_fused(**FGCLIPTokenizer()(texts))
    scores = images @ text_embeds.T
    own = torch.tensor([texts.index(item["text"]) for item in items])
    rank = (scores > scores[torch.arange(len(items)), own][:, None]).sum(1)
    assert result["fusion_full_i2t_r1"] == pytest.approx((rank < 1).float().mean().item(), abs=1e-6)
    assert result["fusion_full_i2t_r10"] == pytest.approx((rank < 10).float().mean().item(), abs=1e-6)


def test_global_of_a_fashion_folder_is_its_towers_and_plain_towers_are_unchanged(
    fashion_dir, tiny_towers_dir, test_split, tmp_path
):
    data = str(test_split / "fashiongen" / "test.jsonl")
    both = _fashiongen(data, fashion_dir, tmp_path / "both", "--embedding", "both", "--num-negatives", "5")
    plain = _fashiongen(data, tiny_towers_dir, tmp_path / "plain", "--num-negatives", "5")
    assert plain["embeddings"] == ["global"]
    for key in ("full_i2t_r1", "full_t2i_r10", "s100_i2t_r1", "s100_t2i_r10"):
        assert plain[key] == both[key]  # the same towers: the same global embeddings
    fused = _fashiongen(
        data, tiny_towers_dir, tmp_path / "plain_fused", "--embedding", "fusion", "--num-negatives", "5"
    )
    assert fused["fusion"]["pooling"].startswith("parameter-free")


def test_retrieval_uses_the_learned_embeddings(fashion_dir, test_split, tmp_path):
    data = str(test_split / "fashiongen" / "test.jsonl")
    result = retrieval.main(
        ["--model", str(fashion_dir), "--data", data, "--caption-field", "text", "--out", str(tmp_path / "r"), *COMMON]
    )
    assert result["embedding"] == "learned fusion"
    gen = _fashiongen(data, fashion_dir, tmp_path / "g", "--mode", "full")
    assert result["i2t_r1"] == pytest.approx(gen["fusion_full_i2t_r1"])  # the same protocol on these items
    with pytest.raises(UserError, match="77-token path"):
        retrieval.main(
            [
                "--model",
                str(fashion_dir),
                "--data",
                data,
                "--caption-field",
                "text",
                "--long",
                "--out",
                str(tmp_path / "long"),
                *COMMON,
            ]
        )
