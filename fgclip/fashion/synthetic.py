"""A synthetic product set for Fashion-FINE experiments, drawn with PIL, in the public releases' layouts.

    python -m fgclip.fashion.synthetic --output_dir DIR [--families 240] [--views 3] [--seed 0]

Products come in families: a base garment and siblings that differ from it in one or two attributes
(colour, pattern, material, and sleeve + collar for tops and dresses, or detail for bottoms), so titles
such as "a red striped denim shirt with long sleeves and a v-neck" differ from their nearest neighbours
in a word or two. Colour is global; collar, sleeves and details are a few pixels each. Every product has
`--views` images (shifted, scaled, relit copies; view 0 is the front view) and a subcategory (t-shirt,
shirt, sweater, dress, skirt, pants, shorts). Whole families go to one split (train / val / test), so the
held-out products are attribute combinations never seen in training.

Writes, mirroring the releases:
    images/<name>.png
    fashiongen/{train,val,test}.jsonl          FashionGen-style items (image, text, product_id, subcategory, category)
    captions/cap.<dress|shirt|toptee>.<split>.json     FashionIQ-style triplets between family members
    image_splits/split.<dress|shirt|toptee>.<split>.json  their galleries (front views)
    manifest.json                               counts and settings
Deterministic by seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from fgclip.cli import CommandParser, entry_point, option, options_from, output_dir_option, positive_int
from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir

COLOURS = {
    "red": (210, 40, 40),
    "blue": (40, 70, 210),
    "green": (40, 160, 60),
    "yellow": (235, 205, 40),
    "black": (25, 25, 25),
    "white": (245, 245, 245),
    "pink": (240, 130, 180),
    "purple": (130, 50, 170),
}
PATTERNS = ("solid", "striped", "dotted", "checked")
MATERIALS = ("cotton", "denim", "leather", "wool")
SLEEVES = ("sleeveless", "short sleeves", "long sleeves")
COLLARS = ("round neck", "v-neck", "shirt collar", "turtleneck")
DETAILS = ("plain front", "front pockets", "belt")
CATEGORIES = {"tops": ("t-shirt", "shirt", "sweater"), "dresses": ("dress",), "bottoms": ("skirt", "pants", "shorts")}
SUBCATEGORIES = {subcategory: category for category, names in CATEGORIES.items() for subcategory in names}
FASHIONIQ_CATEGORY = {"dress": "dress", "shirt": "shirt", "t-shirt": "toptee", "sweater": "toptee"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Garment:
    subcategory: str
    colour: str
    pattern: str
    material: str
    sleeve: str = ""  # tops and dresses
    collar: str = ""  # tops and dresses
    detail: str = ""  # bottoms

    @property
    def is_top(self) -> bool:
        return SUBCATEGORIES[self.subcategory] in ("tops", "dresses")

    @property
    def title(self) -> str:
        pattern = "" if self.pattern == "solid" else f" {self.pattern}"
        head = f"a {self.colour}{pattern} {self.material} {self.subcategory}"
        if self.is_top:
            sleeve = "sleeveless " if self.sleeve == "sleeveless" else ""
            tail = (
                f" with a {self.collar}" if self.sleeve == "sleeveless" else f" with {self.sleeve} and a {self.collar}"
            )
            return (f"a {sleeve}{head[2:]}" if sleeve else head) + tail
        return head + (
            "" if self.detail == "plain front" else f" with {self.detail if self.detail != 'belt' else 'a belt'}"
        )

    def attributes(self) -> tuple[str, ...]:
        return ("colour", "pattern", "material") + (("sleeve", "collar") if self.is_top else ("detail",))


CHOICES = {
    "colour": tuple(COLOURS),
    "pattern": PATTERNS,
    "material": MATERIALS,
    "sleeve": SLEEVES,
    "collar": COLLARS,
    "detail": DETAILS,
}


def random_garment(rng: random.Random, subcategory: str) -> Garment:
    garment = Garment(subcategory, rng.choice(list(COLOURS)), rng.choice(PATTERNS), rng.choice(MATERIALS))
    if garment.is_top:
        return replace(garment, sleeve=rng.choice(SLEEVES), collar=rng.choice(COLLARS))
    return replace(garment, detail=rng.choice(DETAILS))


def mutate(garment: Garment, rng: random.Random, changes: int) -> Garment:
    """`garment` with `changes` attributes set to other values."""
    for name in rng.sample(garment.attributes(), changes):
        garment = replace(garment, **{name: rng.choice([v for v in CHOICES[name] if v != getattr(garment, name)])})
    return garment


def difference_captions(reference: Garment, target: Garment, rng: random.Random) -> list[str]:
    """Two FashionIQ-style relative captions ("is blue", "has short sleeves") from reference to target."""
    phrases = {
        "colour": [f"is {target.colour}", f"is {target.colour} instead of {reference.colour}"],
        "pattern": (
            [f"is {target.pattern}", f"has a {target.pattern} pattern"]
            if target.pattern != "solid"
            else ["is plain", "has no pattern"]
        ),
        "material": [f"is made of {target.material}", f"is {target.material}"],
        "sleeve": (
            [f"has {target.sleeve}", f"with {target.sleeve}"]
            if target.sleeve != "sleeveless"
            else ["is sleeveless", "has no sleeves"]
        ),
        "collar": [f"has a {target.collar}", f"with a {target.collar}"],
        "detail": [
            f"has {target.detail}" if target.detail != "belt" else "has a belt",
            "has a plain front" if target.detail == "plain front" else f"with {target.detail}",
        ],
    }
    changed = [name for name in reference.attributes() if getattr(reference, name) != getattr(target, name)]
    if len(changed) == 1:
        return list(phrases[changed[0]])
    return [rng.choice(phrases[name]) for name in changed[:2]]


# ---------------------------------------------------------------------------------------------- drawing
def _silhouette(garment: Garment, size: int) -> tuple[Image.Image, list]:
    """The garment's mask (L) and the polygons of its details, on a `size` canvas (designed at 64 px)."""
    s = size / 64.0
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)

    def box(x1, y1, x2, y2):
        return [x1 * s, y1 * s, x2 * s, y2 * s]

    sub = garment.subcategory
    if garment.is_top:
        bottom = 58 if sub == "dress" else 52
        if sub == "dress":
            draw.polygon([(22 * s, 14 * s), (42 * s, 14 * s), (50 * s, bottom * s), (14 * s, bottom * s)], fill=255)
        else:
            draw.rectangle(box(20, 14, 44, bottom), fill=255)
        if garment.sleeve == "short sleeves":
            draw.polygon([(20 * s, 14 * s), (11 * s, 24 * s), (16 * s, 28 * s), (20 * s, 24 * s)], fill=255)
            draw.polygon([(44 * s, 14 * s), (53 * s, 24 * s), (48 * s, 28 * s), (44 * s, 24 * s)], fill=255)
        elif garment.sleeve == "long sleeves":
            draw.polygon([(20 * s, 14 * s), (9 * s, 44 * s), (15 * s, 46 * s), (20 * s, 26 * s)], fill=255)
            draw.polygon([(44 * s, 14 * s), (55 * s, 44 * s), (49 * s, 46 * s), (44 * s, 26 * s)], fill=255)
    elif sub == "skirt":
        draw.polygon([(24 * s, 16 * s), (40 * s, 16 * s), (48 * s, 50 * s), (16 * s, 50 * s)], fill=255)
    else:
        leg_end = 56 if sub == "pants" else 36
        draw.rectangle(box(22, 14, 42, 24), fill=255)
        draw.polygon([(22 * s, 20 * s), (31 * s, 20 * s), (30 * s, leg_end * s), (20 * s, leg_end * s)], fill=255)
        draw.polygon([(33 * s, 20 * s), (42 * s, 20 * s), (44 * s, leg_end * s), (34 * s, leg_end * s)], fill=255)
    return mask, s


