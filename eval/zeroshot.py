"""Zero-shot classification over an image folder per class (ImageNet-style), with prompt ensembles.

    python -m eval.zeroshot --model DIR --data imagenet/val --classnames classnames.txt --output_dir DIR

The folder is read with torchvision's ImageFolder: one sub-folder per class, images inside, e.g. the
ImageNet validation set after the usual re-sorting into WordNet-id folders (`val/n01440764/
ILSVRC2012_val_00000293.JPEG`, suffixes in any case) with a class-name file in the sorted order of those
folders, or ImageNet-V2 (folders 0..999, names taken by index). Each class is represented by the mean of
its L2-normalised prompt embeddings (CLIP's 80 templates by default), renormalised; an image is classified
by cosine similarity. Reports top-1 and top-5. (A folder tree lists each file once: no duplicate records.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.common.classification import ClassificationRun, ClassificationTask, classification_parser
from eval.common.cli import require_dir
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.prompts import imagenet_names_by_wnid, load_classnames
from fgclip.cli import CommandParser, entry_point, non_negative_int, option, options_from
from fgclip.errors import UserError

TASK = ClassificationTask("zeroshot", "zero-shot classification", "images")
WORDNET_ID = re.compile(r"n\d{8}")


def read_image_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(class folder names, [(image path, class index)]) via ImageFolder; empty classes are kept."""
    from torchvision.datasets import ImageFolder

    require_dir(root, "--data")
    if not any(entry.is_dir() for entry in root.iterdir()):
        raise UserError(f"{root} has no class sub-folders: the class list is empty")
    try:
        folder = ImageFolder(str(root), allow_empty=True)
    except (FileNotFoundError, OSError) as error:
        raise UserError(f"{root}: {error}") from error
    return folder.classes, folder.samples


def class_display_names(folders: list[str], classnames_file: Path | None) -> list[str]:
    """The name each class folder is prompted with.

    Without a file: the folder name (underscores as spaces). 'imagenet1k' with WordNet-id folders: each
    folder's ImageNet name, looked up by id. With a JSON object: folder -> name.
    With a list (JSON or one per line): if every folder name is an integer, name i belongs to folder
    "i" (ImageNet-V2's layout: folders 0..999, which ImageFolder sorts as text, 0, 1, 10, 100, ...);
    otherwise names are in the sorted order of the folders.
    """
    if classnames_file is None:
        return [folder.replace("_", " ") for folder in folders]
    if str(classnames_file) == "imagenet1k" and all(WORDNET_ID.fullmatch(folder) for folder in folders):
        names = imagenet_names_by_wnid()  # by id, so a subset of the 1,000 class folders is named right too
        unknown = [folder for folder in folders if folder not in names]
        if unknown:
            raise UserError(f"class folder {unknown[0]!r} is not one of the 1,000 ImageNet WordNet ids")
        return [names[folder] for folder in folders]
    names = load_classnames(classnames_file)
    if isinstance(names, dict):
        missing = [folder for folder in folders if folder not in names]
        if missing:
            raise UserError(f"--classnames {classnames_file} has no name for class folder {missing[0]!r}")
        return [names[folder] for folder in folders]
    if all(folder.isdigit() for folder in folders):
        out_of_range = [folder for folder in folders if int(folder) >= len(names)]
        if out_of_range:
            raise UserError(f"class folder {out_of_range[0]} has no name: --classnames lists {len(names)} names")
        return [names[int(folder)] for folder in folders]
    if len(names) != len(folders):
        raise UserError(f"--classnames {classnames_file} has {len(names)} names for {len(folders)} class folders")
    return names


@dataclass
class ZeroshotOptions:
    data: Path = option("image folder with one sub-folder per class")
    classnames: Path | None = option(
        "class names to prompt with: imagenet1k (the 1,000 ImageNet names: looked up by WordNet id for "
        "n01440764-style folders, by index for ImageNet-V2's 0..999), a file with one per line or a JSON list (in "
        "the order of the sorted class folders, or by index when folders are numbered 0..N-1), or a JSON object "
        "folder -> name (default: the folder names)",
        None,
    )
    max_per_class: int = option(
        "use at most N images per class (0: all); results.json says how many were not read", 0, type=non_negative_int
    )


EPILOG = (
    "Ties: a class scoring exactly as high as the true class ranks ahead of it. "
    "Unreadable images are skipped and counted; class folders without images "
    "stay in the class list (as distractors) and are counted."
)


def build_parser() -> CommandParser:
    return classification_parser("python -m eval.zeroshot", __doc__, ZeroshotOptions, epilog=EPILOG)


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, run = options_from(args, ZeroshotOptions), ClassificationRun.parsed(args)
    require_dir(options.data, "--data")
    run.prepare_output([options.data], TASK.owned)
    folders, samples = read_image_folder(options.data)
    names = class_display_names(folders, options.classnames)
    counts = {
        "images": len(samples),
        "classes": len(folders),
        "empty_classes": len(set(range(len(folders))) - {label for _, label in samples}),
    }
    if options.max_per_class:
        kept, seen = [], {}
        for path, label in samples:
            seen[label] = seen.get(label, 0) + 1
            if seen[label] <= options.max_per_class:
                kept.append((path, label))
        counts["images_not_read_limit"] = len(samples) - len(kept)
        samples = kept
    encoder = run.load_encoder()
    import torch  # loaded with the encoder

    encoded = encoder.images([Path(path) for path, _ in samples])
    for reason, count in encoded.failures.items():
        counts[f"skipped_{reason}"] = count
    counts["scored"] = int(encoded.ok.sum())
    cover = Coverage(
        "images",
        len(samples),
        counts["scored"],
        skipped_reasons(counts),
        not_read=counts.get("images_not_read_limit", 0),
        not_read_unit="images",
    )
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    return run.classify_and_finish(TASK, encoded, labels, names, cover, data=options.data, counts=counts)


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
