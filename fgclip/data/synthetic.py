"""Synthetic fine-grained scenes: shapes with colour, size, texture and position, drawn with PIL.

    python -m fgclip.data.synthetic --output_dir DIR --num_images N --seed S

Each image holds 1-4 non-overlapping objects. Every object is a region with a referring expression
("a small red striped circle"), a longer one with its position, and 10 hard negatives that change one
attribute (colour, size or texture) and keep the noun, as FineHARD's do. Short captions are coarse (the
largest object's colour and noun, and a count); long captions spell out every attribute and position,
so fine detail lives in the long text and in the regions. Writes `images/`, `train.jsonl`, `heldout.jsonl` (a
held-out split drawn from its own images) and `data.jsonl` (both, each record with a `split` field). Deterministic
by seed.
"""

from __future__ import annotations

import json
import random
import textwrap
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.cli import CommandParser, entry_point, fraction, option, options_from, positive_int
from fgclip.data.options import OutputFolderOptions
from fgclip.data.schema import Record, Region, write_records
from fgclip.errors import UserError

if TYPE_CHECKING:  # numpy and Pillow load when a scene is drawn, so that --help answers at once
    import numpy as np
    from PIL import Image

DESCRIPTION = (
    "Generate a synthetic fine-grained scene set (images + records with regions and 10 attribute-swapped hard "
    "negatives per region) with a train and a held-out split: OUTPUT_DIR/images/, train.jsonl, heldout.jsonl, "
    "data.jsonl and synthetic.json (the settings)."
)
OWNED = ("images", "train.jsonl", "heldout.jsonl", "data.jsonl", "synthetic.json")

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 215, 40),
    "purple": (150, 60, 190),
    "orange": (245, 140, 30),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
SIZES = {"small": (0.17, 0.23), "large": (0.33, 0.42)}  # side as a share of the image side
TEXTURES = ("solid", "striped", "dotted", "hollow")
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
PLACES = (
    ("at the top left", "at the top", "at the top right"),
    ("on the left", "in the center", "on the right"),
    ("at the bottom left", "at the bottom", "at the bottom right"),
)
COUNT_WORDS = {1: "one shape", 2: "two shapes", 3: "three shapes", 4: "four shapes"}
OTHERS_WORDS = {1: "one other shape", 2: "two other shapes", 3: "three other shapes"}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    texture: str
    box: tuple[int, int, int, int]  # pixel x1, y1, x2, y2 (exclusive end)

    @property
    def expression(self) -> str:
        return f"a {self.size} {self.colour} {self.texture} {self.shape}"

    def place(self, image_size: int) -> str:
        x1, y1, x2, y2 = self.box
        column = min(int(3 * (x1 + x2) / 2 / image_size), 2)
        row = min(int(3 * (y1 + y2) / 2 / image_size), 2)
        return PLACES[row][column]


def hard_negatives(obj: SceneObject, rng: random.Random, count: int = 10) -> list[str]:
    """`count` expressions that differ from `obj`'s in exactly one attribute; the noun is kept."""
    swaps = [f"a {obj.size} {c} {obj.texture} {obj.shape}" for c in COLOURS if c != obj.colour]
    swaps += [f"a {s} {obj.colour} {obj.texture} {obj.shape}" for s in SIZES if s != obj.size]
    swaps += [f"a {obj.size} {obj.colour} {t} {obj.shape}" for t in TEXTURES if t != obj.texture]
    return rng.sample(swaps, min(count, len(swaps)))