def _fill(garment: Garment, size: int, rng: np.random.Generator) -> np.ndarray:
    """The garment's cloth: colour, pattern and material texture, `(size, size, 3)` float."""
    base = np.array(COLOURS[garment.colour], dtype=np.float64)
    contrast = np.array((245, 245, 245)) if garment.colour not in ("white", "yellow") else np.array((40, 40, 40))
    ys, xs = np.mgrid[0:size, 0:size]
    period = max(3, size // 16)
    if garment.pattern == "striped":
        on = (ys // (period // 2 + 1)) % 2 == 1
    elif garment.pattern == "dotted":
        on = ((ys % period) < period // 2) & ((xs % period) < period // 2)
    elif garment.pattern == "checked":
        on = ((ys % (2 * period)) < period // 2 + 1) | ((xs % (2 * period)) < period // 2 + 1)
    else:
        on = np.zeros((size, size), dtype=bool)
    cloth = np.where(on[..., None], 0.55 * contrast + 0.45 * base, base)
    if garment.material == "denim":
        cloth = cloth * np.where(((xs + ys) % 3 == 0)[..., None], 0.62, 1.0)
    elif garment.material == "leather":
        sheen = 0.75 + 0.5 * np.exp(-(((xs - size * 0.38) / (size * 0.06)) ** 2))
        cloth = cloth * sheen[..., None]
    elif garment.material == "wool":
        cloth = cloth + rng.normal(0.0, 28.0, size=(size, size, 1))
    return cloth


def _details(garment: Garment, image: Image.Image, s: float) -> None:
    """Collar and front details (a few pixels each) drawn over the cloth."""
    draw = ImageDraw.Draw(image)
    dark = tuple(int(c * 0.45) for c in COLOURS[garment.colour])
    light = (250, 250, 250) if garment.colour != "white" else (60, 60, 60)
    if garment.is_top:
        if garment.collar == "round neck":
            draw.chord([27 * s, 10 * s, 37 * s, 20 * s], 0, 180, fill=(0, 0, 0, 0))
        elif garment.collar == "v-neck":
            draw.polygon([(27 * s, 14 * s), (37 * s, 14 * s), (32 * s, 24 * s)], fill=(0, 0, 0, 0))
        elif garment.collar == "shirt collar":
            draw.polygon([(26 * s, 13 * s), (32 * s, 16 * s), (28 * s, 22 * s)], fill=light + (255,))
            draw.polygon([(38 * s, 13 * s), (32 * s, 16 * s), (36 * s, 22 * s)], fill=light + (255,))
        elif garment.collar == "turtleneck":
            draw.rectangle([27 * s, 8 * s, 37 * s, 15 * s], fill=dark + (255,))
        if garment.subcategory == "shirt":  # the button placket
            for y in range(24, 50, 6):
                draw.ellipse([31 * s, y * s, 33 * s, (y + 2) * s], fill=light + (255,))
        if garment.subcategory == "sweater":  # ribbed hem
            draw.rectangle([20 * s, 48 * s, 44 * s, 52 * s], fill=dark + (255,))
    elif garment.detail == "front pockets":
        draw.rectangle([23 * s, 17 * s, 28 * s, 23 * s], fill=dark + (255,))
        draw.rectangle([36 * s, 17 * s, 41 * s, 23 * s], fill=dark + (255,))
    elif garment.detail == "belt":
        draw.rectangle([21 * s, 14 * s, 43 * s, 18 * s], fill=light + (255,))


def render(garment: Garment, size: int, view: int, seed: int) -> Image.Image:
    """One image of `garment`: view 0 is the front view; other views are shifted, scaled and relit."""
    rng = np.random.default_rng(seed)
    mask, s = _silhouette(garment, size)
    cloth = Image.fromarray(np.clip(_fill(garment, size, rng), 0, 255).astype(np.uint8)).convert("RGBA")
    cloth.putalpha(mask)
    _details(garment, cloth, s)
    background = np.full((size, size, 3), 205.0) + rng.normal(0.0, 5.0, size=(size, size, 3))
    canvas = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).convert("RGBA")
    dx = dy = 0
    if view:
        side = max(8, round(size * rng.uniform(0.85, 1.05)))
        cloth = cloth.resize((side, side), Image.BICUBIC)
        dx = (size - side) // 2 + int(rng.integers(-4, 5))
        dy = (size - side) // 2 + int(rng.integers(-4, 5))
    # the part of the (shifted) cloth that falls on the canvas
    left, top = max(0, -dx), max(0, -dy)
    right, bottom = min(cloth.width, size - dx), min(cloth.height, size - dy)
    canvas.alpha_composite(cloth.crop((left, top, right, bottom)), dest=(max(0, dx), max(0, dy)))
    image = np.asarray(canvas.convert("RGB"), dtype=np.float64)
    if view:
        image = image * rng.uniform(0.85, 1.12)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------- the set
@dataclass
class SyntheticSettings:
    families: int = 240
    family_size: tuple[int, int] = (3, 6)
    views: int = 3
    image_size: int = 64
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    partners_per_product: int = 2
    seed: int = 0


def make_families(settings: SyntheticSettings, rng: random.Random) -> list[list[Garment]]:
    """Families of distinct garments; members differ from the base in one or two attributes."""
    seen: set[Garment] = set()
    families = []
    subcategories = list(SUBCATEGORIES)
    while len(families) < settings.families:
        base = random_garment(rng, subcategories[len(families) % len(subcategories)])
        if base in seen:
            continue
        members = [base]
        wanted = rng.randint(*settings.family_size)
        for _attempt in range(50):
            if len(members) == wanted:
                break
            sibling = mutate(base, rng, rng.choice((1, 2)))
            if sibling not in seen and sibling not in members:
                members.append(sibling)
        seen.update(members)
        families.append(members)
    return families


def _changed(a: Garment, b: Garment) -> int:
    return sum(getattr(a, name) != getattr(b, name) for name in a.attributes())


def generate(out: str | Path, settings: SyntheticSettings | None = None, progress: bool = True) -> dict:
    """Write the set under `out`; returns the manifest."""
    settings = settings or SyntheticSettings()
    out = Path(out)
    rng = random.Random(settings.seed)
    families = make_families(settings, rng)
    order = list(range(len(families)))
    rng.shuffle(order)
    cut1 = round(settings.split_fractions[0] * len(order))
    cut2 = cut1 + round(settings.split_fractions[1] * len(order))
    split_of = {family: ("train" if i < cut1 else "val" if i < cut2 else "test") for i, family in enumerate(order)}
    (out / "images").mkdir(parents=True, exist_ok=True)
    for folder in ("fashiongen", "captions", "image_splits"):
        (out / folder).mkdir(exist_ok=True)
    items = {split: [] for split in SPLITS}
    triplets = {(split, c): [] for split in SPLITS for c in sorted(set(FASHIONIQ_CATEGORY.values()))}
    galleries = {key: [] for key in triplets}
    total = sum(len(f) for f in families) * settings.views
    bar = tqdm(total=total, desc="drawing products", unit="img", disable=not progress)
    product_number = 0
    for family_index, members in enumerate(families):
        split = split_of[family_index]
        names = []
        for garment in members:
            product = f"P{product_number:05d}"
            product_number += 1
            front = f"B{product_number:07d}"
            names.append(front)
            for view in range(settings.views):
                name = front if view == 0 else f"{front}_{view}"
                render(garment, settings.image_size, view, rng.randrange(2**31)).save(out / "images" / f"{name}.png")
                items[split].append(
                    {
                        "image": f"../images/{name}.png",
                        "text": garment.title,
                        "product_id": product,
                        "subcategory": garment.subcategory.upper(),
                        "category": SUBCATEGORIES[garment.subcategory].upper(),
                    }
                )
                bar.update(1)
            if garment.subcategory in FASHIONIQ_CATEGORY:
                galleries[(split, FASHIONIQ_CATEGORY[garment.subcategory])].append(front)
        for index, garment in enumerate(members):
            category = FASHIONIQ_CATEGORY.get(garment.subcategory)
            partners = [j for j, other in enumerate(members) if j != index and 1 <= _changed(garment, other) <= 2]
            if category is None or not partners:
                continue
            for j in rng.sample(partners, min(settings.partners_per_product, len(partners))):
                triplets[(split, category)].append(
                    {
                        "candidate": names[index],
                        "target": names[j],
                        "captions": difference_captions(garment, members[j], rng),
                    }
                )
    bar.close()
    for split in SPLITS:
        (out / "fashiongen" / f"{split}.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items[split]))
    for (split, category), rows in triplets.items():
        (out / "captions" / f"cap.{category}.{split}.json").write_text(json.dumps(rows, indent=1) + "\n")
        (out / "image_splits" / f"split.{category}.{split}.json").write_text(
            json.dumps(galleries[(split, category)]) + "\n"
        )
    manifest = {
        "settings": asdict(settings),
        "products": {split: len({i["product_id"] for i in items[split]}) for split in SPLITS},
        "images": {split: len(items[split]) for split in SPLITS},
        "triplets": {f"{category}.{split}": len(rows) for (split, category), rows in triplets.items()},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


@dataclass
class SyntheticOptions:
    output_dir: Path = output_dir_option("output folder (created; must not hold other files)")
    families: int = option("product families (~4.5 products each)", 240, type=positive_int)
    views: int = option("images per product", 3, type=positive_int)
    image_size: int = option("image side in pixels (at least 16)", 64, type=positive_int)
    seed: int = option("seed", 0)
    overwrite: bool = option("write into a folder that holds other files", False)


def build_parser() -> CommandParser:
    return CommandParser(prog="python -m fgclip.fashion.synthetic", description=__doc__, options=[SyntheticOptions])


OWNED = ("images", "fashiongen", "captions", "image_splits", "manifest.json")


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(build_parser().parse_args(argv), SyntheticOptions)
    if options.image_size < 16:
        raise UserError(f"--image_size must be at least 16, got {options.image_size}")
    prepare_output_dir(options.output_dir, owned=OWNED, overwrite=options.overwrite, what="files")
    manifest = generate(
        options.output_dir,
        SyntheticSettings(
            families=options.families, views=options.views, image_size=options.image_size, seed=options.seed
        ),
    )
    products = manifest["products"]
    print(
        f"wrote {sum(manifest['images'].values())} images of {sum(products.values())} products "
        f"(train/val/test {products['train']}/{products['val']}/{products['test']}) to {options.output_dir}"
    )
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
