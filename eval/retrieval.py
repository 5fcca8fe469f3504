"""Image-text retrieval: image -> text and text -> image recall@1/5/10, short or long captions.

    python -m eval.retrieval --model DIR --data captions.json --images DIR --out DIR [--long]

Data formats (detected):
* COCO captions JSON (`images` + `annotations` with `caption`), e.g. captions_val2017.json;
* Karpathy split JSON (`images` with `sentences` and `split`; --split picks the split), COCO 5k / Flickr30k 1k;
* a JSON list or JSON-lines of items with an image (`image`, `img_path`, `f_path` or `file_name`) and
  captions (`caption`, `captions`, `short_caption` / `long_caption`, or ShareGPT4V `conversations`,
  whose first `gpt` turn is the caption); lines naming the same image are one image with several captions;
* a folder of DCI annotation JSON files (`image` + `extra_caption`).
--long encodes captions with the 248-token path (ShareGPT4V-1k: --limit 1000, DCI, any long captions).

Image -> text is a hit at K when any caption of the image ranks in the top K; text -> image when the
caption's image does. Identical caption strings are interchangeable: a caption that also belongs to
another image counts as correct for both.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from eval.common.cli import (EvalError, add_cache_args, add_model_args, add_output_args, non_negative_int,
                             run_main, wrapped)
from eval.common.coverage import coverage
from eval.common.encoder import Encoder
from eval.common.images import resolve_image_path
from eval.common.learned_fusion import learned_fusion, load_encoder
from eval.common.jsonfiles import iter_items, load_json
from eval.common.metrics import curve_ks, recall_at_k, recall_keys, retrieval_ranks
from eval.common.reporting import line_plot, markdown_table, model_label, write_results

IMAGE_KEYS = ("image", "img_path", "f_path", "file_name", "filename")
SHORT_CAPTION_KEYS = ("short_caption", "captions", "caption", "sentences", "conversations")
LONG_CAPTION_KEYS = ("long_caption", "captions", "caption", "sentences", "conversations")
RECALL_KS = (1, 5, 10)


@dataclass
class RetrievalSet:
    """Images and their captions: `caption_owner[j]` is the index of caption j's image."""

    image_names: list[str] = field(default_factory=list)
    captions: list[list[str]] = field(default_factory=list)  # per image
    counts: Counter = field(default_factory=Counter)
    format: str = ""

    def add(self, image: str, captions: list[str], index: dict[str, int]) -> None:
        """Add captions to `image` (merged with earlier captions of the same image)."""
        if image not in index:
            index[image] = len(self.image_names)
            self.image_names.append(image)
            self.captions.append([])
        self.captions[index[image]].extend(captions)


