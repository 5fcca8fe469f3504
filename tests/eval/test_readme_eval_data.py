"""The README's "Evaluation data" commands, run verbatim on tiny files laid out and written as the public
downloads are (file names, keys, nesting, id types), from a working folder that holds them."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import shutil
import time
from pathlib import Path

import pytest

from tests.eval.conftest import make_image, write_jsonl
from tests.eval_lmm.tiny_llava import build_tiny_llava
from tests.official_records import (
    COCO_CATEGORIES,
    coco_file,
    coco_image,
    coco_instance,
    coco_pope_lines,
    dci_annotation,
    fgovd_annotation,
    fgovd_category,
    fgovd_image,
    karpathy_image,
    sharegpt4v_caption,
)

README = Path(__file__).resolve().parents[2] / "README.md"
WNIDS = ["n01440764", "n01443537", "n01484850"]  # the first three ImageNet classes: tench, goldfish, great white shark


def readme_commands() -> list[str]:
    text = README.read_text()
    section = text[text.index("### Evaluation data") :]
    section = section[: section.index("\n## ")]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.startswith("python -m ")]


def lvis_fgovd(image_id: int, negatives: int) -> dict:
    """One FG-OVD benchmark document (lorebianchi98/FG-OVD benchmarks/*.json): one box, its caption and
    `negatives` negative captions, all categories of the document."""
    names = ["A dark blue striped wool basket"] + [
        f"A light {colour} plain paper basket"
        for colour in ("orange", "green", "grey", "pink", "red", "brown", "purple", "yellow", "black", "white")
    ][:negatives]
    negative_ids = list(range(101, 101 + len(names) - 1))
    return {
        "images": [fgovd_image(image_id, 48, 40, negatives=negative_ids, not_exhaustive=[100])],
        "annotations": [fgovd_annotation(14447, image_id, [8.0, 6.0, 24.0, 20.0], 100, negative_ids)],
        "categories": [fgovd_category(100 + i, name, instances=int(i == 0)) for i, name in enumerate(names)],
    }


def karpathy(entries: list[tuple], dataset: str) -> dict:
    images = []
    for imgid, (filepath, filename, split, raws) in enumerate(entries):
        filepath = filepath if dataset == "coco" else None  # Flickr30k's entries have neither filepath nor cocoid
        images.append(karpathy_image(filepath, filename, split, imgid, imgid + 391895, raws, imgid * 10))
    return {"images": images, "dataset": dataset}


@pytest.fixture
def downloads(tmp_path, tiny_model_dir) -> Path:
    """The working folder of the README: every public file in its place, tiny."""
    root = tmp_path / "work"
    shutil.copytree(tiny_model_dir, root / "runs" / "stage2" / "final")
    build_tiny_llava(root / "runs" / "llava" / "stage_b" / "final")
    # COCO: val2017 (FG-OVD, instances), val2014 + train2014 (Karpathy, POPE)
    for index, image_id in enumerate((56288, 14226, 397133, 37777)):
        make_image(root / "coco" / "val2017" / f"{image_id:012d}.jpg", seed=index, size=(48, 40))
    for index, name in enumerate(
        ("COCO_val2014_000000391895.jpg", "COCO_val2014_000000522418.jpg", "COCO_val2014_000000310196.jpg")
    ):
        make_image(root / "coco" / "val2014" / name, seed=10 + index, size=(48, 40))
    make_image(root / "coco" / "train2014" / "COCO_train2014_000000057870.jpg", seed=20)
    (root / "fgovd").mkdir()
    for name, image_id in (
        ("1_attributes", 56288),
        ("2_attributes", 14226),
        ("3_attributes", 397133),
        ("shuffle_negatives", 37777),
    ):
        document = lvis_fgovd(image_id, 10 if name == "1_attributes" else 4)
        (root / "fgovd" / f"{name}.json").write_text(json.dumps(document))
    (root / "coco" / "annotations").mkdir()
    (root / "coco" / "annotations" / "instances_val2017.json").write_text(
        json.dumps(
            coco_file(
                [coco_image(i, 48, 40) for i in (397133, 37777)],
                [
                    coco_instance(1768, 397133, [1.0, 1.0, 19.0, 19.0], 18),
                    coco_instance(1769, 37777, [5.0, 5.0, 35.0, 25.0], 1),
                ],
                COCO_CATEGORIES,
            )
        )
    )
    (root / "coco" / "dataset_coco.json").write_text(
        json.dumps(
            karpathy(
                [
                    (
                        "val2014",
                        "COCO_val2014_000000391895.jpg",
                        "test",
                        [
                            "A man with a red helmet on a small moped on a dirt road. ",
                            "Man riding a motor bike on a dirt road.",
                        ],
                    ),
                    (
                        "val2014",
                        "COCO_val2014_000000522418.jpg",
                        "restval",
                        ["A woman wearing a net on her head cutting a cake. "],
                    ),
                    (
                        "train2014",
                        "COCO_train2014_000000057870.jpg",
                        "train",
                        ["A restaurant has modern wooden tables."],
                    ),
                    ("val2014", "COCO_val2014_000000310196.jpg", "test", ["A snowboarder flying through the air. "]),
                ],
                "coco",
            )
        )
    )
    make_image(root / "flickr30k" / "flickr30k-images" / "1000092795.jpg", seed=30)
    make_image(root / "flickr30k" / "flickr30k-images" / "10002456.jpg", seed=31)
    (root / "flickr30k" / "dataset_flickr30k.json").write_text(
        json.dumps(
            karpathy(
                [
                    (None, "1000092795.jpg", "test", ["Two young guys with shaggy hair look at their hands."]),
                    (None, "10002456.jpg", "test", ["Several men in hard hats are operating a giant pulley system."]),
                ],
                "flickr30k",
            )
        )
    )
    share_images = [
        "coco/train2017/000000000009.jpg",
        "sam/images/sa_227.jpg",
        "llava/llava_pretrain/images/00013/000138014.jpg",
    ]
    for index, name in enumerate(share_images):
        make_image(root / "sharegpt4v" / "data" / name, seed=40 + index)
    (root / "sharegpt4v" / "share-captioner_coco_lcs_sam_1246k_1107.json").write_text(
        json.dumps(
            [
                sharegpt4v_caption(name, f"In the center of the image there is thing {index}.\n\nAround it, more.")
                for index, name in enumerate(share_images)
            ]
        )
    )
    (root / "densely_captioned_images" / "annotations").mkdir(parents=True)
    for index in range(2):
        make_image(root / "densely_captioned_images" / "photos" / f"sa_{index}.jpg", seed=50 + index)
        (root / "densely_captioned_images" / "annotations" / f"sa_{index}.json").write_text(
            json.dumps(
                dci_annotation(
                    f"sa_{index}.jpg", f"A standard short caption {index}.", f"A long dense description {index}."
                )
            )
        )
    for number, wnid in enumerate(WNIDS):
        make_image(root / "imagenet" / "val" / wnid / f"ILSVRC2012_val_{number + 293:08d}.JPEG", seed=60 + number)
    (root / "pope").mkdir()
    for split in ("random", "popular", "adversarial"):
        write_jsonl(
            root / "pope" / f"coco_pope_{split}.json",
            coco_pope_lines(("snowboard", "yes"), (f"{split} car", "no")),
        )
    return root


@pytest.mark.slow
def test_every_evaluation_data_command_runs_verbatim(downloads, monkeypatch):
    commands = readme_commands()
    assert len(commands) == 8
    monkeypatch.chdir(downloads)
    monkeypatch.setenv("FGCLIP_EVAL_CACHE", str(downloads / "cache"))
    results = {}
    for command in commands:
        started = time.time()
        argv = shlex.split(command)
        module = importlib.import_module(argv[2])
        result = module.main(argv[3:])
        assert result["complete"] is True, (command, result["note"])
        results[argv[argv.index("--output_dir") + 1]] = result
        print(f"{time.time() - started:6.1f} s  {command[:90]}")
    fgovd = results["runs/eval/fgovd"]
    assert fgovd["num_regions"] == 4 and set(fgovd["details"]["per_file"]) == {"hard", "medium", "easy", "trivial"}
    assert fgovd["details"]["per_file"]["hard"]["mean_negatives"] == 10
    assert results["runs/eval/box_coco"]["num_boxes"] == 2 and results["runs/eval/box_coco"]["num_classes"] == 3
    coco5k = results["runs/eval/coco5k"]
    assert coco5k["format"] == "karpathy" and coco5k["num_images"] == 2 and coco5k["num_captions"] == 3
    assert results["runs/eval/flickr1k"]["num_images"] == 2
    assert results["runs/eval/share1k"]["num_images"] == 3 and results["runs/eval/share1k"]["long"] is True
    assert results["runs/eval/dci"]["format"] == "dci" and results["runs/eval/dci"]["num_images"] == 2
    in1k = results["runs/eval/in1k"]
    assert in1k["num_images"] == 3 and in1k["num_classes"] == 3
    assert set(in1k["details"]["per_class"]) == {"tench", "goldfish", "great white shark"}
    pope = results["runs/pope"]
    assert set(pope["splits"]) == {"random", "popular", "adversarial"} and pope["num_questions"] == 6
    assert all((downloads / out / "results.json").is_file() for out in results)
