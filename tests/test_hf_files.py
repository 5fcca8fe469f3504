"""A model folder's JSON files read as data: config.json and what describes the file rather than the model."""

import json

import pytest

from fgclip.errors import UserError
from fgclip.hf_files import FILE_KEYS, model_fields, read_config


def test_model_fields_drop_what_describes_the_file():
    values = {
        "model_type": "clip_vision_model",
        "architectures": ["CLIPVisionModel"],
        "transformers_version": "4.37",
        "_name_or_path": "x",
        "hidden_size": 32,
        "image_size": 224,
    }
    assert model_fields(values) == {"hidden_size": 32, "image_size": 224}
    assert set(FILE_KEYS) >= set(values) - {"hidden_size", "image_size"}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "has no config.json: not a Hugging Face model folder"),
        ("{not json", "config.json is not valid JSON"),
        ("[1, 2]", "config.json must hold a JSON object, not list"),
    ],
)
def test_unusable_config_files_are_one_line_checkpoint_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    with pytest.raises(UserError, match=message):
        read_config(tmp_path)


def test_a_config_is_read_as_written(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip", "text_config": {"eos_token_id": 2}}))
    assert read_config(tmp_path) == {"model_type": "clip", "text_config": {"eos_token_id": 2}}
