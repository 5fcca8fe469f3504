"""POPE question files: reading the public ones and building new ones from COCO-style annotations.

Building follows POPE's recipe: images with at least `per_image` annotated object classes, `per_image`
"yes" questions about objects in the image and `per_image` "no" questions about absent objects chosen by
one of three strategies:
- random: absent classes drawn at random;
- popular: the absent classes that appear in the most images of the annotation file;
- adversarial: for each positive object, the absent class that co-occurs with it in the most images.
The three splits share the same images and positives (as the public files do); everything is seeded and
ties break by class name, so a build is reproducible.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from eval.lmm.pope_rule import normalise_label
from fgclip.errors import UserError

STRATEGIES = ("random", "popular", "adversarial")


@dataclass
class PopeQuestion:
    question_id: object
    image: str
    text: str
    label: str  # 'yes' | 'no'
    category: str | None = None  # split name carried by merged files (LLaVA's llava_pope_test.jsonl)


def _json_items(path: Path) -> list[tuple[str, object]]:
    """(location, parsed item) for a JSONL file or a JSON list; bad JSON or text -> UserError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: not valid JSON ({error.msg})") from error
        return [(f"{path}:{index}", item) for index, item in enumerate(items)]
    parsed = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            parsed.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as error:
            raise UserError(f"{path}:{number}: not valid JSON ({error.msg})") from error
    return parsed


def read_pope_questions(path: str | Path, counts: dict | None = None) -> list[PopeQuestion]:
    """Questions of a POPE file: JSON lines, as the public `coco_pope_{random,popular,adversarial}.json` ship
    under a .json name (`{"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a
    snowboard in the image?", "label": "yes"}`, int ids from 1, 3,000 per split), LLaVA's merged file with a
    `category` per line, or a JSON list. Any bad line is fatal: the file defines the benchmark, and scoring a
    silently shortened split would mislead. A line repeating an earlier one exactly is scored once and counted
    in `counts["duplicate_questions"]`; a repeated id with other content is an error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"question file {path} does not exist")
    questions, seen = [], {}
    for where, item in _json_items(path):
        if not isinstance(item, dict) or not all(key in item for key in ("question_id", "image", "text", "label")):
            raise UserError(f"{where}: a POPE question needs question_id, image, text and label")
        label = normalise_label(item["label"])
        if label is None:
            raise UserError(f"{where}: label must be 'yes' or 'no', got {item['label']!r}")
        category = item.get("category")
        question = PopeQuestion(
            item["question_id"],
            str(item["image"]),
            str(item["text"]),
            label,
            str(category) if category is not None else None,
        )
        key = str(item["question_id"])
        if key in seen:
            if seen[key] != question:
                raise UserError(f"{where}: question_id {item['question_id']!r} repeats with another question")
            if counts is not None:
                counts["duplicate_questions"] = counts.get("duplicate_questions", 0) + 1
            continue
        seen[key] = question
        questions.append(question)
    if not questions:
        raise UserError(f"question file {path} holds no questions")
    return questions


@dataclass
class ImageObjects:
    image_id: int
    file_name: str
    objects: list[str]  # distinct class names, sorted


def read_coco_objects(path: str | Path) -> list[ImageObjects]:
    """Per image, the distinct class names annotated in a COCO-style instances JSON (pycocotools)."""
    from pycocotools.coco import COCO

    path = Path(path)
    if not path.is_file():
        raise UserError(f"instances file {path} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco = COCO(str(path))
        names = {category["id"]: category["name"] for category in coco.dataset["categories"]}
        images = []
        for image_id in sorted(coco.imgs):
            annotations = coco.imgToAnns.get(image_id, [])
            objects = sorted({names[annotation["category_id"]] for annotation in annotations})
            images.append(ImageObjects(image_id, coco.imgs[image_id]["file_name"], objects))
    except (json.JSONDecodeError, KeyError, TypeError, AssertionError) as error:
        raise UserError(
            f"{path} is not a COCO instances file (needs images, annotations, categories): {error!r}"
        ) from error
    return images


def object_statistics(images: list[ImageObjects]) -> tuple[Counter, dict[str, Counter]]:
    """(images per class, images per ordered class pair) over the whole annotation file."""
    frequency: Counter = Counter()
    co_occurrence: dict[str, Counter] = defaultdict(Counter)
    for image in images:
        frequency.update(image.objects)
        for name in image.objects:
            co_occurrence[name].update(other for other in image.objects if other != name)
    return frequency, co_occurrence


def _ranked(counts: Counter) -> list[str]:
    return [name for name, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def question_text(name: str) -> str:
    """POPE's template with its article rule (an before a vowel letter)."""
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"Is there {article} {name} in the image?"


def build_pope_questions(
    images: list[ImageObjects], num_images: int = 500, per_image: int = 3, seed: int = 0
) -> dict[str, list[dict]]:
    """Question lists (public POPE line format, plus `object`) for the three strategies.

    Per image: `per_image` positives, then `per_image` negatives; question ids count from 0 per split.
    """
    frequency, co_occurrence = object_statistics(images)
    vocabulary = sorted(frequency)
    popular = _ranked(frequency)
    eligible = [
        image
        for image in images
        if len(image.objects) >= per_image and len(vocabulary) - len(image.objects) >= per_image
    ]
    if not eligible:
        raise UserError(f"no image has at least {per_image} annotated classes and {per_image} absent ones")
    rng = random.Random(seed)
    chosen = rng.sample(eligible, min(num_images, len(eligible)))
    negative_rng = random.Random(f"{seed}:random-negatives")
    splits: dict[str, list[dict]] = {strategy: [] for strategy in STRATEGIES}
    for image in chosen:
        positives = rng.sample(image.objects, per_image)
        absent = [name for name in vocabulary if name not in image.objects]
        negatives = {
            "random": negative_rng.sample(absent, per_image),
            "popular": [name for name in popular if name in absent][:per_image],
            "adversarial": _adversarial(positives, absent, co_occurrence, popular),
        }
        for strategy in STRATEGIES:
            for name, label in [(p, "yes") for p in positives] + [(n, "no") for n in negatives[strategy]]:
                questions = splits[strategy]
                questions.append(
                    {
                        "question_id": len(questions),
                        "image": image.file_name,
                        "image_id": image.image_id,
                        "text": question_text(name),
                        "label": label,
                        "object": name,
                    }
                )
    return splits


def _adversarial(
    positives: list[str], absent: list[str], co_occurrence: dict[str, Counter], popular: list[str]
) -> list[str]:
    """Per positive, the absent class seen with it in the most images; the most frequent absent class
    fills in when a positive co-occurs with no absent class that is still free."""
    chosen: list[str] = []
    absent_set = set(absent)
    for positive in positives:
        candidates = [name for name in _ranked(co_occurrence[positive]) if name in absent_set and name not in chosen]
        if not candidates:
            candidates = [name for name in popular if name in absent_set and name not in chosen]
        chosen.append(candidates[0])
    return chosen


def write_question_files(splits: dict[str, list[dict]], out_dir: str | Path, prefix: str = "pope") -> list[Path]:
    """One JSONL file per strategy, `<prefix>_<strategy>.jsonl`; returns the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for strategy, questions in splits.items():
        path = out_dir / f"{prefix}_{strategy}.jsonl"
        path.write_text("".join(json.dumps(question) + "\n" for question in questions), encoding="utf-8")
        paths.append(path)
    return paths
