"""LLaVA conversation data (shared/spec/data-format.md section 3) for stages A and B.

Each record is rendered with the model's chat template (lmm_integration.conversation), its single
`<image>` placeholder is expanded to one token per image feature, and every token that is not part of an
assistant answer gets the label -100. Texts are tokenised when the dataset is made, so bad records are
counted and reported before training starts; images are read, padded to a square with the processor's
mean colour (LLaVA-1.5 `image_aspect_ratio pad`, with `fgclip.llava.boxes`, the project's one place for that
geometry) and preprocessed on demand.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from fgclip.errors import UserError
from fgclip.images import to_rgb
from fgclip.llava.boxes import ASPECT_MODES, expand_to_square, mean_background
from lmm_integration.conversation import IMAGE_TOKEN, ConversationError, llava_turns_to_messages

IGNORE_INDEX = -100


@dataclass
class SkipReport:
    """How many records were kept and why the others were skipped."""

    total: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        reasons = ", ".join(f"{count} {reason}" for reason, count in self.skipped.most_common()) or "none"
        return f"{self.kept} of {self.total} conversations kept; skipped: {reasons}"

    def to_json(self) -> dict:
        return {"total": self.total, "kept": self.kept, "skipped": dict(self.skipped)}


def read_conversations(path: str | Path) -> list[dict]:
    """A JSON list or a JSONL file of LLaVA conversation records."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"conversation file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is neither a JSON list nor JSONL: {error}") from error
    if not isinstance(records, list):
        raise UserError(f"{path} must hold a list of conversation records")
    return records


