"""Which recipe (default lr, weight decay, warm-up, batch) a run gets: chosen from what the model is.

* `--init tiny`: the tiny recipe.
* a folder written by this trainer (`final/`): the recipe recorded in its `training_recipe.json`, so a
  tiny-recipe stage 1 continues with the tiny recipe in stage 2.
* any other folder (stock CLIP, an official FG-CLIP release, a converted model): from its size. CLIP-size
  models (vision width >= 768, as ViT-B/16 and larger) get FG-CLIP's published recipe; smaller models the
  tiny one, since the published stage-2 lr (1e-6) barely moves a small model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fgclip.train.config import PUBLISHED_RECIPES, TINY_RECIPES, Recipe

RECIPE_FILE = "training_recipe.json"
RECIPES = {"tiny": TINY_RECIPES, "published": PUBLISHED_RECIPES}
CLIP_SIZE_VISION_WIDTH = 768  # ViT-B/16's width; the published recipe was made for B/16 and L/14
CLIP_DEFAULT_VISION_WIDTH = 768  # what CLIPVisionConfig assumes when config.json leaves it out


@dataclass(frozen=True)
class RecipeChoice:
    name: str  # "tiny" or "published"
    recipe: Recipe
    reason: str  # why, for the start-up block


def _vision_width(folder: Path) -> int | None:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    vision = config.get("vision_config") or {}
    return int(vision.get("hidden_size", CLIP_DEFAULT_VISION_WIDTH))


def read_recorded_recipe(folder: Path) -> str | None:
    """The recipe a folder written by this trainer records, if any."""
    try:
        name = json.loads((folder / RECIPE_FILE).read_text()).get("recipe")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    return name if name in RECIPES else None


def choose_recipe(init: str, stage: int) -> RecipeChoice:
    """The recipe of `stage` for a run starting from `init`."""
    if init == "tiny":
        return RecipeChoice("tiny", TINY_RECIPES[stage], "--init tiny")
    folder = Path(init)
    recorded = read_recorded_recipe(folder)
    if recorded:
        return RecipeChoice(recorded, RECIPES[recorded][stage], f"recorded in {folder / RECIPE_FILE}")
    width = _vision_width(folder)
    if width is not None and width < CLIP_SIZE_VISION_WIDTH:
        return RecipeChoice(
            "tiny", TINY_RECIPES[stage], f"a small model: vision width {width} < {CLIP_SIZE_VISION_WIDTH}"
        )
    return RecipeChoice(
        "published",
        PUBLISHED_RECIPES[stage],
        f"a CLIP-size model: vision width {width if width is not None else '?'} >= {CLIP_SIZE_VISION_WIDTH}",
    )


def write_recipe_record(folder: Path, name: str, stage: int) -> None:
    """Record in a model folder which recipe trained it (read back by `choose_recipe`)."""
    (folder / RECIPE_FILE).write_text(
        json.dumps({"recipe": name, "stage": stage, "written_by": "scripts/pretrain_fgclip.py"}, indent=2) + "\n"
    )
