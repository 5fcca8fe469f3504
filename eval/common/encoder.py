"""One loader and batched encoder for every encoder benchmark.

`Encoder.load(DIR)` loads any folder `FGCLIPModel.from_pretrained` accepts (this project's, stock CLIP,
official FG-CLIP), the tokenizer the folder carries and FG-CLIP's image transform, picks the device and
autocast precision, and encodes texts, images and regions in batches under `torch.no_grad` with a
progress bar. Results are float32, L2-normalised, on the CPU, and cached on disk (`EmbeddingCache`).
All pooling and projection happens in the model; this module only batches and caches.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from eval.common.cache import (
    EmbeddingCache,
    files_digest,
    model_fingerprint,
    texts_digest,
)
from eval.common.cli import cache_dir
from eval.common.fusion import FusionSettings, attention_pool, fuse, text_token_mask
from eval.common.images import iter_image_batches
from eval.common.options import CacheOptions, EncoderConfig
from fgclip.errors import UserError
from fgclip.fashion import FashionFINEConfig, FashionFINEModel
from fgclip.fashion.modeling import model_type_of
from fgclip.model import FGCLIPModel
from fgclip.model.conversion import detect_checkpoint_kind
from fgclip.runtime import autocast, autocast_dtype, resolve_device
from fgclip.tokenizer import LONG_LENGTH, SHORT_LENGTH, FGCLIPTokenizer
from fgclip.transforms import image_transform


@dataclass
class EncodedImages:
    """One row per requested image (or per box, for regions); rows whose image failed are zeros.

    embeddings: `(N, D)` float32, L2-normalised where `ok`.
    ok: `(N,)` bool.
    failures: images that could not be used, by reason (`missing_image`, `unreadable_image`).
    """

    embeddings: torch.Tensor
    ok: torch.Tensor
    failures: dict[str, int] = field(default_factory=dict)


def load_model(directory: Path, device: torch.device) -> tuple[FGCLIPModel, str]:
    """The model (eval mode, on `device`) and its checkpoint kind; one-line `UserError` otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"--model {directory} is not a folder")
    try:
        if model_type_of(directory) == FashionFINEConfig.model_type:  # evaluated with its trained parts
            return FashionFINEModel.from_pretrained(str(directory)).eval().to(device), "fashion-fine"
        kind = detect_checkpoint_kind(directory)
        model = FGCLIPModel.from_pretrained(str(directory))
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"cannot load a model from {directory}: {error}") from error
    return model.eval().to(device), kind


def _check_finite(embeddings: torch.Tensor, what: str) -> None:
    if not torch.isfinite(embeddings).all():
        raise UserError(f"the model produced non-finite {what} embeddings (try --precision fp32)")


def _boxes_digest(boxes: list[torch.Tensor]) -> str:
    hasher = hashlib.sha256()
    for image_boxes in boxes:
        hasher.update(str(len(image_boxes)).encode())
        hasher.update(image_boxes.to(torch.float32).contiguous().numpy().tobytes())
    return hasher.hexdigest()


