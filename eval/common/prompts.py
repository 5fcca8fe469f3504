"""Class-name prompts: CLIP's 80 ImageNet templates, class-name files and prompt-ensemble classifiers.

Used by zero-shot classification and box classification; this is the one place the templates live.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.errors import UserError

if TYPE_CHECKING:  # torch loads with the encoder, after a command has parsed its options
    import torch


# The 80 prompt templates OpenAI published with CLIP for ImageNet zero-shot classification.
CLIP_IMAGENET_TEMPLATES = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

TEMPLATE_SETS = {"clip80": CLIP_IMAGENET_TEMPLATES, "photo": ("a photo of a {}.",), "name": ("{}",)}
TEMPLATES_HELP = (
    "prompt templates: 'clip80' (CLIP's 80 ImageNet templates, averaged), 'photo' ('a photo of a {}.'), "
    "'name' (the bare class name) or a text file with one template per line, each containing {}"
)


def load_templates(spec: str) -> tuple[str, ...]:
    """A named template set or a file of templates (one per line, each with `{}`)."""
    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--templates {spec!r} is neither one of {sorted(TEMPLATE_SETS)} nor a file")
    templates = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if not templates:
        raise UserError(f"template file {path} is empty")
    bad = [t for t in templates if "{}" not in t]
    if bad:
        raise UserError(f"template file {path}: every template needs a {{}} for the class name, e.g. not {bad[0]!r}")
    return templates


def named_classnames(name: str) -> list[str] | None:
    """A named class list: 'imagenet1k' is the 1,000 ImageNet class names in class-index order (the order of
    the sorted WordNet-id folders and of ImageNet-V2's folders 0..999), as open_clip ships them (OpenAI's
    cleaned names). None for any other name."""
    if name != "imagenet1k":
        return None
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES  # here: open_clip pulls in timm

    return list(IMAGENET_CLASSNAMES)


def imagenet_names_by_wnid() -> dict[str, str]:
    """WordNet id (the ImageNet class-folder name, e.g. n01440764) -> its name in the 'imagenet1k' list; the
    ids in class-index order come from timm's ImageNet metadata (timm is a dependency of open_clip)."""
    from timm.data import ImageNetInfo

    return dict(zip(ImageNetInfo().label_names(), named_classnames("imagenet1k")))


def load_classnames(path: Path) -> list[str] | dict[str, str]:
    """Class names from a named list (`named_classnames`) or a file: a JSON list (index order), a JSON object
    (folder -> name), or one name per line. An empty list is an error, never a silent zero."""
    named = named_classnames(str(path))
    if named is not None:
        return named
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--classnames {path} is neither a file nor imagenet1k")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"class-name file {path} is not UTF-8 text ({error.reason} at byte {error.start})") from error
    if path.suffix == ".json":
        try:
            names = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON: {error}") from error
        if isinstance(names, dict):
            names = {str(key): str(value).strip() for key, value in names.items()}
        elif isinstance(names, list):
            names = [str(name).strip() for name in names]
        else:
            raise UserError(f"{path} must hold a JSON list of names or an object folder -> name")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise UserError(f"class-name file {path} holds no class names")
    empty = [key for key, value in (names.items() if isinstance(names, dict) else enumerate(names)) if not value]
    if empty:
        raise UserError(f"class-name file {path} has an empty name (entry {empty[0]})")
    return names


def fill_template(template: str, classname: str) -> str:
    # replace, not str.format: class names may contain braces.
    return template.replace("{}", classname)


def class_text_embeddings(encoder, classnames: list[str], templates: tuple[str, ...]) -> torch.Tensor:
    """`(C, D)` prompt-ensemble classifier: per class, the mean of the L2-normalised embeddings of its
    prompts, renormalised (CLIP's zero-shot recipe). `encoder` is an `eval.common.encoder.Encoder`."""
    if not classnames:
        raise UserError("the class list is empty: nothing to classify against")
    if not templates:
        raise UserError("no prompt templates")
    import torch.nn.functional as F

    prompts = [fill_template(template, name) for name in classnames for template in templates]
    embeddings = encoder.texts(prompts).reshape(len(classnames), len(templates), -1)
    return F.normalize(F.normalize(embeddings, dim=-1).mean(dim=1), dim=-1)
