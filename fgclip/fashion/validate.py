"""Validation scores for model selection during finetuning (computed on a validation split, never a test split).

* Cross-modal retrieval: every image against every product text, R@1/5/10 both ways (image -> text: a hit
  if the product's text ranks in the top K; text -> image: if any image of the product does); the score
  is the mean of the six recalls.
* Text-guided retrieval: per category, composed queries against the gallery (reference image left out),
  R@10 and R@50; the score is their mean over categories.
Embeddings are the model's own (`encode_image_fused`, `encode_text_fused`, `compose`); the full protocols
(sample-100 etc.) are `eval.fashion`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fgclip.fashion.data import ImageError, ImageRef, Products, Triplets, load_image
from fgclip.fashion.modeling import FashionFINEModel
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.transforms import image_transform


def _device_dtype(model: FashionFINEModel) -> tuple[torch.device, torch.dtype]:
    parameter = next(model.parameters())
    return parameter.device, parameter.dtype


def _pixels(model: FashionFINEModel, refs: Sequence[ImageRef]) -> tuple[torch.Tensor, list[bool]]:
    transform = image_transform(model.image_size)
    device, dtype = _device_dtype(model)
    images, ok = [], []
    for ref in refs:
        try:
            images.append(transform(load_image(ref)))
            ok.append(True)
        except ImageError:
            images.append(torch.zeros(3, model.image_size, model.image_size))
            ok.append(False)
    return torch.stack(images).to(device, dtype), ok


@torch.no_grad()
def encode_images(
    model: FashionFINEModel, refs: Sequence[ImageRef], batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, D)` float32 retrieval embeddings and `(N,)` bool: which images could be read."""
    parts, ok = [], []
    for start in range(0, len(refs), batch_size):
        pixels, read = _pixels(model, refs[start : start + batch_size])
        parts.append(model.encode_image_fused(pixels).float().cpu())
        ok += read
    return torch.cat(parts), torch.tensor(ok, dtype=torch.bool)


@torch.no_grad()
def encode_texts(
    model: FashionFINEModel, tokenizer: FGCLIPTokenizer, texts: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    device, _ = _device_dtype(model)
    parts = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size]))
        parts.append(
            model.encode_text_fused(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)).float().cpu()
        )
    return torch.cat(parts)


def _recalls(ranks: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    return {k: (ranks < k).float().mean().item() for k in ks}


def _best_rank(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Rank (0 = first) of each row's best-scoring positive; ties count against it."""
    best = scores.masked_fill(~positives, float("-inf")).max(dim=1).values
    return ((scores >= best[:, None]) & ~positives).sum(dim=1)


def validate_retrieval(
    model: FashionFINEModel, products: Products, tokenizer: FGCLIPTokenizer | None = None, batch_size: int = 64
) -> dict:
    """Full-gallery R@1/5/10 both ways on `products` and their mean (`score`)."""
    tokenizer = tokenizer or FGCLIPTokenizer()
    groups = products.by_product()
    names = list(groups)
    texts = [products.rows[rows[0]].text for rows in groups.values()]
    image_rows = [row for rows in groups.values() for row in rows]
    position = {name: i for i, name in enumerate(names)}
    owner = torch.tensor([position[products.rows[row].product] for row in image_rows])
    images, ok = encode_images(model, [products.rows[row].image for row in image_rows], batch_size)
    images, owner = images[ok], owner[ok]
    text_embeds = encode_texts(model, tokenizer, texts)
    scores = images @ text_embeds.T
    i2t = _best_rank(scores, owner[:, None] == torch.arange(len(names))[None, :])
    t2i = _best_rank(scores.T, torch.arange(len(names))[:, None] == owner[None, :])
    has_image = (torch.arange(len(names))[:, None] == owner[None, :]).any(dim=1)
    metrics = {
        **{f"i2t_r{k}": v for k, v in _recalls(i2t, (1, 5, 10)).items()},
        **{f"t2i_r{k}": v for k, v in _recalls(t2i[has_image], (1, 5, 10)).items()},
    }
    metrics["score"] = sum(metrics.values()) / len(metrics)
    metrics.update(num_images=int(ok.sum()), num_products=len(names))
    return metrics


@torch.no_grad()
def validate_composition(
    model: FashionFINEModel, triplets: Triplets, tokenizer: FGCLIPTokenizer | None = None, batch_size: int = 64
) -> dict:
    """Per-category R@10/R@50 of the model's composed queries (reference excluded) and their mean (`score`)."""
    tokenizer = tokenizer or FGCLIPTokenizer()
    device, _ = _device_dtype(model)
    metrics: dict[str, float] = {}
    averages = []
    for category, gallery in sorted(triplets.galleries.items()):
        items = [t for t in triplets.items if t.category == category]
        if not items:
            continue
        names = list(gallery)
        gallery_embeds, ok = encode_images(model, [gallery[n] for n in names], batch_size)
        gallery_embeds[~ok] = 0.0
        queries = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            pixels, _ = _pixels(model, [t.reference for t in chunk])
            tokens = tokenizer([t.text for t in chunk])
            queries.append(
                model.compose(pixels, tokens["input_ids"].to(device), tokens["attention_mask"].to(device)).float().cpu()
            )
        scores = torch.cat(queries) @ gallery_embeds.T
        index = {name: i for i, name in enumerate(names)}
        for row, item in enumerate(items):
            if item.reference_name in index and item.reference_name != item.target_name:
                scores[row, index[item.reference_name]] = float("-inf")
        kept = [row for row, item in enumerate(items) if item.target_name in index]
        positives = torch.zeros(len(kept), len(names), dtype=torch.bool)
        positives[torch.arange(len(kept)), torch.tensor([index[items[r].target_name] for r in kept])] = True
        ranks = _best_rank(scores[kept], positives)
        recalls = _recalls(ranks, (10, 50))
        metrics.update({f"{category}_r10": recalls[10], f"{category}_r50": recalls[50]})
        averages.append((recalls[10] + recalls[50]) / 2)
    metrics["score"] = sum(averages) / max(len(averages), 1)
    return metrics