def _shape_mask(shape: str, box: tuple[int, int, int, int], image_size: int, outline: int | None) -> np.ndarray:
    """Boolean `(S, S)` mask of a filled shape, or of its outline `outline` pixels wide."""
    import numpy as np
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1, x2, y2 = box[0], box[1], box[2] - 1, box[3] - 1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    fill = None if outline else 255
    width = outline or 0
    if shape == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=fill, outline=255 if outline else None, width=width)
    elif shape == "square":
        draw.rectangle((x1, y1, x2, y2), fill=fill, outline=255 if outline else None, width=width)
    elif shape == "triangle":
        draw.polygon([(cx, y1), (x2, y2), (x1, y2)], fill=fill, outline=255 if outline else None, width=width)
    elif shape == "diamond":
        draw.polygon([(cx, y1), (x2, cy), (cx, y2), (x1, cy)], fill=fill, outline=255 if outline else None, width=width)
    elif shape == "cross":
        arm_w, arm_h = (x2 - x1) / 3, (y2 - y1) / 3
        points = [
            (x1 + arm_w, y1),
            (x2 - arm_w, y1),
            (x2 - arm_w, y1 + arm_h),
            (x2, y1 + arm_h),
            (x2, y2 - arm_h),
            (x2 - arm_w, y2 - arm_h),
            (x2 - arm_w, y2),
            (x1 + arm_w, y2),
            (x1 + arm_w, y2 - arm_h),
            (x1, y2 - arm_h),
            (x1, y1 + arm_h),
            (x1 + arm_w, y1 + arm_h),
        ]
        draw.polygon(points, fill=fill, outline=255 if outline else None, width=width)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.asarray(canvas) > 0


def _texture_mask(texture: str, image_size: int) -> np.ndarray:
    """Where the colour goes inside a filled shape: everywhere, stripes or dots (4-pixel period)."""
    import numpy as np

    ys, xs = np.mgrid[0:image_size, 0:image_size]
    if texture == "striped":
        return (ys % 4) < 2
    if texture == "dotted":
        return ((ys % 4) < 2) & ((xs % 4) < 2)
    return np.ones((image_size, image_size), dtype=bool)


