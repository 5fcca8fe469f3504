"""Image-text retrieval: image -> text and text -> image recall@1/5/10, short or long captions.

    python -m eval.retrieval --model DIR --data captions.json --images DIR --output_dir DIR [--long]

Data formats (detected), each read as the public file ships:
* Karpathy split JSON (`dataset_coco.json`, `dataset_flickr30k.json`): `images` with `filepath` (COCO only:
  "val2014" / "train2014", relative to the COCO root given as --images), `filename`, `split` ("train",
  "val", "test", "restval"; --split picks one) and `sentences[].raw`; COCO 5k / Flickr30k 1k = --split test;
* COCO captions JSON (`images` with int `id` + `file_name`, `annotations` with `image_id` + `caption`),
  e.g. captions_val2017.json;
* a JSON list or JSON-lines of items with an image (`image`, `img_path`, `f_path`, `file_name`) and
  captions (`caption`, `captions`, `short_caption` / `long_caption`, or ShareGPT4V `conversations`, whose
  first `gpt` turn is the caption); lines naming the same image are one image with several captions.
  ShareGPT4V-1k is the first 1,000 items of `share-captioner_coco_lcs_sam_1246k_1107.json` (a JSON list of
  `id`, `image` such as "coco/train2017/000000000009.jpg" relative to ShareGPT4V's data folder, and
  `conversations`): --long --limit 1000;
* a folder of DCI annotation files (`densely_captioned_images/annotations/*.json` or `complete/*.json`:
  `image` relative to the sibling `photos/` folder, the default --images; `short_caption`, `extra_caption`).
  The caption is DCI's own "extended caption", short_caption + newline + extra_caption (--caption_field
  short_caption or extra_caption picks one of them).
--long encodes captions with the 248-token path (ShareGPT4V-1k, DCI, any long captions).

Image -> text is a hit at K when any caption of the image ranks in the top K; text -> image when the
caption's image does. Identical caption strings are interchangeable: a caption that also belongs to
another image counts as correct for both. A record that repeats an earlier one (the same line, the same
Karpathy or DCI image entry, the same COCO annotation) is scored once and counted; captions longer than the
token window (77, or 248 with --long) are cut and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eval.common.cli import owned_outputs, wrapped
from eval.common.command import EncoderRun
from eval.common.coverage import Coverage, skipped_reasons
from eval.common.images import resolve_image_path
from eval.common.jsonfiles import iter_items, json_document, load_json
from eval.common.options import encoder_parser
from eval.common.reporting import line_plot, markdown_table, model_label
from fgclip.cli import CommandParser, entry_point, non_negative_int, option, options_from
from fgclip.errors import UserError

if TYPE_CHECKING:
    from eval.common.encoder import Encoder

IMAGE_KEYS = ("image", "img_path", "f_path", "file_name", "filename")
SHORT_CAPTION_KEYS = ("short_caption", "captions", "caption", "sentences", "conversations")
LONG_CAPTION_KEYS = ("long_caption", "captions", "caption", "sentences", "conversations")
KARPATHY_SPLITS = ("train", "val", "test", "restval")
DCI_CAPTION_FIELDS = ("extended", "short_caption", "extra_caption")
RECALL_KS = (1, 5, 10)
OWNED = owned_outputs({"retrieval", "retrieval_long"}, {"results.md", "recall_curve.png"})


@dataclass
class RetrievalSet:
    """Images and their captions, and the count of everything the file gave that is not among them.

    counts: `items` read; `skipped_malformed` (entries naming no image or with an unreadable caption
    field), `skipped_no_caption` (images named with no caption), `duplicate_records` (repeats, scored once),
    `images_not_read_limit` (images past the first `limit` the file names; not part of the given set).
    """

    limit: int = 0
    image_names: list[str] = field(default_factory=list)
    captions: list[list[str]] = field(default_factory=list)  # per image
    counts: Counter = field(default_factory=Counter)
    format: str = ""
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    _named: dict[str, None] = field(default_factory=dict, repr=False)  # every image the file names, in order
    _beyond_limit: set = field(default_factory=set, repr=False)
    _records: set = field(default_factory=set, repr=False)

    @property
    def full(self) -> bool:
        return bool(self.limit) and len(self._named) >= self.limit

    def malformed(self) -> None:
        """Count an entry that names no usable image (past the limit it is simply not read)."""
        self.counts["items_not_read_limit" if self.full else "skipped_malformed"] += 1

    def add(self, image: str, captions: list[str], record_key=None) -> None:
        """Add captions to `image` (merged with earlier captions of the same image); a record whose
        `record_key` was seen before is a duplicate: counted, not added."""
        if image not in self._named and self.full:
            self._beyond_limit.add(image)
            return
        if record_key is not None:
            if record_key in self._records:
                self.counts["duplicate_records"] += 1
                return
            self._records.add(record_key)
        self._named.setdefault(image)
        if not captions:
            return
        if image not in self._index:
            self._index[image] = len(self.image_names)
            self.image_names.append(image)
            self.captions.append([])
        self.captions[self._index[image]].extend(captions)

    def finish(self) -> None:
        """Count the images the file names that got no caption, and those past the limit."""
        self.counts["skipped_no_caption"] += sum(1 for image in self._named if image not in self._index)
        if self._beyond_limit:
            self.counts["images_not_read_limit"] = len(self._beyond_limit)

    @property
    def given(self) -> int:
        """Images the file names (up to the limit), plus entries that name none (each a given item that
        cannot be scored)."""
        return len(self._named) + self.counts["skipped_malformed"]


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
        elif isinstance(entry, dict) and isinstance(entry.get("raw"), str):  # Karpathy sentence
            texts.append(entry["raw"].strip())
        elif isinstance(entry, dict) and entry.get("from") == "gpt":  # ShareGPT4V: the first answer
            return [str(entry.get("value", "")).strip()]
        elif not (isinstance(entry, dict) and entry.get("from") == "human"):
            return None
    return [t for t in texts if t]


def item_captions(item: dict, long: bool, caption_field: str | None) -> tuple[str | None, list[str] | None]:
    image = next((item[k] for k in IMAGE_KEYS if isinstance(item.get(k), str) and item[k].strip()), None)
    keys = [caption_field] if caption_field else (LONG_CAPTION_KEYS if long else SHORT_CAPTION_KEYS)
    for key in keys:
        if key in item:
            return image, _caption_texts(item[key])
    return image, []


def _from_items(items, long: bool, caption_field: str | None, data: RetrievalSet) -> None:
    for item in items:
        data.counts["items"] += 1
        if item.error is not None or not isinstance(item.value, dict):
            data.malformed()
            continue
        image, captions = item_captions(item.value, long, caption_field)
        if image is None or captions is None:
            data.malformed()
            continue
        data.add(image, captions, record_key=(image, tuple(captions)))


def _from_coco_captions(document: dict, data: RetrievalSet) -> None:
    names = {
        image.get("id"): image.get("file_name")
        for image in document["images"]
        if isinstance(image, dict) and isinstance(image.get("file_name"), str)
    }
    by_image: dict = {}
    seen: set = set()
    for annotation in document["annotations"]:
        data.counts["items"] += 1
        caption = annotation.get("caption") if isinstance(annotation, dict) else None
        if not isinstance(caption, str) or not caption.strip() or names.get(annotation.get("image_id")) is None:
            data.counts["skipped_malformed_caption"] += 1  # a caption given for no known image
            continue
        key = annotation.get("id", (annotation["image_id"], caption.strip()))
        if key in seen:
            data.counts["duplicate_records"] += 1
            continue
        seen.add(key)
        by_image.setdefault(annotation["image_id"], []).append(caption.strip())
    for image_id, name in names.items():  # the file's image order
        data.add(name, by_image.get(image_id, []))


def _from_karpathy(document: dict, split: str, data: RetrievalSet) -> None:
    present = sorted({str(image.get("split")) for image in document["images"] if isinstance(image, dict)})
    for image in document["images"]:
        if not isinstance(image, dict) or (split != "all" and image.get("split") != split):
            continue
        data.counts["items"] += 1
        captions = _caption_texts(image.get("sentences"))
        name = image.get("filename")
        if captions is None or not isinstance(name, str) or not name:
            data.malformed()
            continue
        path = f"{image['filepath']}/{name}" if image.get("filepath") else name
        data.add(path, captions, record_key=path)
    if not data.counts["items"]:
        raise UserError(
            f"the Karpathy file has no images in split {split!r}; its splits are {', '.join(present)} "
            "(--split all takes every image)"
        )


def _dci_caption(item: dict, caption_field: str | None) -> list[str] | None:
    short, extra = item.get("short_caption"), item.get("extra_caption")
    field_name = caption_field or "extended"
    if field_name == "extended":
        parts = [p.strip() for p in (short, extra) if isinstance(p, str) and p.strip()]
        return ["\n".join(parts)] if parts else []
    if field_name not in DCI_CAPTION_FIELDS:
        raise UserError(f"--caption_field {field_name!r}: DCI files have {', '.join(DCI_CAPTION_FIELDS)}")
    value = item.get(field_name)
    return [value.strip()] if isinstance(value, str) and value.strip() else []


def _from_dci(folder: Path, caption_field: str | None, data: RetrievalSet) -> None:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise UserError(f"{folder} is a folder but holds no DCI annotation .json files")
    for path in files:
        data.counts["items"] += 1
        try:
            item = load_json(path)
        except UserError:
            data.malformed()
            continue
        if not isinstance(item, dict) or not isinstance(item.get("image"), str) or not item["image"]:
            data.malformed()
            continue
        data.add(item["image"], _dci_caption(item, caption_field), record_key=item["image"])


def dci_images_root(folder: Path) -> Path:
    """DCI keeps `image` names relative to `densely_captioned_images/photos/`, beside the annotation folder."""
    photos = folder.parent / "photos"
    return photos if photos.is_dir() else folder


def load_retrieval_set(
    path: Path, long: bool = False, split: str = "test", caption_field: str | None = None, limit: int = 0
) -> RetrievalSet:
    """Read any supported format; `limit` > 0 keeps the first `limit` images the file names (ShareGPT4V-1k:
    1000; images merged from several lines count once)."""
    data = RetrievalSet(limit=limit)
    path = Path(path)
    if path.is_dir():
        data.format = "dci"
        _from_dci(path, caption_field, data)
    elif path.suffix == ".json" and isinstance(document := json_document(path), dict):
        if isinstance(document.get("annotations"), list) and isinstance(document.get("images"), list):
            data.format = "coco-captions"
            _from_coco_captions(document, data)
        elif isinstance(document.get("images"), list) and any(
            isinstance(i, dict) and "sentences" in i for i in document["images"][:5]
        ):
            data.format = "karpathy"
            _from_karpathy(document, split, data)
        else:
            raise UserError(
                f"{path}: a JSON object must be COCO captions (images + annotations) or a Karpathy "
                "split file (images with sentences)"
            )
    else:
        data.format = "items"
        _from_items(iter_items(path), long, caption_field, data)
    data.finish()
    if not data.image_names:
        raise UserError(f"{path} holds no image with a caption" + (f" ({dict(data.counts)})" if data.counts else ""))
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
    image_positives = [
        sorted({row for text in set(image_captions) for row in rows_of_text[text]}) for image_captions in captions
    ]
    text_positives = [sorted(images_of_text[text]) for text in texts]
    return texts, owners, image_positives, text_positives


def evaluate(encoder: Encoder, data: RetrievalSet, images_root: Path, long: bool) -> dict:
    from eval.common.learned_fusion import learned_fusion
    from eval.common.metrics import curve_ks, recall_at_k, recall_keys, retrieval_ranks

    paths = [resolve_image_path(images_root, name, try_basename=True) for name in data.image_names]
    fusion = learned_fusion(encoder)  # a Fashion-FINE folder: its trained global + local embeddings
    encoded = encoder.images(paths, fusion)
    kept = [i for i in range(len(paths)) if encoded.ok[i]]
    for reason, count in encoded.failures.items():
        data.counts[f"skipped_{reason}"] = count
    if len(kept) < len(paths):
        data.counts["captions_of_failed_images"] = sum(
            len(data.captions[i]) for i in range(len(paths)) if not encoded.ok[i]
        )
    cover = Coverage(
        "images",
        data.given,
        len(kept),
        skipped_reasons(data.counts),
        duplicates=data.counts["duplicate_records"],
        not_read=data.counts["images_not_read_limit"],
        not_read_unit="images",
    )
    captions = [data.captions[i] for i in kept]
    texts, _, image_positives, text_positives = positive_sets(captions)
    image_embeds = encoded.embeddings[kept]
    text_embeds = encoder.texts(texts, long=long, fusion=fusion)
    cover.truncated = encoder.truncated_texts()
    i2t = retrieval_ranks(image_embeds, text_embeds, image_positives)
    t2i = retrieval_ranks(text_embeds, image_embeds, text_positives)
    i2t_recall, t2i_recall = recall_at_k(i2t, RECALL_KS), recall_at_k(t2i, RECALL_KS)
    return {
        "metrics": {
            **recall_keys("i2t", i2t_recall),
            **recall_keys("t2i", t2i_recall),
            "num_images": len(kept),
            "num_captions": len(texts),
        },
        "i2t": i2t_recall,
        "t2i": t2i_recall,
        "i2t_curve": recall_at_k(i2t, curve_ks(len(texts))),
        "t2i_curve": recall_at_k(t2i, curve_ks(len(kept))),
        "num_images": len(kept),
        "num_captions": len(texts),
        "coverage": cover,
    }


@dataclass
class RetrievalOptions:
    data: Path = option("annotation file (.json / .jsonl) or a folder of DCI annotation files")
    images: Path | None = option(
        "root folder for relative image paths: the COCO root (holding val2014/) for Karpathy's dataset_coco.json, "
        "ShareGPT4V's data folder (holding coco/, sam/, ...) (default: the data file's folder; for a DCI annotation "
        "folder, the photos/ folder beside it)",
        None,
    )
    long: bool = option("encode captions with the 248-token long-text path (and prefer long_caption fields)", False)
    split: str = option("split of a Karpathy file (all: every image)", "test", choices=(*KARPATHY_SPLITS, "all"))
    caption_field: str | None = option(
        "read captions from this field of each item (default: the first present of short_caption/long_caption (by "
        "--long), captions, caption, sentences, conversations); for DCI: extended (default: short_caption + newline "
        "+ extra_caption), short_caption or extra_caption",
        None,
    )
    limit: int = option(
        "use the first N images the file names (ShareGPT4V-1k: 1000; 0: all); results.json says how "
        "many more were not read",
        0,
        type=non_negative_int,
    )


EPILOG = wrapped(
    "Ties: a wrong candidate scoring exactly as high as the best correct one "
    "ranks ahead of it. Images that are missing or unreadable are dropped with "
    "their captions and counted, as are entries naming no image and images "
    "without a caption (results.json: complete false, counts by reason; "
    "--strict makes that exit 2); image paths that do not exist under --images "
    "are also tried as bare file names under --images."
)


def build_parser() -> CommandParser:
    return encoder_parser("python -m eval.retrieval", __doc__, RetrievalOptions, epilog=EPILOG)


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, run = options_from(args, RetrievalOptions), EncoderRun.parsed(args)
    if not options.data.exists():
        raise UserError(f"--data {options.data} does not exist")
    out = run.prepare_output([options.data, options.images], OWNED)
    data = load_retrieval_set(options.data, options.long, options.split, options.caption_field, options.limit)
    images_root = options.images or (dci_images_root(options.data) if options.data.is_dir() else options.data.parent)
    encoder = run.load_encoder()
    from eval.common.learned_fusion import learned_fusion

    learned = learned_fusion(encoder) is not None
    if options.long and learned:
        raise UserError("--long: a Fashion-FINE folder embeds texts with the 77-token path it was finetuned on")
    scores = evaluate(encoder, data, images_root, options.long)
    cover: Coverage = scores["coverage"]
    cover.warn()
    metrics = scores["metrics"]
    table = markdown_table(
        ["direction", *[f"R@{k}" for k in RECALL_KS]],
        [["image -> text", *scores["i2t"].values()], ["text -> image", *scores["t2i"].values()]],
    )
    table += (
        f"\n{scores['num_images']} images, {scores['num_captions']} captions "
        f"({'long' if options.long else 'short'} text path, format {data.format}).\n"
    )
    line_plot(
        out / "recall_curve.png",
        {"image -> text": scores["i2t_curve"], "text -> image": scores["t2i_curve"]},
        f"retrieval recall@K ({model_label(run.model)})",
        "K",
        "recall@K",
    )
    counts = {**data.counts, "scored_images": scores["num_images"], "scored_captions": scores["num_captions"]}
    return run.finish(
        "retrieval_long" if options.long else "retrieval",
        metrics,
        cover,
        data=options.data,
        counts=counts,
        table=table,
        headline=f"retrieval I->T R@1 {metrics['i2t_r1']:.4f} T->I R@1 {metrics['t2i_r1']:.4f}",
        extra={
            "format": data.format,
            "long": options.long,
            "embedding": "learned fusion" if learned else "global",
            "plots": ["recall_curve.png"],
            "details": {"i2t_curve": scores["i2t_curve"], "t2i_curve": scores["t2i_curve"]},
        },
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
