"""Evaluating Fashion-FINE folders (`fgclip.fashion`) with what they learned: their global + local pooling and,
for text-guided retrieval, their trained composition.

`eval.common.encoder.load_model` loads a Fashion-FINE folder as a `FashionFINEModel` (a subclass of
`FGCLIPModel`, so every `encode_*` works as for plain towers). `LearnedFusion` is the embedding choice that
makes the encoder call the model's own `encode_image_fused` / `encode_text_fused` instead of the
parameter-free pooling of `eval.common.fusion`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from eval.common.encoder import Encoder
from eval.common.images import iter_image_batches
from fgclip.fashion import FashionFINEModel


@dataclass(frozen=True)
class LearnedFusion:
    """The embedding a Fashion-FINE folder was trained with (ratios and composition read from its config)."""

    image_ratio: float
    text_ratio: float
    local_pooling: bool
    composition: str  # "sum" (zero-shot) or "fusion" (trained by the text-guided finetuning)
    learned: bool = True  # what `Encoder` looks for

    @classmethod
    def of(cls, model: FashionFINEModel) -> LearnedFusion:
        config = model.config
        return cls(config.image_local_ratio, config.text_local_ratio, config.local_pooling, config.query_composition)

    def as_dict(self) -> dict:
        return {**asdict(self), "pooling": "the folder's trained attention pooling (Fashion-FINE)"}


def learned_fusion(encoder: Encoder) -> LearnedFusion | None:
    """The folder's learned embedding, or None for plain towers."""
    return LearnedFusion.of(encoder.model) if isinstance(encoder.model, FashionFINEModel) else None


@torch.no_grad()
def composed_queries(encoder: Encoder, references: list[Path], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """`(N, D)` trained compositions of reference image i and text i (`FashionFINEModel.compose`), and `(N,)`
    bool: which references could be read. Not cached (each is a pair)."""
    model = encoder.model
    queries = torch.zeros(len(references), encoder.dim)
    ok = torch.zeros(len(references), dtype=torch.bool)
    failures: Counter = Counter()
    batches = iter_image_batches(
        references, encoder.transform, encoder.config.batch_size, encoder.config.num_workers, failures
    )
    for indices, pixels in batches:
        tokens = encoder.tokenizer([texts[i] for i in indices])
        with encoder._autocast():
            composed = model.compose(
                pixels.to(encoder.device),
                tokens["input_ids"].to(encoder.device),
                tokens["attention_mask"].to(encoder.device),
            )
        queries[indices] = composed.float().cpu()
        ok[indices] = True
    return queries, ok
