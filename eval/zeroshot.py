"""Zero-shot classification over an image folder per class (ImageNet-style), with prompt ensembles.

    python -m eval.zeroshot --model DIR --data imagenet/val --classnames classnames.txt --out DIR

The folder is read with torchvision's ImageFolder: one sub-folder per class, images inside, e.g. the
ImageNet validation set after the usual re-sorting into WordNet-id folders (`val/n01440764/
ILSVRC2012_val_00000293.JPEG`, suffixes in any case) with a class-name file in the sorted order of those
folders, or ImageNet-V2 (folders 0..999, names taken by index). Each class is represented by the mean of
its L2-normalised prompt embeddings (CLIP's 80 templates by default), renormalised; an image is classified
by cosine similarity. Reports top-1 and top-5. (A folder tree lists each file once: no duplicate records.)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.datasets import ImageFolder

from eval.common.cli import (EvalError, add_cache_args, add_model_args, add_output_args, non_negative_int,
                             owned_outputs, prepare_out, require_dir, run_main, wrapped)
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.encoder import Encoder
from eval.common.metrics import classification_report
from eval.common.prompts import (TEMPLATES_HELP, class_text_embeddings, imagenet_names_by_wnid, load_classnames,
                                 load_templates)
from eval.common.reporting import bar_plot, markdown_table, model_label, write_results

OWNED = owned_outputs({"zeroshot"}, {"results.md", "zeroshot.png"})
WORDNET_ID = re.compile(r"n\d{8}")


def read_image_folder(root: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """(class folder names, [(image path, class index)]) via ImageFolder; empty classes are kept."""
    require_dir(root, "--data")
    if not any(entry.is_dir() for entry in root.iterdir()):
        raise EvalError(f"{root} has no class sub-folders: the class list is empty")
    try:
        folder = ImageFolder(str(root), allow_empty=True)
    except (FileNotFoundError, OSError) as error:
        raise EvalError(f"{root}: {error}") from error
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
            raise EvalError(f"class folder {unknown[0]!r} is not one of the 1,000 ImageNet WordNet ids")
        return [names[folder] for folder in folders]
    names = load_classnames(classnames_file)
    if isinstance(names, dict):
        missing = [folder for folder in folders if folder not in names]
        if missing:
            raise EvalError(f"--classnames {classnames_file} has no name for class folder {missing[0]!r}")
        return [names[folder] for folder in folders]
    if all(folder.isdigit() for folder in folders):
        out_of_range = [folder for folder in folders if int(folder) >= len(names)]
        if out_of_range:
            raise EvalError(f"class folder {out_of_range[0]} has no name: --classnames lists {len(names)} names")
        return [names[int(folder)] for folder in folders]
    if len(names) != len(folders):
        raise EvalError(f"--classnames {classnames_file} has {len(names)} names for {len(folders)} class folders")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.zeroshot", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=wrapped("Ties: a class scoring exactly as high as the true class ranks ahead of it. "
                                     "Unreadable images are skipped and counted; class folders without images stay "
                                     "in the class list (as distractors) and are counted."))
    add_model_args(parser)
    parser.add_argument("--data", required=True, type=Path, help="image folder with one sub-folder per class")
    parser.add_argument("--classnames", type=Path, default=None,
                        help="class names to prompt with: imagenet1k (the 1,000 ImageNet names: looked up by WordNet "
                        "id for n01440764-style folders, by index for ImageNet-V2's 0..999), a file with one per line "
                        "or "
                        "a JSON list (in the order of the sorted class folders, or by index when folders are "
                        "numbered 0..N-1), or a JSON object folder -> name (default: the folder names)")
    parser.add_argument("--templates", default="clip80", help=TEMPLATES_HELP + " (default clip80)")
    parser.add_argument("--max-per-class", type=non_negative_int, default=0,
                        help="use at most N images per class (0: all); results.json says how many were not read")
    parser.add_argument("--per-class", action="store_true", help="add the per-class top-1 table to results.md")
    add_cache_args(parser)
    add_output_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.time()
    templates = load_templates(args.templates)
    require_dir(args.data, "--data")
    out = prepare_out(args, [args.data, args.model], OWNED)
    folders, samples = read_image_folder(args.data)
    names = class_display_names(folders, args.classnames)
    counts = {"images": len(samples), "classes": len(folders),
              "empty_classes": len(set(range(len(folders))) - {label for _, label in samples})}
    if args.max_per_class:
        kept, seen = [], {}
        for path, label in samples:
            seen[label] = seen.get(label, 0) + 1
            if seen[label] <= args.max_per_class:
                kept.append((path, label))
        counts["images_not_read_limit"] = len(samples) - len(kept)
        samples = kept
    encoder = Encoder.from_args(args)
    encoded = encoder.images([Path(path) for path, _ in samples])
    for reason, count in encoded.failures.items():
        counts[f"skipped_{reason}"] = count
    counts["scored"] = int(encoded.ok.sum())
    cover = Coverage("images", len(samples), counts["scored"], skipped_reasons(counts),
                     not_read=counts.get("images_not_read_limit", 0), not_read_unit="images")

    classifier = class_text_embeddings(encoder, names, templates)
    cover.truncated = encoder.truncated_texts()
    cover.warn()
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)[encoded.ok]
    scores = encoded.embeddings[encoded.ok] @ classifier.T
    metrics, per_class = classification_report(scores, labels, names)
    metrics.update(num_images=counts["scored"], num_classes=len(names))
    table = markdown_table(["images", "classes", "templates", "top-1", "top-5", "mean per-class top-1"],
                           [[metrics["num_images"], len(names), len(templates), metrics["top1"], metrics["top5"],
                             metrics["mean_class_top1"]]])
    if args.per_class:
        table += "\n" + markdown_table(["class", "images", "top-1"], [[n, v["count"], v["top1"]] for n, v in per_class.items()])
    bar_plot(out / "zeroshot.png", {"top-1": metrics["top1"], "top-5": metrics["top5"],
                                    "mean per-class top-1": metrics["mean_class_top1"]},
             f"zero-shot classification ({model_label(args.model)})", "accuracy", chance=1 / len(names))
    result = write_results(
        out, "zeroshot", metrics, model=args.model, data=str(args.data), counts=counts, started=started,
        table=table + f"\n{cover.note}\n",
        extra={**cover.as_json(), "templates": args.templates, "num_templates": len(templates),
               "encoder": encoder.describe(), "cache": encoder.cache.summary(), "details": {"per_class": per_class},
               "plots": ["zeroshot.png"]},
    )
    print(f"zero-shot top-1 {metrics['top1']:.4f} top-5 {metrics['top5']:.4f} on {cover.summary} "
          f"-> {out / 'results.json'}")
    cover.enforce(args.strict, out / "results.json")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
