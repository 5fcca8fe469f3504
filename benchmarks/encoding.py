"""Item 5: images/s and texts/s of the evaluation encoding path against open_clip, and the cache's effect.

    python -m benchmarks.run encoding [--device cuda] [--smoke] [--output_dir DIR]

Ours is `eval.common.encoder.Encoder`, what every encoder evaluation runs: a saved model folder loaded
as the commands load it, images decoded and transformed in batches, embeddings normalised, moved to the
CPU. The reference is open_clip's `encode_image` / `encode_text` on a model with the same towers, fed by
the same image decoding (`eval.common.images.iter_image_batches`, same transform, batch and workers) and
open_clip's own tokenizer, also normalised and moved to the CPU. Texts are distinct FG-OVD-like region
expressions and hard negatives (so the Encoder's de-duplication does not flatter it).
Also: the model-only ratios on tensors already in memory, and the embedding cache: the time of a second
run that reads the cache over the first run that fills it.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.harness import Figure, Report, describe_device, paired_ratio, time_interleaved
from benchmarks.settings import BenchSettings
from benchmarks.shapes import build_fgclip, build_open_clip_twin, get_shape
from benchmarks.workload import make_records
from eval.common.cache import EmbeddingCache
from eval.common.encoder import Encoder, EncoderConfig
from eval.common.images import iter_image_batches
from fgclip.data.synthetic import generate
from fgclip.folders import save_with_processors

NAME = "encoding"


def region_texts(count: int, seed: int) -> list[str]:
    """`count` distinct region expressions and hard negatives, FineHARD-like."""
    texts: dict[str, None] = {}
    records = make_records(max(1, count // 40 + 1), seed)
    for record in records:
        for region in record.regions:
            texts.update(dict.fromkeys([region.caption, *region.hard_negatives]))
    while len(texts) < count:
        seed += 1
        for region in make_records(1, seed)[0].regions:
            texts.update(dict.fromkeys([region.caption, *region.hard_negatives]))
    return list(texts)[:count]


class OpenCLIPEncoder:
    """open_clip's encoders driven the way the Encoder drives ours (batches, no_grad, autocast, normalise, CPU)."""

    def __init__(self, model, transform, settings: BenchSettings, batch_size: int, workers: int):
        from open_clip.tokenizer import tokenize

        self.model, self.transform, self.settings = model, transform, settings
        self.batch_size, self.workers, self.tokenize = batch_size, workers, tokenize

    @torch.no_grad()
    def images(self, paths: list[Path]) -> torch.Tensor:
        rows = []
        for _, pixels in iter_image_batches(paths, self.transform, self.batch_size, self.workers, Counter()):
            with self.settings.autocast():
                features = self.model.encode_image(pixels.to(self.settings.torch_device))
            rows.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(rows)

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        rows = []
        for start in range(0, len(texts), self.batch_size):
            ids = self.tokenize(texts[start : start + self.batch_size]).to(self.settings.torch_device)
            with self.settings.autocast():
                features = self.model.encode_text(ids)
            rows.append(F.normalize(features.float(), dim=-1).cpu())
        return torch.cat(rows)


def _plan(settings: BenchSettings) -> dict:
    if settings.smoke:
        return {"images": 8, "texts": 16, "batch": 4, "workers": 0}
    if settings.on_gpu:
        return {
            "images": 512,
            "texts": 8192,
            "batch": settings.batch_or(32, 256),
            "workers": min(8, os.cpu_count() or 1),
        }
    return {"images": 128, "texts": 512, "batch": settings.batch_or(32, 256), "workers": min(4, os.cpu_count() or 1)}


