"""Questions and answers about synthetic scenes (fgclip.data.synthetic records) for the CPU miniature.

Every region of a synthetic record is one object whose expression reads "a <size> <colour> <texture>
<shape>". From a scene we ask
- attribute questions: "What colour is the large circle?" -> "red" (also texture and size), naming the
  object by the fewest other attributes that pick it out alone;
- yes/no questions: "Is there a red circle in the image?" -> "Yes" / "No" (negatives change the colour
  of an object that is there, so they are hard);
- localisation: "Where is the red circle?" -> "[x1, y1, x2, y2]" on the padded square (LLaVA-1.5).
Stage A gets captioning conversations (the record's short caption), stage B the question conversations.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from fgclip.data.schema import Record
from fgclip.llava.boxes import box_to_square, format_box

ATTRIBUTES = ("size", "colour", "texture")  # the order words take in an expression, before the shape
QUESTION_TYPES = ("colour", "texture", "size", "yes_no", "where")
CAPTION_PROMPTS = ("Describe the image briefly.", "What is in the picture?", "Give a short caption of the image.")
ASK = {
    "colour": "What colour is the {ref}?",
    "texture": "What pattern does the {ref} have?",
    "size": "Is the {ref} small or large?",
    "yes_no": "Is there a {colour} {shape} in the image?",
    "where": "Where is the {ref}?",
}


@dataclass(frozen=True)
class Vocabulary:
    """The attribute words of a synthetic set (read from its synthetic.json)."""

    colours: tuple[str, ...]
    sizes: tuple[str, ...]
    textures: tuple[str, ...]
    shapes: tuple[str, ...]

    @classmethod
    def of_set(cls, root: str | Path) -> Vocabulary:
        settings_file = Path(root) / "synthetic.json"
        if settings_file.is_file():
            settings = json.loads(settings_file.read_text())
            return cls(*(tuple(settings[key]) for key in ("colours", "sizes", "textures", "shapes")))
        from fgclip.data import synthetic

        return cls(tuple(synthetic.COLOURS), tuple(synthetic.SIZES), tuple(synthetic.TEXTURES), tuple(synthetic.SHAPES))

    def values(self, attribute: str) -> tuple[str, ...]:
        return {"colour": self.colours, "size": self.sizes, "texture": self.textures}[attribute]


@dataclass(frozen=True)
class SceneObject:
    size: str
    colour: str
    texture: str
    shape: str
    bbox: tuple[float, float, float, float]  # normalised to the original image

    def describe(self, attributes: tuple[str, ...]) -> str:
        words = [getattr(self, attribute) for attribute in ATTRIBUTES if attribute in attributes]
        return " ".join([*words, self.shape])


@dataclass
class Question:
    """One held-out question; `answer` is the reference, `kind` one of QUESTION_TYPES."""

    question_id: str
    image: str
    kind: str
    question: str
    answer: str
    bbox: list[float] | None = None  # the object's box (original image frame), for `where`


def parse_object(caption: str, bbox, vocabulary: Vocabulary) -> SceneObject | None:
    """The object an expression names, or None if it is not "a <size> <colour> <texture> <shape>"."""
    words = caption.lower().split()
    found = {}
    for attribute in ATTRIBUTES:
        matches = [word for word in words if word in vocabulary.values(attribute)]
        if len(matches) != 1:
            return None
        found[attribute] = matches[0]
    shapes = [word for word in words if word in vocabulary.shapes]
    if len(shapes) != 1:
        return None
    return SceneObject(shape=shapes[0], bbox=tuple(float(v) for v in bbox[:4]), **found)


def unique_reference(target: SceneObject, scene: list[SceneObject], hide: str | None = None) -> str | None:
    """The shortest description ("circle", "red circle", ...) that fits `target` alone, not using `hide`."""
    usable = [attribute for attribute in ATTRIBUTES if attribute != hide]
    for count in range(len(usable) + 1):
        for attributes in itertools.combinations(usable, count):
            matching = [
                obj for obj in scene if all(getattr(obj, a) == getattr(target, a) for a in (*attributes, "shape"))
            ]
            if matching == [target]:
                return target.describe(attributes)
    return None


def scene_questions(
    scene: list[SceneObject], rng: random.Random, vocabulary: Vocabulary, size: tuple[int, int]
) -> list[tuple[str, str, str, SceneObject | None]]:
    """(kind, question, answer, object) for one scene: each attribute, a yes and a no, one location."""
    questions = []
    for kind in ("colour", "texture", "size"):
        candidates = [(obj, unique_reference(obj, scene, hide=kind)) for obj in scene]
        candidates = [(obj, ref) for obj, ref in candidates if ref]
        if candidates:
            obj, ref = rng.choice(candidates)
            questions.append((kind, ASK[kind].format(ref=ref), getattr(obj, kind), obj))
    present = {(obj.colour, obj.shape) for obj in scene}
    obj = rng.choice(scene)
    questions.append(("yes_no", ASK["yes_no"].format(colour=obj.colour, shape=obj.shape), "Yes", obj))
    swaps = [
        (colour, other.shape)
        for other in scene
        for colour in vocabulary.colours
        if (colour, other.shape) not in present
    ]
    if swaps:
        colour, shape = rng.choice(swaps)
        questions.append(("yes_no", ASK["yes_no"].format(colour=colour, shape=shape), "No", None))
    candidates = [(obj, ref) for obj in scene if (ref := unique_reference(obj, scene))]
    if candidates:  # two identical objects cannot be told apart
        obj, ref = rng.choice(candidates)
        questions.append(("where", ASK["where"].format(ref=ref), format_box(box_to_square(obj.bbox, *size)), obj))
    return questions


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


def _conversation(record_id: str, image: str, turns: list[tuple[str, str]]) -> dict:
    conversation = []
    for index, (question, answer) in enumerate(turns):
        conversation.append({"from": "human", "value": f"<image>\n{question}" if index == 0 else question})
        conversation.append({"from": "gpt", "value": answer})
    return {"id": record_id, "image": image, "conversations": conversation}


@dataclass
class MiniatureData:
    stage_a: Path
    stage_b: Path
    heldout: Path
    texts: list[str]  # every question, answer and caption (the tiny tokenizer's training text)


def write_miniature_data(
    train: list[Record], heldout: list[Record], root: Path, out_dir: Path, vocabulary: Vocabulary, seed: int = 0
) -> MiniatureData:
    """stage_a.jsonl (captions), stage_b.jsonl (multi-turn QA, shuffled turn order) and heldout.jsonl
    (one line per held-out question). Image paths are absolute."""
    rng = random.Random(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = [*CAPTION_PROMPTS]
    stage_a, stage_b, questions = [], [], []
    for split, records in (("train", train), ("heldout", heldout)):
        for index, record in enumerate(records):
            image_path = record.resolve_image(root).resolve()
            scene = [obj for region in record.regions if (obj := parse_object(region.caption, region.bbox, vocabulary))]
            if not scene:
                continue
            asked = scene_questions(scene, rng, vocabulary, _image_size(image_path))
            texts += [text for _, question, answer, _ in asked for text in (question, answer)]
            record_id = f"{split}-{index:06d}"
            if split == "train":
                texts.append(record.short_caption)
                stage_a.append(
                    _conversation(record_id, str(image_path), [(rng.choice(CAPTION_PROMPTS), record.short_caption)])
                )
                rng.shuffle(asked)
                stage_b.append(_conversation(record_id, str(image_path), [(q, a) for _, q, a, _ in asked]))
            else:
                questions += [
                    Question(
                        f"{record_id}-{n}",
                        str(image_path),
                        kind,
                        question,
                        answer,
                        list(obj.bbox) if kind == "where" else None,
                    )
                    for n, (kind, question, answer, obj) in enumerate(asked)
                ]
    paths = MiniatureData(out_dir / "stage_a.jsonl", out_dir / "stage_b.jsonl", out_dir / "heldout.jsonl", texts)
    for path, rows in (
        (paths.stage_a, stage_a),
        (paths.stage_b, stage_b),
        (paths.heldout, [asdict(q) for q in questions]),
    ):
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return paths
