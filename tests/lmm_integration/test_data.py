"""LLaVA conversation data: labels only on answers, image tokens, padding to square, counted skips."""

import json

import pytest
import torch
from transformers import AutoProcessor, LlavaProcessor

from fgclip.errors import UserError
from lmm_integration.data import (
    IGNORE_INDEX,
    ConversationCollator,
    ConversationDataset,
    image_token_count,
    read_conversations,
)
from tests.lmm_integration.conftest import QUESTION, write_colour_set


@pytest.fixture(scope="module")
def processor(llava_dir):
    return AutoProcessor.from_pretrained(llava_dir)


def _config(llava_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(llava_dir).vision_config


def test_labels_are_the_answers_only_and_image_tokens_are_expanded(processor, colour_data):
    dataset = ConversationDataset(colour_data, processor, num_image_tokens=16, show_progress=False)
    item = dataset[0]
    tokenizer = processor.tokenizer
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert (item["input_ids"] == image_id).sum() == 16
    labelled = item["labels"][item["labels"] != IGNORE_INDEX].tolist()
    assert tokenizer.convert_ids_to_tokens(labelled) == ["It", "is", "red", "</s>"]
    assert (item["labels"][item["input_ids"] == image_id] == IGNORE_INDEX).all()
    assert item["pixel_values"].shape == (3, 32, 32)
    assert dataset.report.kept == 8 and dataset.report.num_skipped == 0


def test_images_are_padded_to_a_square_with_the_mean_colour(processor, tmp_path):
    data = write_colour_set(tmp_path, count=1)  # a 40 x 28 red image
    dataset = ConversationDataset(data, processor, 16, show_progress=False)
    pixels = dataset.load_pixels(tmp_path / "0.png")
    mean = torch.tensor(processor.image_processor.image_mean)
    std = torch.tensor(processor.image_processor.image_std)
    top_row = pixels[:, 0, :] * std[:, None] + mean[:, None]  # the padding band above the image
    torch.testing.assert_close(top_row.mean(dim=1), mean, atol=0.01, rtol=0)
    middle = pixels[:, 16, 16] * std + mean
    assert middle[0] > 0.8 and middle[1] < 0.3  # the red image itself
    squashed = ConversationDataset(data, processor, 16, image_aspect_ratio="resize", show_progress=False)
    assert squashed.load_pixels(tmp_path / "0.png")[0, 0, 0] * std[0] + mean[0] > 0.8


def test_bad_records_are_counted_and_skipped(processor, tmp_path):
    turns = [{"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": "It is red"}]
    extra = [
        {"id": "text", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Yes"}]},
        {
            "id": "no-token",
            "image": "0.png",
            "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Yes"}],
        },
        {
            "id": "two",
            "image": "0.png",
            "conversations": [{"from": "human", "value": "<image> <image> hi"}, {"from": "gpt", "value": "Yes"}],
        },
        {"id": "missing", "image": "nowhere.png", "conversations": turns},
        {"id": "no-answer", "image": "0.png", "conversations": turns[:1]},
    ]
    data = write_colour_set(tmp_path, count=6, extra=extra)
    dataset = ConversationDataset(data, processor, 16, show_progress=False)
    assert dataset.report.kept == 6 and dataset.report.total == 11
    assert dict(dataset.report.skipped) == {
        "without an image": 1,
        "without an <image> token": 1,
        "with more than one <image> token": 1,
        "with a missing image file": 1,
        "with a malformed conversation": 1,
    }
    assert "6 of 11 conversations kept" in dataset.report.summary()


def test_model_max_length_truncates_text_and_skips_what_loses_its_answer_or_image(processor, colour_data):
    full = ConversationDataset(colour_data, processor, 16, show_progress=False)
    length = len(full.examples[0].input_ids)
    shorter = ConversationDataset(colour_data, processor, 16, model_max_length=length - 1, show_progress=False)
    assert len(shorter.examples[0].input_ids) == length - 1  # the final </s> is cut, the answer words stay
    with pytest.raises(UserError, match="no usable conversation"):
        ConversationDataset(colour_data, processor, 16, model_max_length=10, show_progress=False)


def test_too_many_bad_records_stop_with_a_clear_error(processor, tmp_path):
    extra = [
        {"id": str(i), "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Yes"}]}
        for i in range(5)
    ]
    data = write_colour_set(tmp_path, count=2, extra=extra)
    with pytest.raises(UserError, match="too many bad records"):
        ConversationDataset(data, processor, 16, max_bad_fraction=0.5, show_progress=False)


def test_image_token_count_must_match_the_tower(llava_dir, processor):
    assert image_token_count(processor, _config(llava_dir), "default") == 16
    assert (
        image_token_count(
            LlavaProcessor(
                processor.image_processor,
                processor.tokenizer,
                patch_size=8,
                vision_feature_select_strategy="full",
                num_additional_image_tokens=1,
                chat_template=processor.chat_template,
            ),
            _config(llava_dir),
            "full",
        )
        == 17
    )
    wrong = LlavaProcessor(
        processor.image_processor,
        processor.tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=0,
    )
    with pytest.raises(UserError, match="does not match the tower's patch count"):
        image_token_count(wrong, _config(llava_dir), "default")


def test_a_template_that_writes_extra_image_tokens_is_an_error(processor, colour_data):
    original = processor.tokenizer.chat_template
    processor.tokenizer.chat_template = original.replace("IMAGE + '\\n'", "IMAGE + IMAGE + '\\n'")
    try:
        with pytest.raises(UserError, match="<image> tokens for one image"):
            ConversationDataset(colour_data, processor, 16, show_progress=False)
    finally:
        processor.tokenizer.chat_template = original


def test_reading_json_lists_and_jsonl(tmp_path):
    rows = [{"id": "1", "image": "a.png", "conversations": []}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.jsonl").write_text(json.dumps(rows[0]) + "\n\n")
    assert read_conversations(tmp_path / "a.json") == read_conversations(tmp_path / "a.jsonl") == rows
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="neither a JSON list nor JSONL"):
        read_conversations(tmp_path / "bad.jsonl")
    with pytest.raises(UserError, match="not found"):
        read_conversations(tmp_path / "missing.json")


def test_unreadable_image_is_a_clear_error(processor, tmp_path):
    data = write_colour_set(tmp_path, count=2)
    (tmp_path / "1.png").write_bytes(b"not an image")
    dataset = ConversationDataset(data, processor, 16, show_progress=False)
    with pytest.raises(UserError, match="cannot read image"):
        dataset[1]


def test_collator_pads_right_with_pad_ids_and_ignored_labels(processor, colour_data):
    dataset = ConversationDataset(colour_data, processor, 16, show_progress=False)
    first, second = dataset[0], dataset[1]
    second = {**second, "input_ids": second["input_ids"][:-2], "labels": second["labels"][:-2]}
    batch = ConversationCollator(processor.tokenizer.pad_token_id)([first, second])
    length = first["input_ids"].shape[0]
    assert batch["input_ids"].shape == (2, length) and batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["attention_mask"][1].tolist() == [1] * (length - 2) + [0, 0]
    assert (batch["input_ids"][1, -2:] == processor.tokenizer.pad_token_id).all()
    assert (batch["labels"][1, -2:] == IGNORE_INDEX).all()
