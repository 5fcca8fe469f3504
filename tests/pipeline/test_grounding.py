"""Grounding: the selection rule on hand-made boxes, and tiny OWLv2 / Grounding DINO detectors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from PIL import Image

from fgclip.data.schema import Record, check_bbox
from fgclip.errors import UserError
from fgclip.pipeline.config import GroundingConfig
from fgclip.pipeline.expressions import EXPRESSIONS_FIELD
from fgclip.pipeline.grounding import (
    Candidates,
    GroundingStep,
    TransformersDetector,
    normalise_boxes,
    select_boxes,
)
from tests.pipeline import tiny_models
from tests.pipeline.conftest import make_images


def candidates(rows) -> Candidates:
    """rows: (x1, y1, x2, y2, score, query)."""
    data = torch.tensor(rows, dtype=torch.float32)
    return Candidates(data[:, :4], data[:, 4], data[:, 5].long())


def test_threshold_is_strictly_greater():
    found = candidates([[0.0, 0.0, 0.2, 0.2, 0.40, 0], [0.5, 0.5, 0.7, 0.7, 0.41, 1], [0.3, 0.0, 0.4, 0.1, 0.3, 2]])
    assert select_boxes(found, GroundingConfig(score_threshold=0.4)) == [1]


def test_nms_within_an_expression_keeps_the_best_box():
    found = candidates([[0.10, 0.10, 0.50, 0.50, 0.6, 0], [0.12, 0.11, 0.52, 0.50, 0.9, 0]])
    assert select_boxes(found, GroundingConfig(score_threshold=0.4, nms_iou=0.5)) == [1]


def test_best_boxes_per_expression():
    found = candidates([[0.0, 0.0, 0.2, 0.2, 0.5, 0], [0.6, 0.6, 0.9, 0.9, 0.8, 0], [0.3, 0.3, 0.5, 0.5, 0.7, 1]])
    assert select_boxes(found, GroundingConfig(max_boxes_per_expression=1)) == [1, 2]
    assert select_boxes(found, GroundingConfig(max_boxes_per_expression=2)) == [1, 2, 0]


def test_cross_expression_nms():
    same_box = candidates([[0.2, 0.2, 0.6, 0.6, 0.7, 0], [0.21, 0.2, 0.6, 0.61, 0.9, 1]])
    assert select_boxes(same_box, GroundingConfig(cross_expression_nms=True)) == [1]
    assert select_boxes(same_box, GroundingConfig(cross_expression_nms=False)) == [1, 0]


def test_flat_boxes_are_never_kept():
    found = candidates([[0.0, 1.0, 0.5, 1.0, 0.9, 0], [0.1, 0.1, 0.3, 0.3, 0.5, 0]])
    assert select_boxes(found, GroundingConfig()) == [1]


def test_nothing_above_threshold():
    assert select_boxes(Candidates.empty(), GroundingConfig()) == []
    assert select_boxes(candidates([[0.0, 0.0, 1.0, 1.0, 0.1, 0]]), GroundingConfig()) == []


def test_normalise_boxes_clamps_into_the_image():
    boxes = torch.tensor([[-5.0, 10.0, 50.0, 60.0]])
    torch.testing.assert_close(normalise_boxes(boxes, width=100, height=50), torch.tensor([[0.0, 0.2, 0.5, 1.0]]))


@pytest.fixture(scope="module")
def owl(tiny_owlv2_dir) -> TransformersDetector:
    return TransformersDetector(str(tiny_owlv2_dir), "cpu", torch.float32, score_floor=-1.0)


def test_owlv2_boxes_match_transformers_post_processing(owl):
    """Our normalised boxes, scaled back, equal transformers' pixel boxes (it undoes OWLv2's square padding)."""
    images = [Image.new("RGB", (80, 40), (200, 10, 10)), Image.new("RGB", (30, 60), (10, 10, 200))]
    queries = [["a red dog", "a cat"], ["a blue sofa"]]
    found = owl.detect(images, queries)
    inputs = owl.processor(text=queries, images=images, return_tensors="pt", padding="max_length", truncation=True)
    with torch.no_grad():
        outputs = owl.model(**inputs)
    reference = owl.processor.image_processor.post_process_object_detection(
        outputs, threshold=-1.0, target_sizes=[(i.height, i.width) for i in images]
    )
    for image, texts, ours, theirs in zip(images, queries, found, reference):
        num_boxes = theirs["boxes"].shape[0]
        assert ours.boxes.shape == (num_boxes * len(texts), 4)  # every (box, query) pair at floor -1
        assert int(ours.queries.max()) == len(texts) - 1  # padded query slots never appear
        pixel = theirs["boxes"].clone()
        pixel[:, 0::2] = pixel[:, 0::2].clamp(0, image.width)
        pixel[:, 1::2] = pixel[:, 1::2].clamp(0, image.height)
        scale = torch.tensor([image.width, image.height, image.width, image.height])
        first_query = ours.queries == 0
        torch.testing.assert_close(ours.boxes[first_query] * scale, pixel, atol=1e-3, rtol=1e-4)


def _records(tmp_path, count: int) -> list[Record]:
    paths = make_images(tmp_path / "images", count, size=(48, 32))
    expressions = [
        {"caption": "a small brown dog", "noun": "dog", "long_caption": "a small brown dog on a sofa"},
        {"caption": "two white cats", "noun": "cats"},
    ]
    return [
        Record(image=str(p), long_caption="x", short_caption="x", extra={EXPRESSIONS_FIELD: list(expressions)})
        for p in paths
    ]


def test_grounding_step_makes_valid_regions_and_batching_does_not_change_them(tmp_path, tiny_owlv2_dir):
    outputs = []
    for batch_size in (1, 3):
        config = GroundingConfig(
            model=str(tiny_owlv2_dir), score_threshold=-1.0, batch_size=batch_size, cross_expression_nms=False
        )
        counts = Counter()
        records = GroundingStep(config, "cpu")(_records(tmp_path, 4), counts)
        # Threshold -1 keeps every scored pair (a random tiny OWLv2 scores ~1e-16); an expression whose
        # boxes all lie in OWLv2's square padding (flat once clamped to the image) stays ungrounded.
        assert len(records) == 4 and counts["regions"] >= 4
        assert counts["regions"] + counts["expressions_not_grounded"] == 8
        for record in records:
            assert EXPRESSIONS_FIELD not in record.extra
            assert {r.caption for r in record.regions} <= {"a small brown dog", "two white cats"}
            for region in record.regions:
                assert check_bbox(region.bbox) == region.bbox
            for region in record.regions:
                expected = "a small brown dog on a sofa" if region.caption == "a small brown dog" else None
                assert region.long_caption == expected
        outputs.append([[r.bbox for r in record.regions] for record in records])
    assert [len(boxes) for boxes in outputs[0]] == [len(boxes) for boxes in outputs[1]]
    flat = [[v for boxes in run for box in boxes for v in box] for run in outputs]
    assert flat[0] == pytest.approx(flat[1], abs=1e-4)


def test_grounding_step_drops_unreadable_images_and_needs_a_model(tmp_path, tiny_owlv2_dir):
    records = _records(tmp_path, 2)
    (tmp_path / "broken.png").write_text("not an image")
    records[1].image = str(tmp_path / "broken.png")
    counts = Counter()
    out = GroundingStep(GroundingConfig(model=str(tiny_owlv2_dir), score_threshold=-1.0), "cpu")(records, counts)
    assert len(out) == 1 and counts["dropped_unreadable_image"] == 1
    with pytest.raises(UserError, match="--grounding_model"):
        GroundingStep(GroundingConfig(model=None), "cpu")(_records(tmp_path, 1), Counter())


def test_records_with_regions_are_kept_unless_overwrite(tmp_path, tiny_owlv2_dir):
    from fgclip.data.schema import Region

    record = _records(tmp_path, 1)[0]
    record.regions = [Region(bbox=[0.1, 0.1, 0.5, 0.5], caption="given")]
    out = GroundingStep(GroundingConfig(model=str(tiny_owlv2_dir), score_threshold=-1.0), "cpu")([record], Counter())
    assert [r.caption for r in out[0].regions] == ["given"]


@pytest.fixture(scope="module")
def grounding_dino(tmp_path_factory) -> TransformersDetector:
    folder = tiny_models.build_tiny_grounding_dino(tmp_path_factory.mktemp("tiny_gdino"))
    return TransformersDetector(str(folder), "cpu", torch.float32, score_floor=-1.0)


def test_grounding_dino_query_spans_and_candidates(grounding_dino):
    texts = ["a red dog", "two white cats"] * 60  # about 360 tokens: split into two prompts
    chunks = grounding_dino._query_chunks(texts)
    assert len(chunks) == 2 and sum(len(c[1]) for c in chunks) == len(texts)
    tokenizer = grounding_dino.processor.tokenizer
    for _, chunk, spans in chunks:
        ids = tokenizer(" . ".join(chunk) + " .")["input_ids"]
        assert len(ids) <= 256
        for text, (start, end) in zip(chunk, spans):
            assert ids[start:end] == tokenizer(text, add_special_tokens=False)["input_ids"]
    (found,) = grounding_dino.detect([Image.new("RGB", (80, 60))], [["a red dog", "a cat", "a sofa"]])
    assert found.boxes.shape == (20 * 3, 4)  # 20 decoder queries x 3 expressions at floor -1
    assert found.boxes.min() >= 0 and found.boxes.max() <= 1
    assert set(found.queries.tolist()) == {0, 1, 2}
    assert ((found.scores >= 0) & (found.scores <= 1)).all()
