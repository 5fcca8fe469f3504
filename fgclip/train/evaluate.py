"""A small held-out evaluation for training runs (the embedded default uses it after each stage):

* FG-OVD-style region top-1: each box's embedding against its caption + its hard negatives (cleaned by
  `fgclip.data.schema.clean_negatives`; a box without any is not scored), scored by
  `fgclip.metrics.region_top1_hits`, the one rule `eval.fgovd` also uses (a tie is a hit, as the public FG-OVD
  evaluation counts it); chance is the mean of 1 / (1 + K) over the boxes (1/11 with 10 negatives).
* Image-text retrieval R@1 with the long captions, both directions.

A record identical to an earlier one (the readers' record identity, as the trainer counts duplicates) is
evaluated once and counted (`duplicate_records`), as the evaluation commands do: a repeated image would
otherwise compete with itself for its own caption, and a repeated region would count twice.
Everything is computed through `FGCLIPModel.encode_*`; the full FG-OVD benchmark lives in `eval/fgovd.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fgclip.data.readers import ImageError, LoadedRecord, open_sources
from fgclip.data.schema import clean_negatives
from fgclip.metrics import candidate_scores, region_chance, region_top1_hits
from fgclip.model import FGCLIPModel
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.transforms import image_transform


@torch.no_grad()
def encode_texts(
    model: FGCLIPModel, tokenizer: FGCLIPTokenizer, texts: Sequence[str], long: bool, batch_size: int = 256
) -> torch.Tensor:
    """`(N, D)` normalised embeddings of `texts` (short or long path)."""
    device = next(model.parameters()).device
    parts = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(list(texts[start : start + batch_size]), long=long)
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        parts.append(model.encode_text(ids, mask, long=long).float())
    return torch.cat(parts) if parts else torch.zeros(0, model.config.projection_dim)


@torch.no_grad()
def evaluate_heldout(
    model: FGCLIPModel, record_files: Sequence[str | Path], batch_size: int = 64, progress: bool = False
) -> dict:
    """Region top-1 (vs 1 positive + hard negatives) and long-caption image-text R@1 on `record_files`."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    tokenizer = FGCLIPTokenizer()
    transform = image_transform(model.image_size)
    source = open_sources(record_files)
    identities = np.concatenate([part.identities for part in source.sources]) if source.sources else []
    seen: set[int] = set()
    image_embeds, long_captions, region_embeds, candidates, skipped, duplicates = [], [], [], [], 0, 0

    def flush(pixels: list, boxes: list) -> None:
        if not pixels:
            return
        output = model(torch.stack(pixels).to(device, dtype), boxes=[b.to(device) for b in boxes])  # one image pass
        image_embeds.append(output.image_embeds.float())
        region_embeds.append(output.region_embeds.float())
        pixels.clear()
        boxes.clear()

    pixels, boxes = [], []
    for index in tqdm(range(len(source)), desc="evaluating", disable=not progress):
        if int(identities[index]) in seen:
            duplicates += 1
            continue
        seen.add(int(identities[index]))
        loaded = source.load(index)
        if not isinstance(loaded, LoadedRecord):
            skipped += 1
            continue
        try:
            image = loaded.open_image()
        except ImageError:
            skipped += 1
            continue
        record = loaded.record
        negatives = [clean_negatives(r.caption, r.hard_negatives) for r in record.regions]
        scored = [(region, kept) for region, kept in zip(record.regions, negatives) if kept]
        pixels.append(transform(image))
        boxes.append(torch.tensor([r.bbox for r, _ in scored], dtype=torch.float32).reshape(-1, 4))
        long_captions.append(record.long_caption)
        candidates.extend([r.caption, *kept] for r, kept in scored)
        if len(pixels) == batch_size:
            flush(pixels, boxes)
    flush(pixels, boxes)
    if not image_embeds:
        raise ValueError(f"no usable record in {', '.join(str(f) for f in record_files)}")

    images = torch.cat(image_embeds)
    regions = torch.cat(region_embeds)
    texts = encode_texts(model, tokenizer, long_captions, long=True)
    similarity = images @ texts.T
    targets = torch.arange(len(images), device=similarity.device)
    metrics = {
        "image_to_text_r1": (similarity.argmax(dim=1) == targets).float().mean().item(),
        "text_to_image_r1": (similarity.argmax(dim=0) == targets).float().mean().item(),
        "num_images": len(images),
        "skipped_records": skipped,
        "duplicate_records": duplicates,
    }
    if candidates:
        distinct = list(dict.fromkeys(text for row in candidates for text in row))
        row_of = {text: row for row, text in enumerate(distinct)}
        text_embeds = encode_texts(model, tokenizer, distinct, long=False)
        scores = candidate_scores(regions, text_embeds, [[row_of[text] for text in row] for row in candidates])
        top1 = region_top1_hits(scores).float().mean().item()
        chance = region_chance([len(row) - 1 for row in candidates])
        metrics.update(
            region_top1=top1, num_regions=len(candidates), chance=chance, region_top1_over_chance=top1 / chance
        )
    else:
        metrics.update(region_top1=None, num_regions=0, chance=None, region_top1_over_chance=None)
    model.train(was_training)
    return metrics
