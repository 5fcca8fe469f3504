"""Answer many questions about images with a LLaVA folder: resumable, with a progress bar.

`answer_all` batches questions through the one LLaVA path (`fgclip.llava.generation`: stock loaders, left
padding, KV cache, greedy unless a temperature is given), shows a progress bar with ETA and appends each batch to
an answers JSONL; run it again and it only asks what is not answered yet. `compare_batched_to_sequential` checks
that batching does not change answers: in float32 it does not (CPU and H100); in bfloat16 a few near-tied answers
can change with the batch composition (5 of 64 on a random LLaVA-shaped model on an H100), which also applies to
resumed runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from eval.lmm.answers_file import AnswerWriter, check_same_prompts, question_key, read_answers
from fgclip.errors import UserError
from fgclip.llava.generation import LoadedLMM, generate_answers, read_image
from fgclip.llava.settings import GenerationSettings


@dataclass
class PromptItem:
    """One question about one image. `extra` is copied into the answers file line."""

    question_id: object
    image: Path
    prompt: str  # the question as the user writes it; the chat format is applied at generation
    extra: dict = field(default_factory=dict)


@dataclass
class RunSummary:
    """What `answer_all` did; `answers` holds every answer in the file for the given items."""

    answers: dict[str, str]
    num_items: int
    num_resumed: int
    num_generated: int
    num_missing_image: int
    num_unreadable_image: int
    seconds: float

    def add_counts(self, counts: dict) -> None:
        """Add what this run did (answered, resumed, generated, skipped images) to a command's `counts`."""
        for key, value in self.counts().items():
            if key != "questions":
                counts[key] = counts.get(key, 0) + value

    def counts(self) -> dict[str, int]:
        return {
            "questions": self.num_items,
            "answered": len(self.answers),
            "resumed_from_answers_file": self.num_resumed,
            "generated_now": self.num_generated,
            "skipped_missing_image": self.num_missing_image,
            "skipped_unreadable_image": self.num_unreadable_image,
        }


def answer_all(
    lmm: LoadedLMM,
    items: Sequence[PromptItem],
    answers_path: str | Path,
    settings: GenerationSettings,
    description: str = "answering",
) -> RunSummary:
    """Answer every item not yet in `answers_path`, appending after each batch.

    Items whose image is missing or unreadable are skipped and counted (their answers stay missing, and
    the scorers count missing answers as wrong). Raises UserError when the file holds answers to
    other prompts, when question ids repeat, or when none of the images to answer exist.
    """
    started = time.time()
    answers_path = Path(answers_path)
    keys = [question_key(item.question_id) for item in items]
    if len(set(keys)) != len(keys):
        raise UserError("question ids repeat; every question needs its own id")
    existing = read_answers(answers_path)
    check_same_prompts(existing, {key: item.prompt for key, item in zip(keys, items)}, answers_path)
    todo = [item for key, item in zip(keys, items) if key not in existing.answers]
    present = [item for item in todo if item.image.is_file()]
    if todo and not present:
        folder = todo[0].image.parent
        raise UserError(f"none of the {len(todo)} images to answer exist (first: {todo[0].image}; folder {folder})")
    missing, unreadable = len(todo) - len(present), 0
    if missing:
        first = next(item.image for item in todo if not item.image.is_file())
        print(f"warning: {missing} questions skipped: image file not found (first: {first})")
    torch.manual_seed(settings.seed)
    generated: dict[str, str] = {}
    try:
        with (
            AnswerWriter(answers_path, model_id=lmm.name) as writer,
            tqdm(total=len(present), desc=description, unit="q", dynamic_ncols=True) as progress,
        ):
            for start in range(0, len(present), settings.batch_size):
                batch = present[start : start + settings.batch_size]
                loaded = [(item, read_image(item.image)) for item in batch]
                usable = [(item, image) for item, image in loaded if image is not None]
                unreadable += len(loaded) - len(usable)
                if usable:
                    texts = generate_answers(
                        lmm, [image for _, image in usable], [item.prompt for item, _ in usable], settings
                    )
                    writer.write(
                        (item.question_id, item.prompt, text, item.extra) for (item, _), text in zip(usable, texts)
                    )
                    generated.update((question_key(item.question_id), text) for (item, _), text in zip(usable, texts))
                progress.update(len(batch))
    except KeyboardInterrupt:
        print(
            f"interrupted: the answers written so far are kept in {answers_path}; run again to resume", file=sys.stderr
        )
        raise
    if unreadable:
        print(f"warning: {unreadable} questions skipped: image file unreadable")
    answers = {key: existing.answers[key] for key in keys if key in existing.answers}
    answers.update(generated)
    return RunSummary(
        answers=answers,
        num_items=len(items),
        num_resumed=len(items) - len(todo),
        num_generated=len(generated),
        num_missing_image=missing,
        num_unreadable_image=unreadable,
        seconds=time.time() - started,
    )


@dataclass
class ConsistencyReport:
    """Batched vs one-at-a-time answers for the same questions (greedy decoding should agree)."""

    num_items: int
    mismatches: list[dict]
    batched_seconds: float
    one_at_a_time_seconds: float

    @property
    def identical(self) -> bool:
        return not self.mismatches


def compare_batched_to_sequential(
    lmm: LoadedLMM, items: Sequence[PromptItem], settings: GenerationSettings
) -> ConsistencyReport:
    """Answer `items` in batches of settings.batch_size and one by one; list every answer that differs.

    A mismatch means left padding leaks into the answers (a masking or position bug, or low-precision
    drift); the benchmarks use this to show that batching is safe for a given model and dtype.
    """
    images = [read_image(item.image) for item in items]
    if any(image is None for image in images):
        raise UserError("compare_batched_to_sequential needs every image to be readable")
    started = time.time()
    batched: list[str] = []
    for start in range(0, len(items), settings.batch_size):
        chunk = slice(start, start + settings.batch_size)
        batched += generate_answers(lmm, images[chunk], [item.prompt for item in items[chunk]], settings)
    batched_seconds = time.time() - started
    started = time.time()
    single = [generate_answers(lmm, [image], [item.prompt], settings)[0] for item, image in zip(items, images)]
    one_seconds = time.time() - started
    mismatches = [
        {"question_id": item.question_id, "batched": a, "one_at_a_time": b}
        for item, a, b in zip(items, batched, single)
        if a != b
    ]
    return ConsistencyReport(len(items), mismatches, batched_seconds, one_seconds)
