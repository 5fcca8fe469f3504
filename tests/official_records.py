"""Records in the layouts the official data files ship in, for tests that write such files (one place for each
layout): RUCAIBox/POPE question lines, Densely Captioned Images annotations, Karpathy split entries, COCO
instances/captions files, FG-OVD benchmark documents, FineHARD items and LLaVA conversation records."""

from __future__ import annotations

from pathlib import Path

POPE_IMAGE = "COCO_val2014_000000310196.jpg"


def coco_pope_lines(*questions: tuple[str, str], images: tuple[str, ...] = (POPE_IMAGE,)) -> list[dict]:
    """The lines of a RUCAIBox/POPE `output/coco/coco_pope_*.json` file (JSON lines under a .json name): int ids
    from 1, one line a `(object, yes|no)` in `questions`, on `images` in turn (COCO_val2014 file names)."""
    return [
        {
            "question_id": number,
            "image": images[(number - 1) % len(images)],
            "text": f"Is there a {thing} in the image?",
            "label": label,
        }
        for number, (thing, label) in enumerate(questions, 1)
    ]


def dci_annotation(image: str, short_caption: str, extra_caption: str) -> dict:
    """One `densely_captioned_images/annotations/*.json` file: `image` relative to the sibling photos/ folder,
    one mask, the short and the extra (dense) caption."""
    return {
        "image": image,
        "short_caption": short_caption,
        "mask_data": {
            "0": {
                "idx": 0,
                "outer_mask": "iVBORw0KGgo",
                "mask_quality": 0,
                "label": "tree",
                "caption": "a tall tree",
                "parent": -1,
                "requirements": [],
                "bounds": [[0, 0], [10, 10]],
                "area": 100,
            }
        },
        "mask_keys": ["0"],
        "extra_caption": extra_caption,
        "summaries": {"base": ["a summary"]},
        "negatives": {},
    }


def karpathy_image(filepath, filename, split, imgid, cocoid, raws, first_sentid):
    """One entry of Karpathy's dataset_coco.json as it ships (key order and all); without `filepath`, one of
    dataset_flickr30k.json (neither filepath nor cocoid)."""
    sentids = list(range(first_sentid, first_sentid + len(raws)))
    entry = {
        "filepath": filepath,
        "sentids": sentids,
        "filename": filename,
        "imgid": imgid,
        "split": split,
        "sentences": [
            {"tokens": raw.lower().strip(" .").split(), "raw": raw, "imgid": imgid, "sentid": sentid}
            for raw, sentid in zip(raws, sentids)
        ],
        "cocoid": cocoid,
    }
    return entry if filepath else {k: v for k, v in entry.items() if k not in ("filepath", "cocoid")}


