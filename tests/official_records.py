"""Records in the layouts the official data files ship in, for tests that write such files (one place for each
layout): RUCAIBox/POPE question lines, Densely Captioned Images annotations, Karpathy split entries."""

from __future__ import annotations

POPE_IMAGE = "COCO_val2014_000000310196.jpg"


def coco_pope_lines(*questions: tuple[str, str]) -> list[dict]:
    """The lines of a RUCAIBox/POPE `output/coco/coco_pope_*.json` file (JSON lines under a .json name): int ids
    from 1, COCO_val2014 file names, one line a `(object, yes|no)` in `questions`."""
    return [
        {"question_id": number, "image": POPE_IMAGE, "text": f"Is there a {thing} in the image?", "label": label}
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
