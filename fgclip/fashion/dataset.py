"""Training samples and batches for the Fashion-FINE finetuning commands.

Cross-modal retrieval: one sample per PRODUCT per epoch (as FashionSAP / Fashion-FINE train), an image of
it drawn with the sample's seed, and its text; so a batch never holds one product twice. Text-guided
retrieval: one sample per triplet (reference image, modification text, target image).

An image that cannot be decoded is never fatal: the sample falls back to another image of the product
(or the next triplet) and reports what it passed over, which the trainer counts (`fgclip.data.accounting`),
as it counts pretraining records: at the sample's first sighting (the sampler says when), so an item
is counted once, not once per epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

import torch
from torch.utils.data import Dataset

from fgclip.data.schema import BadRecord
from fgclip.errors import UserError
from fgclip.fashion.data import ImageError, Products, Triplets, load_image
from fgclip.tokenizer import FGCLIPTokenizer
from fgclip.transforms import image_transform


@dataclass
class FashionSample:
    pixel_values: torch.Tensor
    text: str
    group: int  # product index (retrieval) or target image id (text-guided)
    reference_pixel_values: torch.Tensor | None = None
    reference_id: int = -1
    skipped: list[BadRecord] = field(default_factory=list)
    first_sighting: bool = True


@dataclass
class FashionBatch:
    """B samples: `(B, 3, S, S)` images, `(B, L)` token ids and mask, `(B,)` groups; for text-guided
    retrieval also the `(B, 3, S, S)` reference images and their `(B,)` image ids."""

    pixel_values: torch.Tensor
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    groups: torch.Tensor
    reference_pixel_values: torch.Tensor | None = None
    reference_ids: torch.Tensor | None = None
    seen: int = 0  # samples the run sees for the first time (for the record accounting)
    bad: list[BadRecord] = field(default_factory=list)  # what those samples passed over

    @property
    def num_images(self) -> int:
        return self.pixel_values.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> FashionBatch:
        """The batch on `device`; `dtype` casts only the images."""
        moved = {item.name: getattr(self, item.name) for item in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(
                    device, dtype=dtype if name.endswith("pixel_values") and dtype else None, non_blocking=True
                )
        return FashionBatch(**moved)

    def model_inputs(self) -> dict:
        """Keyword arguments of `FashionFINEModel.forward` (also what a DeepSpeed engine is called with)."""
        inputs = {"pixel_values": self.pixel_values, "input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.reference_pixel_values is not None:
            inputs["reference_pixel_values"] = self.reference_pixel_values
        return inputs


def _key(key) -> tuple[int, int, bool]:
    """`(index, sample_seed, first_sighting)` of an `EpochBatchSampler` key (a plain int is its own seed)."""
    return (*key, True)[:3] if isinstance(key, tuple) else (int(key), int(key), True)


class ProductDataset(Dataset):
    """One item per product (keys `(index, sample_seed)` from `EpochBatchSampler`, or plain ints)."""

    def __init__(self, products: Products, image_size: int, max_substitutes: int = 32):
        self.products = products
        self.groups = list(products.by_product().values())
        self.transform = image_transform(image_size)
        self.max_substitutes = max_substitutes

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, key) -> FashionSample:
        index, seed, first = _key(key)
        rng = random.Random(seed)
        skipped: list[BadRecord] = []
        for attempt in range(self.max_substitutes + 1):
            position = (index + attempt) % len(self.groups)
            rows = list(self.groups[position])
            rng.shuffle(rows)
            for row_index in rows:  # another image of the product before another product
                row = self.products.rows[row_index]
                try:
                    image = load_image(row.image)
                except ImageError as error:
                    skipped.append(BadRecord(row.source, str(error), error.kind))
                    continue
                return FashionSample(self.transform(image), row.text, position, skipped=skipped, first_sighting=first)
        examples = "; ".join(f"{bad.source}: {bad.reason}" for bad in skipped[:3])
        raise UserError(f"{len(skipped)} images in a row from product {index} are unusable ({examples})")


class TripletDataset(Dataset):
    """One item per text-guided triplet; image ids are shared by equal images across triplets."""

    def __init__(self, triplets: Triplets, image_size: int, max_substitutes: int = 32):
        self.items = triplets.items
        self.transform = image_transform(image_size)
        self.max_substitutes = max_substitutes
        self.image_ids: dict[str, int] = {}
        for item in self.items:
            for ref in (item.reference, item.target):
                self.image_ids.setdefault(ref.key, len(self.image_ids))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key) -> FashionSample:
        index, _, first = _key(key)
        skipped: list[BadRecord] = []
        for attempt in range(self.max_substitutes + 1):
            item = self.items[(index + attempt) % len(self.items)]
            try:
                reference, target = load_image(item.reference), load_image(item.target)
            except ImageError as error:
                skipped.append(BadRecord(item.source, str(error), error.kind))
                continue
            return FashionSample(
                self.transform(target),
                item.text,
                self.image_ids[item.target.key],
                reference_pixel_values=self.transform(reference),
                reference_id=self.image_ids[item.reference.key],
                skipped=skipped,
                first_sighting=first,
            )
        examples = "; ".join(f"{bad.source}: {bad.reason}" for bad in skipped[:3])
        raise UserError(f"{len(skipped)} triplets in a row from index {index} are unusable ({examples})")


class FashionCollator:
    """Stacks samples and tokenises their texts (77-token path, padded to the batch's longest)."""

    def __init__(self, tokenizer: FGCLIPTokenizer | None = None):
        self.tokenizer = tokenizer

    def __call__(self, samples: list[FashionSample]) -> FashionBatch:
        if self.tokenizer is None:  # built in the worker that first needs it
            self.tokenizer = FGCLIPTokenizer()
        tokens = self.tokenizer([s.text for s in samples])
        composed = samples[0].reference_pixel_values is not None
        return FashionBatch(
            pixel_values=torch.stack([s.pixel_values for s in samples]),
            input_ids=tokens["input_ids"],
            attention_mask=tokens["attention_mask"],
            groups=torch.tensor([s.group for s in samples], dtype=torch.long),
            reference_pixel_values=torch.stack([s.reference_pixel_values for s in samples]) if composed else None,
            reference_ids=torch.tensor([s.reference_id for s in samples], dtype=torch.long) if composed else None,
            seen=sum(s.first_sighting for s in samples),
            bad=[bad for s in samples if s.first_sighting for bad in s.skipped],
        )
