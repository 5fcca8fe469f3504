"""The held-out evaluation: chance for an untrained model, and correct counting by hand."""

import json

import pytest
import torch

from fgclip import FGCLIPModel
from fgclip.train.evaluate import evaluate_heldout
from tests.conftest import tiny_config


def test_metrics_on_a_synthetic_split(synthetic_set):
    torch.manual_seed(0)
    model = FGCLIPModel(tiny_config())
    metrics = evaluate_heldout(model, [synthetic_set / "heldout.jsonl"])
    records = [json.loads(line) for line in (synthetic_set / "heldout.jsonl").read_text().splitlines()]
    assert metrics["num_images"] == len(records)
    assert metrics["num_regions"] == sum(len(r["regions"]) for r in records)
    assert metrics["chance"] == pytest.approx(1 / 11)
    assert 0 <= metrics["region_top1"] <= 1 and 0 <= metrics["image_to_text_r1"] <= 1
    assert metrics["region_top1_over_chance"] == pytest.approx(metrics["region_top1"] / metrics["chance"])


def test_region_top1_matches_a_direct_computation(synthetic_set):
    from fgclip import FGCLIPTokenizer
    from fgclip.data.readers import open_sources
    from fgclip.transforms import image_transform

    torch.manual_seed(1)
    model = FGCLIPModel(tiny_config()).eval()
    source = open_sources([synthetic_set / "heldout.jsonl"])
    tokenizer, transform = FGCLIPTokenizer(), image_transform(model.image_size)
    correct = total = 0
    with torch.no_grad():
        for index in range(len(source)):
            loaded = source.load(index)
            pixels = transform(loaded.open_image())[None]
            boxes = torch.tensor([r.bbox for r in loaded.record.regions])
            regions = model.encode_regions(pixels, [boxes])
            for region, embedding in zip(loaded.record.regions, regions):
                tokens = tokenizer([region.caption] + region.hard_negatives)
                scores = model.encode_text(tokens["input_ids"], tokens["attention_mask"]) @ embedding
                correct += int(scores.argmax() == 0)
                total += 1
    metrics = evaluate_heldout(model, [synthetic_set / "heldout.jsonl"], batch_size=3)
    assert metrics["num_regions"] == total
    assert metrics["region_top1"] == pytest.approx(correct / total)


def test_a_repeated_record_is_evaluated_once_and_counted(synthetic_set, tmp_path):
    lines = (synthetic_set / "heldout.jsonl").read_text().splitlines()
    repeated = tmp_path / "heldout.jsonl"
    repeated.write_text("\n".join([*lines, lines[0], lines[1]]) + "\n")
    images = synthetic_set / "images"
    (tmp_path / "images").symlink_to(images)
    torch.manual_seed(0)
    model = FGCLIPModel(tiny_config())
    once, twice = evaluate_heldout(model, [synthetic_set / "heldout.jsonl"]), evaluate_heldout(model, [repeated])
    assert twice["duplicate_records"] == 2 and once["duplicate_records"] == 0
    assert {k: v for k, v in twice.items() if k != "duplicate_records"} == {
        k: v for k, v in once.items() if k != "duplicate_records"
    }


def test_ties_are_hits_and_negatives_are_cleaned(synthetic_set, tmp_path):
    """Negatives that differ from the caption only in case tokenize alike (CLIP's tokenizer lowercases), so
    every one ties with the positive: each region is a hit, as in the public FG-OVD evaluation. A negative equal
    to the caption, or repeated, is dropped as the trainer drops it."""
    records = [json.loads(line) for line in (synthetic_set / "heldout.jsonl").read_text().splitlines()]
    for record in records:
        record["image"] = str(synthetic_set / record["image"])
        for region in record["regions"]:
            region["hard_negatives"] = [region["caption"].upper(), region["caption"], region["caption"].upper()]
    tied = tmp_path / "tied.jsonl"
    tied.write_text("".join(json.dumps(record) + "\n" for record in records))
    torch.manual_seed(0)
    metrics = evaluate_heldout(FGCLIPModel(tiny_config()), [tied])
    assert metrics["region_top1"] == 1.0
    assert metrics["chance"] == pytest.approx(1 / 2)  # one negative left of three