def _caption_texts(value) -> list[str] | None:
    """Caption strings from a string, a list of strings, Karpathy `sentences` or ShareGPT4V turns."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if not isinstance(value, list):
        return None
    texts = []
    for entry in value:
        if isinstance(entry, str):
            texts.append(entry.strip())
        elif isinstance(entry, dict) and "raw" in entry:  # Karpathy sentence
            texts.append(str(entry["raw"]).strip())
        elif isinstance(entry, dict) and entry.get("from") == "gpt":  # ShareGPT4V: the first answer
            return [str(entry.get("value", "")).strip()]
        elif not (isinstance(entry, dict) and entry.get("from") == "human"):
            return None
    return [t for t in texts if t]


def item_captions(item: dict, long: bool, caption_field: str | None) -> tuple[str | None, list[str] | None]:
    image = next((item[k] for k in IMAGE_KEYS if isinstance(item.get(k), str)), None)
    keys = [caption_field] if caption_field else (LONG_CAPTION_KEYS if long else SHORT_CAPTION_KEYS)
    for key in keys:
        if key in item:
            return image, _caption_texts(item[key])
    return image, None


def _from_items(items, long: bool, caption_field: str | None, data: RetrievalSet) -> None:
    index: dict[str, int] = {}
    for item in items:
        data.counts["items"] += 1
        if item.error is not None or not isinstance(item.value, dict):
            data.counts["skipped_malformed"] += 1
            continue
        image, captions = item_captions(item.value, long, caption_field)
        if image is None or captions is None:
            data.counts["skipped_malformed"] += 1
        elif not captions:
            data.counts["skipped_empty_caption"] += 1
        else:
            data.add(image, captions, index)


def _from_coco_captions(document: dict, data: RetrievalSet) -> None:
    index: dict[str, int] = {}
    names = {image.get("id"): image.get("file_name") for image in document["images"] if isinstance(image, dict)}
    by_image: dict = {}
    for annotation in document["annotations"]:
        data.counts["items"] += 1
        caption = annotation.get("caption") if isinstance(annotation, dict) else None
        if not isinstance(caption, str) or not caption.strip() or names.get(annotation.get("image_id")) is None:
            data.counts["skipped_malformed"] += 1
            continue
        by_image.setdefault(annotation["image_id"], []).append(caption.strip())
    for image_id, name in names.items():  # the file's image order
        if image_id in by_image:
            data.add(name, by_image[image_id], index)
        else:
            data.counts["images_without_captions"] += 1


def _from_karpathy(document: dict, split: str, data: RetrievalSet) -> None:
    index: dict[str, int] = {}
    for image in document["images"]:
        if split != "all" and image.get("split") != split:
            continue
        data.counts["items"] += 1
        captions = _caption_texts(image.get("sentences"))
        name = image.get("filename")
        if not captions or not isinstance(name, str):
            data.counts["skipped_malformed"] += 1
            continue
        data.add(f"{image['filepath']}/{name}" if image.get("filepath") else name, captions, index)
    if not data.image_names:
        raise EvalError(f"the Karpathy file has no images in split {split!r} (use --split train/val/test/restval/all)")


def _from_dci(folder: Path, data: RetrievalSet) -> None:
    index: dict[str, int] = {}
    files = sorted(folder.glob("*.json"))
    if not files:
        raise EvalError(f"{folder} is a folder but holds no DCI annotation .json files")
    for path in files:
        data.counts["items"] += 1
        try:
            item = load_json(path)
        except EvalError:
            data.counts["skipped_malformed"] += 1
            continue
        caption = item.get("extra_caption") if isinstance(item, dict) else None
        if not isinstance(caption, str) or not caption.strip() or not isinstance(item.get("image"), str):
            data.counts["skipped_malformed"] += 1
            continue
        data.add(item["image"], [caption.strip()], index)


def load_retrieval_set(path: Path, long: bool = False, split: str = "test", caption_field: str | None = None,
                       limit: int = 0) -> RetrievalSet:
    """Read any supported format; `limit` > 0 keeps the first `limit` images (ShareGPT4V-1k: 1000)."""
    data = RetrievalSet()
    path = Path(path)
    if path.is_dir():
        data.format = "dci"
        _from_dci(path, data)
    elif path.suffix == ".json" and isinstance(document := load_json(path), dict):
        if isinstance(document.get("annotations"), list) and isinstance(document.get("images"), list):
            data.format = "coco-captions"
            _from_coco_captions(document, data)
        elif isinstance(document.get("images"), list) and any("sentences" in i for i in document["images"][:5]):
            data.format = "karpathy"
            _from_karpathy(document, split, data)
        else:
            raise EvalError(f"{path}: a JSON object must be COCO captions (images + annotations) or a Karpathy "
                            "split file (images with sentences)")
    else:
        data.format = "items"
        _from_items(iter_items(path), long, caption_field, data)
    if limit and len(data.image_names) > limit:
        data.counts["images_not_read_limit"] = len(data.image_names) - limit
        data.counts["captions_not_read_limit"] = sum(len(c) for c in data.captions[limit:])
        data.image_names, data.captions = data.image_names[:limit], data.captions[:limit]
    if not data.image_names:
        raise EvalError(f"{path} holds no image with a caption" + (f" ({dict(data.counts)})" if data.counts else ""))
    return data


def positive_sets(captions: list[list[str]]) -> tuple[list[str], list[int], list[list[int]], list[list[int]]]:
    """Flatten per-image captions; positives by string equality.

    Returns (texts, owner image of each text, per image the text indices that are correct for it,
    per text the image indices that are correct for it).
    """
    texts = [text for image_captions in captions for text in image_captions]
    owners = [image for image, image_captions in enumerate(captions) for _ in image_captions]
    images_of_text: dict[str, set[int]] = {}
    for text, owner in zip(texts, owners):
        images_of_text.setdefault(text, set()).add(owner)
    rows_of_text: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        rows_of_text.setdefault(text, []).append(row)
    image_positives = [sorted({row for text in set(image_captions) for row in rows_of_text[text]})
                       for image_captions in captions]
    text_positives = [sorted(images_of_text[text]) for text in texts]
    return texts, owners, image_positives, text_positives


def evaluate(encoder: Encoder, data: RetrievalSet, images_root: Path, long: bool) -> dict:
    paths = [resolve_image_path(images_root, name, try_basename=True) for name in data.image_names]
    fusion = learned_fusion(encoder)  # a Fashion-FINE folder: its trained global + local embeddings
    encoded = encoder.images(paths, fusion)
    kept = [i for i in range(len(paths)) if encoded.ok[i]]
    lost = len(paths) - len(kept)
    if lost:
        data.counts["skipped_images_failed"] = lost
        data.counts["skipped_captions_of_failed_images"] = sum(len(data.captions[i]) for i in range(len(paths))
                                                               if not encoded.ok[i])
    for reason, count in encoded.failures.items():
        data.counts[f"images_{reason}"] = count
    captions = [data.captions[i] for i in kept]
    texts, _, image_positives, text_positives = positive_sets(captions)
    not_read = data.counts["images_not_read_limit"]
    cover = coverage(len(paths) + not_read, len(kept),
                     {"missing_or_unreadable_image": lost, "not_read_limit": not_read}, "images")
    image_embeds = encoded.embeddings[kept]
    text_embeds = encoder.texts(texts, long=long, fusion=fusion)
    i2t = retrieval_ranks(image_embeds, text_embeds, image_positives)
    t2i = retrieval_ranks(text_embeds, image_embeds, text_positives)
    return {
        "i2t": recall_at_k(i2t, RECALL_KS), "t2i": recall_at_k(t2i, RECALL_KS),
        "i2t_curve": recall_at_k(i2t, curve_ks(len(texts))), "t2i_curve": recall_at_k(t2i, curve_ks(len(kept))),
        "num_images": len(kept), "num_captions": len(texts), "coverage": cover,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=wrapped("Ties: a wrong candidate scoring exactly as high as the best correct one "
                                     "ranks ahead of it. Images that are missing or unreadable are dropped with their "
                                     "captions and counted; image paths that do not exist under --images are also "
                                     "tried as bare file names under --images."))
    add_model_args(parser)
    parser.add_argument("--data", required=True, type=Path,
                        help="annotation file (.json / .jsonl) or a folder of DCI annotation files")
    parser.add_argument("--images", type=Path, default=None,
                        help="root folder for relative image paths (default: the data file's folder)")
    parser.add_argument("--long", action="store_true",
                        help="encode captions with the 248-token long-text path (and prefer long_caption fields)")
    parser.add_argument("--split", default="test", help="split of a Karpathy file: test (default), val, train, restval "
                        "or all")
    parser.add_argument("--caption-field", default=None,
                        help="read captions from this field of each item (default: the first present of "
                        "short_caption/long_caption (by --long), captions, caption, sentences, conversations)")
    parser.add_argument("--limit", type=non_negative_int, default=0,
                        help="use the first N images only (ShareGPT4V-1k: 1000; 0: all); results.json says so")
    add_cache_args(parser)
    add_output_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.time()
    if not args.data.exists():
        raise EvalError(f"--data {args.data} does not exist")
    data = load_retrieval_set(args.data, args.long, args.split, args.caption_field, args.limit)
    images_root = args.images or (args.data if args.data.is_dir() else args.data.parent)
    encoder = load_encoder(args)
    if args.long and learned_fusion(encoder) is not None:
        raise EvalError("--long: a Fashion-FINE folder embeds texts with the 77-token path it was finetuned on")
    scores = evaluate(encoder, data, images_root, args.long)
    metrics = {**recall_keys("i2t", scores["i2t"]), **recall_keys("t2i", scores["t2i"]),
               "num_images": scores["num_images"], "num_captions": scores["num_captions"]}
    table = markdown_table(["direction", *[f"R@{k}" for k in RECALL_KS]],
                           [["image -> text", *scores["i2t"].values()], ["text -> image", *scores["t2i"].values()]])
    table += f"\n{scores['num_images']} images, {scores['num_captions']} captions ({'long' if args.long else 'short'} " \
             f"text path, format {data.format}). {scores['coverage']['note']}\n"
    args.out.mkdir(parents=True, exist_ok=True)
    line_plot(args.out / "recall_curve.png", {"image -> text": scores["i2t_curve"], "text -> image": scores["t2i_curve"]},
              f"retrieval recall@K ({model_label(args.model)})", "K", "recall@K")
    counts = {**data.counts, "scored_images": scores["num_images"], "scored_captions": scores["num_captions"]}
    result = write_results(
        args.out, "retrieval_long" if args.long else "retrieval", metrics, model=args.model, data=str(args.data),
        counts=counts, started=started, table=table,
        extra={**scores["coverage"], "format": data.format, "long": args.long, "encoder": encoder.describe(),
               "embedding": "learned fusion" if learned_fusion(encoder) else "global",
               "cache": encoder.cache.summary(), "plots": ["recall_curve.png"],
               "details": {"i2t_curve": scores["i2t_curve"], "t2i_curve": scores["t2i_curve"]}},
    )
    print(f"retrieval I->T R@1 {metrics['i2t_r1']:.4f} T->I R@1 {metrics['t2i_r1']:.4f} on {metrics['num_images']} "
          f"images -> {args.out / 'results.json'}")
    return result


if __name__ == "__main__":
    sys.exit(run_main(main))
