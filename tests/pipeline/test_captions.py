"""Captions with a tiny random LLaVA folder: loading, prompting, batching, short captions."""

from __future__ import annotations

from collections import Counter

import pytest

from fgclip.data.schema import Record
from fgclip.errors import UserError
from fgclip.pipeline.captions import CaptionModel, CaptionStep, first_sentence
from fgclip.pipeline.config import CaptionConfig
from tests.pipeline import tiny_models
from tests.pipeline.conftest import make_images


@pytest.mark.parametrize(
    "text,expected",
    [
        ("A dog sits on a sofa. It has a red collar.", "A dog sits on a sofa."),
        ("A dog! Then more.", "A dog!"),
        ("One sentence only", "One sentence only"),
        ("  Spaces   everywhere.  Next one.", "Spaces everywhere."),
        ("A sign says 3.5 km. Then the road.", "A sign says 3.5 km."),
        ("", ""),
    ],
)
def test_first_sentence(text, expected):
    assert first_sentence(text) == expected


def _records(tmp_path, count):
    return [Record(image=str(p)) for p in make_images(tmp_path / "images", count)]


def test_batched_captions_equal_one_by_one(tmp_path, tiny_llava_dir):
    captions = []
    for batch_size in (1, 3):
        config = CaptionConfig(model=str(tiny_llava_dir), batch_size=batch_size, max_new_tokens=6)
        counts = Counter()
        records = CaptionStep(config, "cpu")(_records(tmp_path, 4), counts)
        assert counts["long_captions_generated"] == 4 and counts["short_captions_first_sentence"] == 4
        for record in records:
            assert record.long_caption and record.short_caption
            assert len(record.long_caption.split()) <= 6
            assert record.short_caption == first_sentence(record.long_caption)
        captions.append([r.long_caption for r in records])
    assert captions[0] == captions[1]
    # Different images give different captions (the image reaches the language model).
    assert len(set(captions[0])) > 1


def test_short_prompt_and_template(tmp_path):
    folder = tiny_models.build_tiny_llava(tmp_path / "no_template", chat_template=False)
    config = CaptionConfig(
        model=str(folder),
        short_prompt="describe this",
        max_new_tokens=5,
        short_max_new_tokens=3,
        template="USER: <image> {prompt} ASSISTANT:",
    )
    step = CaptionStep(config, "cpu")
    counts = Counter()
    records = step(_records(tmp_path, 2), counts)
    assert counts["short_captions_generated"] == 2
    assert all(len(r.short_caption.split()) <= 3 for r in records)
    assert step.model.prompt_text("hello") == "USER: <image> hello ASSISTANT:"
    with pytest.raises(UserError, match="--caption_template"):
        CaptionModel(CaptionConfig(model=str(folder)), "cpu")


def test_existing_captions_are_kept_and_unreadable_images_dropped(tmp_path, tiny_llava_dir):
    records = _records(tmp_path, 3)
    records[0].long_caption = "Given caption. Second sentence."
    (tmp_path / "broken.jpg").write_bytes(b"\x00not an image")
    records[2].image = str(tmp_path / "broken.jpg")
    counts = Counter()
    out = CaptionStep(CaptionConfig(model=str(tiny_llava_dir), max_new_tokens=4), "cpu")(records, counts)
    assert [r.image for r in out] == [records[0].image, records[1].image]
    assert out[0].long_caption == "Given caption. Second sentence." and out[0].short_caption == "Given caption."
    assert counts["dropped_unreadable_image"] == 1 and counts["long_captions_generated"] == 1


def test_without_a_model_only_short_captions_are_derived(tmp_path):
    records = [Record(image="a.png", long_caption="Long one. More."), Record(image="b.png")]
    with pytest.raises(UserError, match="--caption_model"):
        CaptionStep(CaptionConfig(), "cpu")(records, Counter())
    out = CaptionStep(CaptionConfig(), "cpu")(records[:1], Counter())
    assert out[0].short_caption == "Long one."


def test_unloadable_model_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot load the caption model"):
        CaptionModel(CaptionConfig(model=str(tmp_path / "missing")), "cpu")
