"""Pictures of FG-CLIP's dense alignment: patch-text similarity heatmaps, and boxes with their best captions.

    python -m eval.dense_vis --model DIR --image photo.jpg --text "a red car" --text "a tree" --output_dir DIR
    python -m eval.dense_vis --model DIR --record data.jsonl --index 3 --output_dir DIR      # boxes of a record

heatmap.png: the image, then for each text the cosine similarity between every patch embedding
(`model.encode_dense`) and the text embedding (`model.encode_text`), upsampled over the image.
regions.png (with --boxes or --record): each box's region embedding (`model.encode_regions`) against the
candidate captions, labelled with the best match (green when it is the box's own caption).
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from eval.common.cli import owned_outputs
from eval.common.command import EncoderRun
from eval.common.jsonfiles import iter_items
from eval.common.options import OutputFolder, encoder_parser
from eval.common.reporting import markdown_table, pyplot, write_results
from fgclip.cli import CommandParser, entry_point, fraction, non_negative_int, option, options_from, positive_float
from fgclip.data.schema import RecordError, check_bbox, record_from_json
from fgclip.errors import UserError

if TYPE_CHECKING:  # loaded in main, after the options are checked
    import torch
    from PIL import Image

OWNED = owned_outputs({"dense_vis"}, {"results.md", "heatmap.png", "regions.png"})

WHY_MAPS_LOOK_INVERTED = """\
Why similarity maps can look "inverted" (objects cold, background hot):
  * Path. CLIP's ordinary last block mixes every patch with global context through attention, so its patch
    tokens align poorly with text, and maps made from them often light up the background. FG-CLIP (like
    MaskCLIP/CLIPSelf) reads patches from the value path of the last block (encode_dense), which keeps
    each patch local; this tool always uses that path.
  * Normalisation. --normalize minmax stretches each map to [0, 1] on its own: when a text matches nothing
    in the image, or everything about equally, the "hot" patches are only the least dissimilar ones and
    the picture can look inverted. --normalize raw shows the cosine values on one colour scale shared by
    all texts, so weak maps look weak.
  * One text alone. Cosine similarity to a single text has a large component shared by all patches;
    --normalize softmax compares several texts per patch (softmax over texts, at the model's temperature),
    which shows which text wins where. Give a background text too (e.g. "background").
"""


def parse_box(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
        return check_bbox(values if len(values) == 4 else None)
    except (ValueError, RecordError) as error:
        raise argparse.ArgumentTypeError(
            f"a box is x1,y1,x2,y2 normalised to [0, 1] with x1<x2, y1<y2: {error}"
        ) from error


def similarity_maps(dense: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    """`(T, H, W)` cosine similarity of `(H, W, D)` normalised patches to `(T, D)` normalised texts."""
    import torch

    return torch.einsum("hwd,td->thw", dense, text_embeds)


def normalize_maps(cosine: torch.Tensor, mode: str, temperature: float) -> torch.Tensor:
    """raw: unchanged; minmax: each map scaled to [0, 1]; softmax: per patch over the T texts."""
    if mode == "raw":
        return cosine
    if mode == "softmax":
        return (cosine * temperature).softmax(dim=0)
    low = cosine.flatten(1).min(dim=1).values[:, None, None]
    high = cosine.flatten(1).max(dim=1).values[:, None, None]
    return (cosine - low) / (high - low).clamp(min=1e-12)


def _display_image(path: Path, max_side: int = 512) -> Image.Image:
    from PIL import Image

    from fgclip.images import to_rgb

    with Image.open(path) as image:
        image = to_rgb(image)
    scale = max_side / max(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    return image


def draw_heatmaps(
    path: Path, image: Image.Image, maps: torch.Tensor, texts: list[str], mode: str, alpha: float
) -> None:
    import torch.nn.functional as F

    plt = pyplot()
    # The model squashes the whole image to a square, so the patch grid spans the full image: stretch it back.
    upsampled = F.interpolate(
        maps[:, None].float(), size=(image.height, image.width), mode="bilinear", align_corners=False
    )[:, 0]
    vmin, vmax = (float(maps.min()), float(maps.max())) if mode == "raw" else (0.0, 1.0)
    columns = len(texts) + 1
    figure, axes = plt.subplots(1, columns, figsize=(3.2 * columns, 3.6))
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    for axis, heat, text in zip(axes[1:], upsampled, texts):
        axis.imshow(image)
        shown = axis.imshow(heat.numpy(), cmap="jet", alpha=alpha, vmin=vmin, vmax=vmax)
        axis.set_title("\n".join(textwrap.wrap(text, 28)[:3]), fontsize=8)
    for axis in axes:
        axis.axis("off")
    label = {"raw": "cosine similarity", "minmax": "similarity, min-max per map", "softmax": "softmax over texts"}[mode]
    figure.colorbar(shown, ax=list(axes[1:]), fraction=0.025, pad=0.02, label=label)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def draw_regions(
    path: Path, image: Image.Image, boxes: list[list[float]], labels: list[str], correct: list[bool | None]
):
    import matplotlib.patches as patches

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 6 * image.height / image.width))
    axis.imshow(image)
    for box, label, right in zip(boxes, labels, correct):
        x1, y1, x2, y2 = box[0] * image.width, box[1] * image.height, box[2] * image.width, box[3] * image.height
        colour = "yellow" if right is None else ("lime" if right else "red")
        axis.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2))
        axis.text(
            x1,
            y1,
            "\n".join(textwrap.wrap(label, 32)[:2]),
            fontsize=7,
            color="black",
            va="bottom",
            bbox={"facecolor": colour, "alpha": 0.8, "pad": 1, "edgecolor": "none"},
        )
    axis.axis("off")
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)


def load_record_regions(path: Path, index: int, images_root: Path | None):
    """(image path, boxes, own captions, candidate captions) of the index-th record of a JSONL file."""
    for position, item in enumerate(iter_items(path)):
        if position != index:
            continue
        if item.error is not None:
            raise UserError(f"{item.source}: {item.error}")
        try:
            record = record_from_json(item.value, require_captions=False)
        except RecordError as error:
            raise UserError(f"{item.source}: {error}") from error
        if not record.regions:
            raise UserError(f"{item.source} has no regions to draw")
        candidates = [text for region in record.regions for text in [region.caption, *region.hard_negatives]]
        return (
            record.resolve_image(images_root or path.parent),
            [r.bbox for r in record.regions],
            [r.caption for r in record.regions],
            list(dict.fromkeys(candidates)),
        )
    raise UserError(f"{path} has fewer than {index + 1} records")


@dataclass
class DenseVisOptions:
    image: Path | None = option("the image (not needed with --record)", None)
    text: list[str] = option("a text to map; repeat for several", default_factory=list, append=True)
    normalize: Literal["minmax", "raw", "softmax"] = option(
        "minmax: each map scaled to [0, 1]; raw: cosine on one shared scale; softmax: per patch over the texts "
        "(needs two or more)",
        "minmax",
    )
    temperature: float | None = option(
        "softmax scale (logit multiplier); default: the model's own exp(logit_scale)", None, type=positive_float
    )
    alpha: float = option("heatmap opacity over the image, in [0, 1]", 0.5, type=fraction)
    boxes: list[list[float]] | None = option(
        "boxes x1,y1,x2,y2 (normalised) to label with their best-matching text among --text (or --captions)",
        None,
        type=parse_box,
        nargs="+",
    )
    captions: list[str] | None = option("candidate captions for --boxes (default: --text)", None, nargs="+")
    record: Path | None = option(
        "a record JSONL (data-format.md): draw the boxes of record --index, candidates = its region captions and hard "
        "negatives; --text defaults to its region captions",
        None,
    )
    index: int = option("which record of --record", 0, type=non_negative_int)
    images: Path | None = option("root for the record's image path (default: the record file's folder)", None)


def build_parser() -> CommandParser:
    return encoder_parser(
        "python -m eval.dense_vis",
        __doc__,
        DenseVisOptions,
        epilog=WHY_MAPS_LOOK_INVERTED,
        cache=False,
        output=OutputFolder,
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, run = options_from(args, DenseVisOptions), EncoderRun.parsed(args, cache=False)
    own_captions: list[str] | None = None
    boxes, candidates = options.boxes, options.captions
    if options.record is not None:
        image_path, boxes, own_captions, record_candidates = load_record_regions(
            options.record, options.index, options.images
        )
        candidates = candidates or record_candidates
        texts = options.text or list(dict.fromkeys(own_captions))
    else:
        if options.image is None:
            raise UserError("give --image (with --text) or --record")
        image_path, texts = options.image, options.text
        candidates = candidates or texts
    if not texts:
        raise UserError("give at least one --text to map")
    if options.normalize == "softmax" and len(texts) < 2:
        raise UserError("--normalize softmax compares texts: give two or more --text (e.g. add 'background')")
    if not image_path.is_file():
        raise UserError(f"image {image_path} does not exist")
    out = run.prepare_output([image_path, options.record], OWNED)
    encoder = run.load_encoder()
    temperature = options.temperature or float(encoder.model.logit_scale.detach().exp())
    dense = encoder.dense(image_path)
    text_embeds = encoder.texts(texts)
    cosine = similarity_maps(dense, text_embeds)
    maps = normalize_maps(cosine, options.normalize, temperature)
    try:
        image = _display_image(image_path)
    except OSError as error:
        raise UserError(f"cannot read image {image_path}: {error}") from error
    draw_heatmaps(out / "heatmap.png", image, maps, texts, options.normalize, options.alpha)
    grid_h, grid_w = cosine.shape[1:]
    per_text = []
    for text, values in zip(texts, cosine):
        peak = int(values.flatten().argmax())
        per_text.append(
            {
                "text": text,
                "min": float(values.min()),
                "max": float(values.max()),
                "mean": float(values.mean()),
                "peak_xy": [((peak % grid_w) + 0.5) / grid_w, ((peak // grid_w) + 0.5) / grid_h],
            }
        )
    metrics, plots = {"num_texts": len(texts)}, ["heatmap.png"]
    table = markdown_table(
        ["text", "min cos", "mean cos", "max cos", "peak (x, y)"],
        [
            [t["text"], t["min"], t["mean"], t["max"], f"({t['peak_xy'][0]:.2f}, {t['peak_xy'][1]:.2f})"]
            for t in per_text
        ],
    )
    regions = []
    if boxes:
        import torch

        encoded = encoder.regions([image_path], [torch.tensor(boxes, dtype=torch.float32)])
        if not encoded.ok.all():
            raise UserError(f"image {image_path} could not be read")
        scores = encoded.embeddings @ encoder.texts(candidates).T
        best = scores.argmax(dim=1)
        for i, box in enumerate(boxes):
            caption = candidates[int(best[i])]
            right = None if own_captions is None else caption == own_captions[i]
            regions.append(
                {
                    "box": box,
                    "best_caption": caption,
                    "score": float(scores[i, best[i]]),
                    "correct": right,
                    **({"caption": own_captions[i]} if own_captions else {}),
                }
            )
        draw_regions(
            out / "regions.png",
            image,
            boxes,
            [f"{r['best_caption']} ({r['score']:.2f})" for r in regions],
            [r["correct"] for r in regions],
        )
        plots.append("regions.png")
        metrics["num_regions"] = len(regions)
        if own_captions is not None:
            metrics["region_top1"] = sum(bool(r["correct"]) for r in regions) / len(regions)
        table += "\n" + markdown_table(
            ["box", "best caption", "score", "correct"],
            [
                [
                    ", ".join(f"{v:.2f}" for v in r["box"]),
                    r["best_caption"],
                    r["score"],
                    "" if r["correct"] is None else r["correct"],
                ]
                for r in regions
            ],
        )
    result = write_results(
        out,
        "dense_vis",
        metrics,
        model=run.model,
        data=str(options.record or image_path),
        counts={"texts": len(texts), "regions": len(regions)},
        started=run.started,
        table=table,
        extra={
            "complete": True,
            "note": f"all {len(texts)} texts and {len(regions)} boxes drawn",
            "normalize": options.normalize,
            "temperature": temperature,
            "grid": [int(grid_h), int(grid_w)],
            "encoder": encoder.describe(),
            "plots": plots,
            "details": {"texts": per_text, "regions": regions},
        },
    )
    print(f"dense similarity maps for {len(texts)} text(s) -> {out / 'heatmap.png'}")
    return result


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