def render_scene(
    objects: Sequence[SceneObject], image_size: int, background: int, rng: np.random.Generator
) -> Image.Image:
    """The scene as an RGB image: a noisy grey background with each object painted on it."""
    import numpy as np
    from PIL import Image

    pixels = np.full((image_size, image_size, 3), float(background))
    pixels += rng.normal(0.0, 6.0, size=pixels.shape)
    for obj in objects:
        if obj.texture == "hollow":
            mask = _shape_mask(obj.shape, obj.box, image_size, outline=max(2, image_size // 32))
        else:
            mask = _shape_mask(obj.shape, obj.box, image_size, outline=None) & _texture_mask(obj.texture, image_size)
        pixels[mask] = COLOURS[obj.colour]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _overlaps(box, others, margin: int = 1) -> bool:
    x1, y1, x2, y2 = box
    return any(x1 < b[2] + margin and b[0] < x2 + margin and y1 < b[3] + margin and b[1] < y2 + margin for b in others)


def sample_scene(rng: random.Random, image_size: int, max_objects: int = 4) -> list[SceneObject]:
    """1 to `max_objects` objects with random attributes at non-overlapping places."""
    objects: list[SceneObject] = []
    for _ in range(rng.randint(1, max_objects)):
        size = rng.choice(list(SIZES))
        low, high = SIZES[size]
        for _attempt in range(30):
            side = max(4, round(rng.uniform(low, high) * image_size))
            x1, y1 = rng.randint(0, image_size - side), rng.randint(0, image_size - side)
            box = (x1, y1, x1 + side, y1 + side)
            if not _overlaps(box, [o.box for o in objects]):
                objects.append(
                    SceneObject(rng.choice(SHAPES), rng.choice(list(COLOURS)), size, rng.choice(TEXTURES), box)
                )
                break
    return objects


def describe(objects: Sequence[SceneObject], image_size: int, background_word: str) -> tuple[str, str]:
    """(long caption, short caption) of a scene. The short one is coarse, as web captions are: the
    largest object's colour and noun, and how many others there are."""
    parts = [f"{o.place(image_size)[0].upper()}{o.place(image_size)[1:]} there is {o.expression}." for o in objects]
    long_caption = f"A picture of {COUNT_WORDS[len(objects)]} on a {background_word} background. " + " ".join(parts)
    largest = max(objects, key=lambda o: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
    others = len(objects) - 1
    short_caption = f"a {largest.colour} {largest.shape}"
    if others:
        short_caption += f" and {OTHERS_WORDS[others]}"
    return long_caption, short_caption


def make_record(index: int, seed: int, image_size: int, image_dir: Path, split: str) -> Record:
    """Draw image `index` of the set, save it, and return its record (deterministic in (seed, index))."""
    import numpy as np

    rng = random.Random(f"{seed}:{index}")
    objects = sample_scene(rng, image_size)
    background = rng.randint(90, 170)
    background_word = "dark grey" if background < 115 else "light grey" if background > 145 else "grey"
    image = render_scene(objects, image_size, background, np.random.default_rng(rng.getrandbits(63)))
    name = f"{index:06d}.png"
    image.save(image_dir / name)
    long_caption, short_caption = describe(objects, image_size, background_word)
    regions = [
        Region(
            bbox=[o.box[0] / image_size, o.box[1] / image_size, o.box[2] / image_size, o.box[3] / image_size],
            caption=o.expression,
            long_caption=f"{o.expression} {o.place(image_size)}",
            hard_negatives=hard_negatives(o, rng),
        )
        for o in objects
    ]
    return Record(
        image=f"images/{name}",
        long_caption=long_caption,
        short_caption=short_caption,
        regions=regions,
        extra={"split": split},
    )


@dataclass
class SyntheticSet:
    """Where a generated set is and how big its splits are."""

    root: Path
    train: Path
    heldout: Path
    all: Path
    num_train: int
    num_heldout: int


def generate(
    out_dir: str | Path,
    num_images: int,
    seed: int = 0,
    image_size: int = 64,
    heldout_fraction: float = 0.2,
    progress: bool = True,
) -> SyntheticSet:
    """Write a synthetic set of `num_images` images; the last `heldout_fraction` of them are held out."""
    from tqdm import tqdm

    if num_images < 2:
        raise ValueError("need at least 2 images (one for each split)")
    if not 0 < heldout_fraction < 1:
        raise ValueError("heldout fraction must be in (0, 1)")
    if image_size < 32:
        raise ValueError("image size must be at least 32 pixels for the textures to show")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    num_heldout = min(max(1, round(num_images * heldout_fraction)), num_images - 1)
    num_train = num_images - num_heldout
    records = []
    for index in tqdm(range(num_images), desc="synthesising scenes", disable=not progress):
        split = "train" if index < num_train else "heldout"
        records.append(make_record(index, seed, image_size, image_dir, split))
    result = SyntheticSet(
        out_dir, out_dir / "train.jsonl", out_dir / "heldout.jsonl", out_dir / "data.jsonl", num_train, num_heldout
    )
    write_records(result.train, records[:num_train])
    write_records(result.heldout, records[num_train:])
    write_records(result.all, records)
    settings = {
        "num_images": num_images,
        "seed": seed,
        "image_size": image_size,
        "heldout_fraction": heldout_fraction,
        "num_train": num_train,
        "num_heldout": num_heldout,
        "colours": list(COLOURS),
        "sizes": list(SIZES),
        "textures": list(TEXTURES),
        "shapes": list(SHAPES),
    }
    (out_dir / "synthetic.json").write_text(json.dumps(settings, indent=2) + "\n")
    return result


@dataclass(kw_only=True)
class SyntheticOptions(OutputFolderOptions):
    num_images: int = option("images in both splits together (>= 2)", type=positive_int)
    seed: int = option("random seed; the same seed gives the same set", 0)
    image_size: int = option("image side in pixels (at least 32)", 64, type=positive_int)
    heldout_fraction: float = option("share of images in the held-out split", 0.2, type=fraction)


def build_parser() -> CommandParser:
    description = textwrap.fill(DESCRIPTION, 110)
    return CommandParser(prog="python -m fgclip.data.synthetic", description=description, options=[SyntheticOptions])


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv), SyntheticOptions)
    out = options.prepare(OWNED)
    try:
        result = generate(
            out,
            options.num_images,
            options.seed,
            options.image_size,
            options.heldout_fraction,
            progress=not options.quiet,
        )
    except ValueError as error:  # settings generate() refuses
        raise UserError(str(error)) from error
    print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}))
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