class Encoder:
    """Batched, cached access to `FGCLIPModel.encode_*` for lists of texts, images and boxes."""

    def __init__(
        self,
        model: FGCLIPModel,
        tokenizer: FGCLIPTokenizer,
        model_dir: Path,
        config: EncoderConfig,
        cache: EmbeddingCache | None = None,
        checkpoint_kind: str = "fgclip",
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.model_dir = Path(model_dir)
        self.config = config
        self.cache = cache if cache is not None else EmbeddingCache(None)
        self.checkpoint_kind = checkpoint_kind
        self.device = next(model.parameters()).device
        self.autocast_dtype = autocast_dtype(config.precision, self.device)
        self.transform = image_transform(model.image_size)
        self.fingerprint = model_fingerprint(self.model_dir)
        self._truncated: dict[int, set[str]] = {SHORT_LENGTH: set(), LONG_LENGTH: set()}

    @classmethod
    def load(
        cls, model_dir: str | Path, config: EncoderConfig | None = None, cache: EmbeddingCache | None = None
    ) -> Encoder:
        config = config or EncoderConfig()
        device = resolve_device(config.device)
        autocast_dtype(config.precision, device)  # fail on a bad combination before loading weights
        model, kind = load_model(Path(model_dir), device)
        return cls(model, FGCLIPTokenizer.from_pretrained(model_dir), Path(model_dir), config, cache, kind)

    @classmethod
    def from_options(cls, model: Path, config: EncoderConfig, cache: CacheOptions | None = None) -> Encoder:
        """From a command's parsed options (`eval.common.options`); no cache when `cache` is None."""
        return cls.load(model, config, EmbeddingCache(cache_dir(cache)) if cache is not None else None)

    # ------------------------------------------------------------------ helpers
    @property
    def dim(self) -> int:
        return self.model.config.projection_dim

    @property
    def precision_name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]

    def _autocast(self):
        return autocast(self.device, self.autocast_dtype)

    def _key(self, kind: str, **parts) -> str:
        return self.cache.key(model=self.fingerprint, kind=kind, precision=self.precision_name, **parts)

    def truncated_texts(self) -> dict[int, int]:
        """Token limit -> how many distinct texts encoded so far were longer than it (and cut to it)."""
        return {limit: len(texts) for limit, texts in self._truncated.items() if texts}

    def describe(self) -> dict:
        """What results.json records about the model run."""
        return {
            "checkpoint_kind": self.checkpoint_kind,
            "device": str(self.device),
            "precision": self.precision_name,
            "image_size": self.model.image_size,
            "embedding_dim": self.dim,
        }

    # ------------------------------------------------------------------ texts
    def texts(self, texts: list[str], long: bool = False, fusion: FusionSettings | None = None) -> torch.Tensor:
        """`(N, D)` embeddings of `texts` (77-token path, or 248 with `long`); duplicates encoded once.

        With `fusion`, Fashion-FINE's global + local text embedding (`eval.common.fusion`).
        """
        unique = list(dict.fromkeys(texts))
        if not unique:
            return torch.zeros(0, self.dim)
        # Counted on every call, cached or not: a cut caption changes what the number measures.
        cut = self.tokenizer.truncated(unique, long=long)
        self._truncated[LONG_LENGTH if long else SHORT_LENGTH].update(t for t, is_cut in zip(unique, cut) if is_cut)
        key = self._key("text", long=long, fusion=fusion.as_dict() if fusion else None, texts=texts_digest(unique))
        cached = self.cache.load(key)
        if cached is not None:
            embeddings = cached["embeddings"]
        else:
            embeddings = self._encode_texts(unique, long, fusion)
            self.cache.save(key, {"embeddings": embeddings}, {"kind": "text", "long": long, "count": len(unique)})
        row = {text: index for index, text in enumerate(unique)}
        return embeddings[[row[text] for text in texts]]

    @torch.no_grad()
    def _encode_texts(self, texts: list[str], long: bool, fusion: FusionSettings | None) -> torch.Tensor:
        # Sorting by length keeps each padded batch short (long captions vary a lot in length).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        embeddings = torch.zeros(len(texts), self.dim)
        size = self.config.batch_size
        for start in tqdm(range(0, len(order), size), desc="encode texts", unit="batch", leave=False):
            rows = order[start : start + size]
            batch = self.tokenizer([texts[i] for i in rows], long=long)
            input_ids = batch["input_ids"].to(self.device)
            attention_mask = batch["attention_mask"].to(self.device)
            with self._autocast():
                if getattr(fusion, "learned", False):  # a Fashion-FINE folder's trained pooling (learned_fusion.py)
                    embeddings[rows] = self.model.encode_text_fused(input_ids, attention_mask).float().cpu()
                    continue
                global_embeds = self.model.encode_text(input_ids, attention_mask, long=long)
                if fusion is not None:
                    tokens = self.model.encode_text_tokens(input_ids, attention_mask, long=long)
            global_embeds = F.normalize(global_embeds.float(), dim=-1)
            if fusion is not None:
                mask = text_token_mask(
                    input_ids[:, : tokens.shape[1]], attention_mask[:, : tokens.shape[1]], self.model.eos_token_id
                )
                local = attention_pool(global_embeds, tokens, mask, fusion.temperature)
                global_embeds = fuse(global_embeds, local, fusion.text_ratio)
            embeddings[rows] = global_embeds.cpu()
        _check_finite(embeddings, "text")
        return embeddings

    # ------------------------------------------------------------------ images
    def images(self, paths: list[Path], fusion: FusionSettings | None = None) -> EncodedImages:
        """Global image embeddings, one row per path (duplicates encoded once); fusion as for texts."""
        paths = [Path(p) for p in paths]
        unique = list(dict.fromkeys(paths))
        key = self._key("image", fusion=fusion.as_dict() if fusion else None, images=files_digest(unique))
        encoded = self._cached_images(
            key, unique, lambda pixels, _: self._image_rows(pixels, fusion), len(unique), "image"
        )
        row = {path: index for index, path in enumerate(unique)}
        index = [row[path] for path in paths]
        failures = dict(encoded.failures)
        return EncodedImages(encoded.embeddings[index], encoded.ok[index], failures)

    def _image_rows(self, pixels: torch.Tensor, fusion: FusionSettings | None) -> torch.Tensor:
        if getattr(fusion, "learned", False):  # a Fashion-FINE folder's trained pooling (learned_fusion.py)
            return self.model.encode_image_fused(pixels)
        global_embeds = F.normalize(self.model.encode_image(pixels).float(), dim=-1)
        if fusion is None:
            return global_embeds
        dense = self.model.encode_dense(pixels).float().flatten(1, 2)  # (B, H*W, D)
        local = attention_pool(global_embeds, dense, None, fusion.temperature)
        return fuse(global_embeds, local, fusion.image_ratio)

    def regions(self, paths: list[Path], boxes: list[torch.Tensor]) -> EncodedImages:
        """Region embeddings (`model.encode_regions`), one row per box, in the order of `boxes`.

        paths: one per image (distinct); boxes: per image a `(n_i, 4)` tensor of normalised
        `[x1, y1, x2, y2]`. Rows of boxes whose image failed are zeros with `ok` False.
        """
        paths = [Path(p) for p in paths]
        if len(paths) != len(boxes):
            raise ValueError("regions(): one boxes tensor per image path")
        offsets = [0]
        for image_boxes in boxes:
            offsets.append(offsets[-1] + len(image_boxes))
        key = self._key("regions", images=files_digest(paths), boxes=_boxes_digest(boxes))

        def rows(pixels: torch.Tensor, indices: list[int]) -> torch.Tensor:
            return self.model.encode_regions(pixels, [boxes[i].to(self.device) for i in indices]).float()

        def row_index(indices: list[int]) -> list[int]:
            return [row for i in indices for row in range(offsets[i], offsets[i + 1])]

        return self._cached_images(key, paths, rows, offsets[-1], "region", row_index)

    def dense(self, path: Path) -> torch.Tensor:
        """`(H, W, D)` normalised patch-grid embeddings of one image (not cached: one image is cheap)."""
        failures: Counter = Counter()
        for _, pixels in iter_image_batches([Path(path)], self.transform, 1, 0, failures):
            with torch.no_grad(), self._autocast():
                dense = self.model.encode_dense(pixels.to(self.device))
            dense = F.normalize(dense.float(), dim=-1)[0].cpu()
            _check_finite(dense, "dense")
            return dense
        raise UserError(f"image {path} is {'missing' if failures['missing_image'] else 'unreadable'}")

    @torch.no_grad()
    def _cached_images(self, key, paths, compute_rows, num_rows, what, row_index=None) -> EncodedImages:
        """Encode `paths` in batches (or load from the cache); `compute_rows(pixels, indices)` gives the
        rows of a batch and `row_index(indices)` where they go (default: one row per image)."""
        cached = self.cache.load(key)
        if cached is not None:
            failures = {
                name.removeprefix("failures."): int(t.item())
                for name, t in cached.items()
                if name.startswith("failures.")
            }
            return EncodedImages(cached["embeddings"], cached["ok"].bool(), failures)
        row_index = row_index or (lambda indices: list(indices))
        embeddings = torch.zeros(num_rows, self.dim)
        ok = torch.zeros(num_rows, dtype=torch.bool)
        failures: Counter = Counter()
        progress = tqdm(total=len(paths), desc=f"encode {what}s", unit="img", leave=False)
        batches = iter_image_batches(paths, self.transform, self.config.batch_size, self.config.num_workers, failures)
        for indices, pixels in batches:
            with self._autocast():
                values = compute_rows(pixels.to(self.device), indices)
            rows = row_index(indices)
            embeddings[rows] = F.normalize(values.float(), dim=-1).cpu()
            ok[rows] = True
            progress.update(len(indices))
        progress.close()
        _check_finite(embeddings, what)
        failures = {name: count for name, count in failures.items() if count}
        tensors = {"embeddings": embeddings, "ok": ok.to(torch.uint8)}
        tensors.update({f"failures.{name}": torch.tensor(count) for name, count in failures.items()})
        self.cache.save(key, tensors, {"kind": what, "images": len(paths)})
        return EncodedImages(embeddings, ok, failures)