def _cache_effect(model_dir: Path, config: EncoderConfig, paths: list[Path], texts: list[str], repeats: int) -> dict:
    """Median (first run, second run) seconds with a fresh cache folder each repetition."""
    times: dict[str, list[float]] = {"images_first": [], "images_second": [], "texts_first": [], "texts_second": []}
    with tempfile.TemporaryDirectory(prefix="fgclip-cache-bench-") as root:
        for repeat in range(repeats):
            encoder = Encoder.load(model_dir, config, EmbeddingCache(Path(root) / str(repeat)))
            for kind, run in (
                ("images", lambda e=encoder: e.images(paths)),
                ("texts", lambda e=encoder: e.texts(texts)),
            ):
                for which in ("first", "second"):
                    started = time.perf_counter()
                    run()
                    times[f"{kind}_{which}"].append(time.perf_counter() - started)
            if encoder.cache.hits != 2:
                raise RuntimeError(f"expected 2 cache hits, got {encoder.cache.summary()}")
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def run(settings: BenchSettings) -> Report:
    plan, device = _plan(settings), settings.torch_device
    shape = get_shape(settings.shape_name())
    config = shape.config()
    texts = region_texts(plan["texts"], settings.seed)
    with tempfile.TemporaryDirectory(prefix="fgclip-encoding-bench-") as root:
        model_dir = Path(root) / "model"
        save_with_processors(build_fgclip(shape, settings.seed).eval(), model_dir)
        data = generate(
            Path(root) / "images",
            plan["images"],
            settings.seed,
            max(32, 2 * shape.image_size),
            heldout_fraction=0.01,
            progress=settings.progress,
        )
        paths = sorted((data.root / "images").glob("*.png"))
        encoder_config = EncoderConfig(
            batch_size=plan["batch"], device=str(device), precision="auto", num_workers=plan["workers"]
        )
        encoder = Encoder.load(model_dir, encoder_config)  # no cache: every call encodes
        reference = OpenCLIPEncoder(
            build_open_clip_twin(config, settings.seed).eval().to(device),
            encoder.transform,
            settings,
            plan["batch"],
            plan["workers"],
        )
        ours_model, twin = encoder.model, reference.model
        pixels = torch.randn(plan["batch"], 3, shape.image_size, shape.image_size, device=device)
        from open_clip.tokenizer import tokenize

        ids77 = tokenize(texts[: plan["batch"]]).to(device)

        def model_only(function, *inputs):
            def call():
                with torch.no_grad(), settings.autocast():
                    function(*inputs)

            return call

        candidates = {
            "images_encoder": lambda: encoder.images(paths),
            "images_open_clip": lambda: reference.images(paths),
            "texts_encoder": lambda: encoder.texts(texts),
            "texts_open_clip": lambda: reference.texts(texts),
            "image_model_fgclip": model_only(ours_model.encode_image, pixels),
            "image_model_open_clip": model_only(twin.encode_image, pixels),
            "text77_model_fgclip": model_only(ours_model.encode_text, ids77),
            "text77_model_open_clip": model_only(twin.encode_text, ids77),
        }
        timings = time_interleaved(candidates, device, settings.warmup_or(1), settings.repeats_or(5))
        cache = _cache_effect(model_dir, encoder_config, paths, texts, settings.repeats_or(3))
    median = {name: timing.median for name, timing in timings.items()}
    device_name = describe_device(device)["name"]
    figures = [
        Figure(
            "eval image encoding: Encoder / open_clip (decode + encode, same loader)",
            paired_ratio(timings["images_encoder"], timings["images_open_clip"]),
            "x",
            ("<=", 1.05),
        ),
        Figure(
            "eval text encoding: Encoder / open_clip (tokenise + encode)",
            paired_ratio(timings["texts_encoder"], timings["texts_open_clip"]),
            "x",
            ("<=", 1.05),
            "ours pads each batch to its longest text, open_clip to 77",
        ),
        Figure(
            "image tower only: FG-CLIP encode_image / open_clip encode_image",
            paired_ratio(timings["image_model_fgclip"], timings["image_model_open_clip"]),
            "x",
            ("<=", 1.05),
        ),
        Figure(
            "text tower only, 77 tokens: FG-CLIP encode_text / open_clip encode_text",
            paired_ratio(timings["text77_model_fgclip"], timings["text77_model_open_clip"]),
            "x",
            ("<=", 1.05),
        ),
        Figure("Encoder images/s", len(paths) / median["images_encoder"], "images/s", None, device_name),
        Figure("Encoder texts/s", len(texts) / median["texts_encoder"], "texts/s", None, device_name),
        Figure("embedding cache: second run / first run, images", cache["images_second"] / cache["images_first"], "x"),
        Figure("embedding cache: second run / first run, texts", cache["texts_second"] / cache["texts_first"], "x"),
    ]
    details = {
        "plan": plan,
        "shape": shape.name,
        "images": len(paths),
        "texts": len(texts),
        "timings": {name: t.as_dict() for name, t in timings.items()},
        "cache_seconds": cache,
        "precision": encoder.precision_name,
    }
    return Report(NAME, figures, details, describe_device(device), settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
