"""The shared loader/encoder: the three checkpoint kinds, batching that keeps order, counted image
failures, fusion, and the on-disk cache (hits on re-runs, invalidated by changed weights or images)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel

from eval.common.cache import EmbeddingCache, model_fingerprint
from eval.common.encoder import Encoder, EncoderConfig
from eval.common.fusion import FusionSettings
from fgclip.errors import UserError
from fgclip.folders import save_with_processors
from fgclip.runtime import autocast_dtype
from fgclip.transforms import image_transform
from tests.conftest import TINY_TEXT, TINY_VISION
from tests.eval.conftest import make_image

CONFIG = EncoderConfig(batch_size=2, num_workers=0)


def test_texts_are_batched_deduplicated_and_in_order(tiny_model_dir):
    encoder = Encoder.load(tiny_model_dir, CONFIG)
    texts = ["a dog", "a much longer caption about a red car", "a dog", "x"]
    embeddings = encoder.texts(texts)
    with torch.no_grad():
        expected = encoder.model.encode_text(**encoder.tokenizer(texts))
    torch.testing.assert_close(embeddings, expected, atol=1e-5, rtol=1e-5)
    long_embeddings = encoder.texts(texts, long=True)
    assert long_embeddings.shape == (4, 16)


def test_images_and_regions_match_the_model_and_count_failures(tiny_model_dir, tmp_path):
    encoder = Encoder.load(tiny_model_dir, CONFIG)
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    requested = [paths[0], tmp_path / "missing.png", paths[1], broken, paths[2], paths[0]]
    encoded = encoder.images(requested)
    assert encoded.ok.tolist() == [True, False, True, False, True, True]
    assert encoded.failures == {"missing_image": 1, "unreadable_image": 1}
    assert encoded.embeddings[1].abs().sum() == 0
    from PIL import Image

    transform = image_transform(encoder.model.image_size)
    pixels = torch.stack([transform(Image.open(p)) for p in paths])
    with torch.no_grad():
        expected = encoder.model.encode_image(pixels)
        boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.1, 0.2, 0.5, 0.6]]), torch.tensor([[0.5, 0.5, 1.0, 1.0]])]
        expected_regions = encoder.model.encode_regions(pixels[:2], boxes)
    torch.testing.assert_close(encoded.embeddings[[0, 2, 4, 5]], expected[[0, 1, 2, 0]], atol=1e-5, rtol=1e-5)
    regions = encoder.regions(
        [paths[0], tmp_path / "missing.png", paths[1]], [boxes[0], torch.tensor([[0.0, 0.0, 0.5, 0.5]]), boxes[1]]
    )
    assert regions.ok.tolist() == [True, True, False, True]
    torch.testing.assert_close(regions.embeddings[[0, 1, 3]], expected_regions, atol=1e-5, rtol=1e-5)


def test_fusion_embeddings_are_normalised_mixes(tiny_model_dir, tmp_path):
    encoder = Encoder.load(tiny_model_dir, CONFIG)
    texts = ["a red dress with long sleeves", "a shirt"]
    plain, fused = encoder.texts(texts), encoder.texts(texts, fusion=FusionSettings())
    torch.testing.assert_close(fused.norm(dim=-1), torch.ones(2))
    assert not torch.allclose(plain, fused)
    torch.testing.assert_close(encoder.texts(texts, fusion=FusionSettings(text_ratio=0.0)), plain, atol=1e-5, rtol=1e-5)
    path = make_image(tmp_path / "a.png", seed=3)
    plain_image = encoder.images([path]).embeddings
    fused_image = encoder.images([path], FusionSettings()).embeddings
    torch.testing.assert_close(fused_image.norm(dim=-1), torch.ones(1))
    # g*(1-r) + l*r with |l| = 1 stays within r of g before renormalising
    assert float(F.cosine_similarity(plain_image, fused_image)) > 0.99


def test_cache_hits_on_rerun_and_invalidates_on_changes(tiny_model_dir, tmp_path):
    cache_dir = tmp_path / "cache"
    path = make_image(tmp_path / "img.png", seed=1)
    first = Encoder.load(tiny_model_dir, CONFIG, EmbeddingCache(cache_dir))
    computed = first.images([path]).embeddings
    first.texts(["a cat"])
    assert (first.cache.hits, first.cache.misses) == (0, 2)
    second = Encoder.load(tiny_model_dir, CONFIG, EmbeddingCache(cache_dir))
    torch.testing.assert_close(second.images([path]).embeddings, computed)
    second.texts(["a cat"])
    assert (second.cache.hits, second.cache.misses) == (2, 0)
    # a changed image file (new content, new mtime) is re-encoded
    make_image(path, seed=2)
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert not torch.allclose(second.images([path]).embeddings, computed)
    assert second.cache.misses == 1
    # other texts, long path or fusion are other entries
    second.texts(["a cat"], long=True)
    assert second.cache.misses == 2


def test_model_fingerprint_follows_the_weights(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    before = model_fingerprint(copy)
    weights = copy / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert model_fingerprint(copy) != before


def test_unreadable_cache_file_is_recomputed(tmp_path, capsys):
    cache = EmbeddingCache(tmp_path)
    key = cache.key(kind="x")
    cache.save(key, {"embeddings": torch.ones(2, 3)})
    assert torch.equal(cache.load(key)["embeddings"], torch.ones(2, 3))
    next(tmp_path.rglob("*.safetensors")).write_bytes(b"torn")
    assert cache.load(key) is None
    assert "ignoring unreadable cache file" in capsys.readouterr().err
    disabled = EmbeddingCache(None)
    disabled.save(key, {"embeddings": torch.ones(1)})
    assert disabled.load(key) is None and not disabled.enabled


def test_stock_clip_folder_loads_as_the_baseline(tmp_path):
    torch.manual_seed(0)
    clip = CLIPModel(CLIPConfig(text_config=dict(TINY_TEXT), vision_config=dict(TINY_VISION), projection_dim=16))
    clip.save_pretrained(tmp_path / "clip")
    encoder = Encoder.load(tmp_path / "clip", CONFIG)
    assert encoder.checkpoint_kind == "clip"
    with torch.no_grad():
        expected = clip.get_text_features(**encoder.tokenizer(["a photo of a cat"])).pooler_output
    torch.testing.assert_close(encoder.texts(["a photo of a cat"]), F.normalize(expected, dim=-1), atol=1e-5, rtol=1e-5)


def test_load_errors_are_one_line_eval_errors(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        Encoder.load(tmp_path / "absent", CONFIG)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        Encoder.load(tmp_path / "empty", CONFIG)
    with pytest.raises(UserError, match="fp16 needs a CUDA"):
        autocast_dtype("fp16", torch.device("cpu"))
    assert autocast_dtype("auto", torch.device("cpu")) is None
    assert autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16


def test_bf16_autocast_on_cpu_stays_close(tiny_model_dir):
    fp32 = Encoder.load(tiny_model_dir, CONFIG).texts(["a small brown dog"])
    bf16 = Encoder.load(tiny_model_dir, EncoderConfig(batch_size=2, precision="bf16")).texts(["a small brown dog"])
    assert bf16.dtype == torch.float32
    assert float(F.cosine_similarity(fp32, bf16)) > 0.98


def test_saved_folder_with_processors_round_trips(tiny_model, tmp_path):
    save_with_processors(tiny_model, tmp_path / "m")
    assert Encoder.load(tmp_path / "m", CONFIG).checkpoint_kind == "fgclip"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_autocast_matches_fp32(tiny_model_dir, tmp_path):
    """On a GPU, 'auto' precision is bf16 (or fp16) autocast; embeddings stay close to fp32 on the CPU."""
    paths = [make_image(tmp_path / f"{i}.png", seed=i) for i in range(3)]
    boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.1, 0.7, 0.9]])] * 3
    cpu = Encoder.load(tiny_model_dir, CONFIG)
    gpu = Encoder.load(tiny_model_dir, EncoderConfig(batch_size=2, device="cuda", precision="auto"))
    assert gpu.precision_name in ("bf16", "fp16") and gpu.device.type == "cuda"
    for name, run in (
        ("texts", lambda e: e.texts(["a red car", "two dogs"], long=True)),
        ("images", lambda e: e.images(paths).embeddings),
        ("regions", lambda e: e.regions(paths, boxes).embeddings),
    ):
        reference, fast = run(cpu), run(gpu)
        assert fast.device.type == "cpu" and fast.dtype == torch.float32, name
        assert float(F.cosine_similarity(reference, fast).min()) > 0.98, name