def image_token_count(processor, tower_config, select_strategy: str) -> int:
    """Image tokens per image, checked between the processor's arithmetic and the tower's patch grid."""
    size = (
        processor.image_processor.crop_size
        if getattr(processor.image_processor, "do_center_crop", False)
        else processor.image_processor.size
    )
    height, width = size.get("height", size.get("shortest_edge")), size.get("width", size.get("shortest_edge"))
    from_processor = (height // processor.patch_size) * (width // processor.patch_size)
    from_processor += processor.num_additional_image_tokens - (
        1 if processor.vision_feature_select_strategy == "default" else 0
    )
    from_tower = (tower_config.image_size // tower_config.patch_size) ** 2 + (0 if select_strategy == "default" else 1)
    if from_processor != from_tower:
        raise UserError(
            f"image token count after expansion ({from_processor}, from the processor) does not match the tower's "
            f"patch count ({from_tower}); rebuild the processor with lmm_integration.build"
        )
    return from_tower


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    image: Path


class ConversationDataset(Dataset):
    """Tokenised conversations with their images.

    Skipped (counted in `report`): records without an image, with an image but no `<image>` token, with
    more than one `<image>`, whose image file is missing, whose conversation is malformed, or with no
    answer token left within `model_max_length`.
    """

    def __init__(
        self,
        path: str | Path,
        processor,
        num_image_tokens: int,
        model_max_length: int = 2048,
        image_root: str | Path | None = None,
        image_aspect_ratio: str = "pad",
        max_bad_fraction: float = 0.5,
        show_progress: bool = True,
    ):
        if image_aspect_ratio not in ASPECT_MODES:
            raise UserError(f"image_aspect_ratio must be one of {ASPECT_MODES}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.num_image_tokens = num_image_tokens
        self.model_max_length = model_max_length
        self.image_aspect_ratio = image_aspect_ratio
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.background = mean_background(getattr(processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5))
        root = Path(image_root) if image_root else Path(path).parent
        self.report = SkipReport()
        self.examples: list[Example] = []
        records = read_conversations(path)
        for record in tqdm(records, desc="tokenising conversations", disable=not show_progress):
            self.report.total += 1
            example = self._prepare(record, root)
            if example is not None:
                self.examples.append(example)
                self.report.kept += 1
        if self.report.total == 0 or self.report.kept == 0:
            raise UserError(f"no usable conversation in {path} ({self.report.summary()})")
        if self.report.num_skipped > max_bad_fraction * self.report.total:
            raise UserError(f"too many bad records in {path}: {self.report.summary()} (limit {max_bad_fraction:.0%})")

    # ------------------------------------------------------------------ text
    def _prepare(self, record: dict, root: Path) -> Example | None:
        image = record.get("image") if isinstance(record, dict) else None
        if not image:
            self.report.skip("without an image")
            return None
        turns = record.get("conversations")
        human_text = (
            " ".join(turn.get("value", "") for turn in turns if isinstance(turn, dict))
            if isinstance(turns, list)
            else ""
        )
        placeholders = human_text.count(IMAGE_TOKEN)
        if placeholders == 0:
            self.report.skip("without an <image> token")
            return None
        if placeholders > 1:
            self.report.skip("with more than one <image> token")
            return None
        image_path = Path(image) if Path(image).is_absolute() else root / image
        if not image_path.is_file():
            self.report.skip("with a missing image file")
            return None
        try:
            messages = llava_turns_to_messages(turns, with_image=True)
        except ConversationError:
            self.report.skip("with a malformed conversation")
            return None
        encoded = self.tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        input_ids, labels = self._expand_image(list(encoded["input_ids"]), list(encoded["assistant_masks"]))
        if len(input_ids) > self.model_max_length:
            input_ids, labels = input_ids[: self.model_max_length], labels[: self.model_max_length]
            if input_ids.count(self.image_token_id) != self.num_image_tokens:
                self.report.skip("with the image cut by model_max_length")
                return None
        if all(label == IGNORE_INDEX for label in labels):
            self.report.skip("with no answer token within model_max_length")
            return None
        return Example(input_ids=input_ids, labels=labels, image=image_path)

    def _expand_image(self, ids: list[int], answer_mask: list[int]) -> tuple[list[int], list[int]]:
        """One `<image>` id -> `num_image_tokens` of them; labels -100 except on answers."""
        if ids.count(self.image_token_id) != 1:
            raise UserError(
                f"the chat template wrote {ids.count(self.image_token_id)} <image> tokens for one image; "
                "rebuild the model folder with lmm_integration.build"
            )
        position = ids.index(self.image_token_id)
        input_ids = ids[:position] + [self.image_token_id] * self.num_image_tokens + ids[position + 1 :]
        labels = [token if keep else IGNORE_INDEX for token, keep in zip(ids, answer_mask)]
        labels = labels[:position] + [IGNORE_INDEX] * self.num_image_tokens + labels[position + 1 :]
        if input_ids.count(self.image_token_id) != self.num_image_tokens:
            raise UserError(
                f"image token count after expansion ({input_ids.count(self.image_token_id)}) does not match the "
                f"tower's patch count ({self.num_image_tokens}): the chat template or tokenizer adds <image> tokens"
            )
        return input_ids, labels

    # ------------------------------------------------------------------ images
    def load_pixels(self, path: Path) -> torch.Tensor:
        """`(3, S, S)` pixels of one image, padded to a square first in `pad` mode."""
        try:
            with Image.open(path) as image:
                image = to_rgb(image)
        except OSError as error:
            raise UserError(f"cannot read image {path}: {error}") from error
        if self.image_aspect_ratio == "pad":
            image = expand_to_square(image, self.background)
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict:
        example = self.examples[index]
        return {
            "input_ids": torch.tensor(example.input_ids, dtype=torch.long),
            "labels": torch.tensor(example.labels, dtype=torch.long),
            "pixel_values": self.load_pixels(example.image),
        }

    def lengths(self) -> list[int]:
        return [len(example.input_ids) for example in self.examples]


@dataclass
class ConversationCollator:
    """Right-pads a batch: ids with the pad id, labels with -100; stacks pixel values."""

    pad_token_id: int

    def __call__(self, batch: list[dict]) -> dict:
        longest = max(item["input_ids"].shape[0] for item in batch)
        input_ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(batch), longest), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, item in enumerate(batch):
            length = item["input_ids"].shape[0]
            input_ids[row, :length] = item["input_ids"]
            labels[row, :length] = item["labels"]
            attention_mask[row, :length] = 1
        pixel_values = torch.stack([item["pixel_values"] for item in batch])
        return {
            "input_ids": input_ids,
            "labels": labels,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values,
        }