# ------------------------------------------------------------------------------------------------------- COCO
COCO_INFO = {
    "description": "COCO 2017 Dataset",
    "url": "http://cocodataset.org",
    "version": "1.0",
    "year": 2017,
    "contributor": "COCO Consortium",
    "date_created": "2017/09/01",
}
COCO_LICENSES = [
    {
        "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
        "id": 4,
        "name": "Attribution-NonCommercial-ShareAlike License",
    }
]
# instances_*.json categories with the real non-contiguous ids
COCO_CATEGORIES = [
    {"supercategory": "person", "id": 1, "name": "person"},
    {"supercategory": "animal", "id": 18, "name": "dog"},
    {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
]


def coco_file(images: list[dict], annotations: list[dict], categories: list[dict] | None = None) -> dict:
    """A COCO `annotations/*_<split>.json` file: info, licenses, images, annotations, and (instances files only)
    categories."""
    document = {"info": COCO_INFO, "licenses": COCO_LICENSES, "images": images, "annotations": annotations}
    return document if categories is None else {**document, "categories": categories}


def coco_image(image_id: int, width: int, height: int) -> dict:
    """One entry of a COCO 2017 val file's `images`: int id, file name "<12 digits>.jpg"."""
    return {
        "license": 4,
        "file_name": f"{image_id:012d}.jpg",
        "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg",
        "height": height,
        "width": width,
        "date_captured": "2013-11-14 17:02:52",
        "flickr_url": "http://farm7.staticflickr.com/6116/6255196340_da26cf2c9e_z.jpg",
        "id": image_id,
    }


def _box_triangle(bbox: list[float]) -> list[list[float]]:
    """A polygon inside the pixel box [x, y, w, h]: its upper-right half."""
    x, y, w, h = bbox
    return [[x, y, x + w, y, x + w, y + h]]


def coco_instance(annotation_id: int, image_id: int, bbox: list[float], category_id: int, crowd: int = 0) -> dict:
    """One entry of instances_*.json `annotations`: a pixel [x, y, w, h] box, its polygon and the polygon's area."""
    return {
        "segmentation": _box_triangle(bbox),
        "area": bbox[2] * bbox[3] / 2,
        "iscrowd": crowd,
        "image_id": image_id,
        "bbox": bbox,
        "category_id": category_id,
        "id": annotation_id,
    }


# ----------------------------------------------------------------------------------------------------- FG-OVD
def fgovd_image(image_id: int, width: int, height: int, negatives: list[int], not_exhaustive: list[int]) -> dict:
    """One entry of an FG-OVD benchmark document's `images` (lorebianchi98/FG-OVD benchmarks/*.json, LVIS style):
    `file_name` "val2017/<12 digits>.jpg" under the COCO root, the ids of its negative and not-exhaustive
    categories."""
    return {
        "id": image_id,
        "width": width,
        "height": height,
        "license": 4,
        "coco_url": f"http://images.cocodataset.org/val2017/{image_id:012d}.jpg",
        "flickr_url": "http://farm1.staticflickr.com/124/376779110_e9109fac8d_z.jpg",
        "file_name": f"val2017/{image_id:012d}.jpg",
        "neg_category_ids": negatives,
        "not_exhaustive_category_ids": not_exhaustive,
        "checked": True,
    }


def fgovd_annotation(
    annotation_id: int, image_id: int, bbox: list[float], category_id: int, negatives: list[int]
) -> dict:
    """One entry of an FG-OVD document's `annotations`: a pixel [x, y, w, h] box, its caption as `category_id`
    and its negative captions as `neg_category_ids`."""
    return {
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "segmentation": _box_triangle(bbox),
        "category_id": category_id,
        "neg_category_ids": negatives,
        "image_id": image_id,
        "needs_revision": False,
        "id": annotation_id,
    }


def fgovd_category(category_id: int, name: str, instances: int) -> dict:
    """One entry of an FG-OVD document's `categories`: a caption (positive or negative) under an int id."""
    return {
        "name": name,
        "id": category_id,
        "synset": "",
        "synonyms": [],
        "def": "",
        "frequency": "f",
        "instance_count": instances,
        "image_count": instances,
    }


# --------------------------------------------------------------------------------------------------- FineHARD
def finehard_box(bbox: list[float], short_expr: str, long_expr: str, negatives=None, flag_short_neg=None) -> dict:
    """One `bbox_info` entry of FineHARD's jsonfiles/*.json: the normalised box with its score after it, the short
    and long expression; `negatives` (FineHARD has ten) under string keys "0", "1", ..., flagged by
    `flag_short_neg` (1 where negatives are given unless told)."""
    box = {"bbox": bbox, "short_expr": short_expr, "long_expr": long_expr}
    box["flag_short_neg"] = int(bool(negatives)) if flag_short_neg is None else flag_short_neg
    if negatives is not None:
        box["short_expr_negs"] = {str(index): text for index, text in enumerate(negatives)}
    return box


def finehard_item(f_path: str, caption: str, short_caption: str, boxes: list[dict]) -> dict:
    """One item of FineHARD's jsonfiles/*.json lists: the image path, the long caption, the short one, the boxes."""
    return {"f_path": f_path, "caption": caption, "short_caption": short_caption, "bbox_info": boxes}


# ------------------------------------------------------------------------------------------------------ LLaVA
def llava_conversation(record_id: str, turns: list[str], image: str | None = None) -> dict:
    """One record of LLaVA's blip_laion_cc_sbu_558k.json / llava_v1_5_mix665k.json: `turns` alternate human and
    gpt; a record without `image` is a text-only ShareGPT one (which carries an empty `model`)."""
    record = {"id": record_id, "image": image} if image else {"id": record_id, "model": ""}
    record["conversations"] = [{"from": ("human", "gpt")[index % 2], "value": text} for index, text in enumerate(turns)]
    return record


def sharegpt4v_caption(image: str, caption: str) -> dict:
    """One item of ShareGPT4V's share-captioner_coco_lcs_sam_1246k_1107.json: a LLaVA record whose id is the
    image's stem, the captioner's question as the human turn, the caption as the gpt turn."""
    question = "<image>\nWhat do you see happening in this image?"
    return llava_conversation(Path(image).stem, [question, caption], image=image)
