"""The tiny Hub copies are faithful: the quirks of the real folders are there, and stock transformers reads
them the way it reads the real ones (so a test that passes on a copy says something about the real folder)."""

import json

import open_clip
import pytest
from safetensors import safe_open
from transformers import AutoImageProcessor, AutoTokenizer, CLIPConfig

from tests.hub_copies.clip import HUB_FOLDERS, OFFICIAL_FGCLIP_IDS, STOCK_CLIP_IDS

TOKENIZER_FILES = {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}


@pytest.mark.parametrize("repo_id", list(HUB_FOLDERS))
def test_config_keeps_the_real_files_quirks(hub_copy, repo_id):
    folder = HUB_FOLDERS[repo_id]
    raw = json.loads((hub_copy(repo_id) / "config.json").read_text())
    assert raw["model_type"] == "clip"
    # The legacy special-token ids every one of these configs keeps.
    assert (
        raw["text_config"]["bos_token_id"],
        raw["text_config"]["eos_token_id"],
        raw["text_config"]["pad_token_id"],
    ) == (0, 2, 1)
    assert raw["text_config"]["vocab_size"] == 49408 and raw["text_config"]["max_position_embeddings"] == 77
    assert raw["vision_config"]["image_size"] == folder.image_size
    assert raw["vision_config"]["patch_size"] == folder.patch_size
    assert raw["text_config"]["hidden_act"] == raw["vision_config"]["hidden_act"] == folder.hidden_act
    assert "text_config_dict" in raw and "vision_config_dict" in raw
    if folder.is_official_fgclip:
        assert raw["architectures"] == ["FGCLIPModel"]
        assert raw["auto_map"]["AutoConfig"] == "modeling_fgclip.FGCLIPConfig"
        assert "cross_attention_hidden_size" not in raw["text_config"]  # written by transformers 4.12
    else:
        assert raw["architectures"] == ["CLIPModel"] and "auto_map" not in raw


def test_transformers_reads_the_legacy_ids_as_the_real_folders_give_them(hub_copy):
    """transformers 5 keeps eos 2 where the file has no text_config_dict (base-patch16, fg-clip-base) and
    builds defaults (eos 49407, pad 1) from a text_config_dict: code must cope with both."""
    eos = {repo_id: CLIPConfig.from_pretrained(hub_copy(repo_id)).text_config.eos_token_id for repo_id in HUB_FOLDERS}
    assert eos["openai/clip-vit-base-patch16"] == eos["qihoo360/fg-clip-base"] == 2
    assert eos["openai/clip-vit-large-patch14"] == eos["laion/CLIP-ViT-B-32-laion2B-s34B-b79K"] == 49407


@pytest.mark.parametrize("repo_id", list(HUB_FOLDERS))
def test_tokenizer_and_processor_files_load_as_stock_transformers_reads_them(hub_copy, repo_id):
    folder = HUB_FOLDERS[repo_id]
    directory = hub_copy(repo_id)
    assert TOKENIZER_FILES <= {path.name for path in directory.iterdir()}
    assert (directory / "merges.txt").read_text().startswith("#version: 0.2\n")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (49406, 49407)
    assert tokenizer.pad_token_id == (0 if folder.pad_token == "!" else 49407)
    reference = open_clip.get_tokenizer("ViT-B-16")
    for text in ("a photo of a cat", "item #. on a table", "Café: naïve façade"):
        ours = tokenizer(text)["input_ids"]
        assert ours == reference([text])[0].tolist()[: len(ours)]
    processor = AutoImageProcessor.from_pretrained(directory)
    assert processor.size["shortest_edge"] == folder.image_size and processor.do_center_crop
    assert processor.crop_size["height"] == processor.crop_size["width"] == folder.image_size
    raw = json.loads((directory / "preprocessor_config.json").read_text())
    assert raw["size"] == raw["crop_size"] == folder.image_size  # integers, the legacy format
    assert raw["feature_extractor_type"] == "CLIPFeatureExtractor"


def test_weight_names_are_the_real_ones(hub_copy):
    with safe_open(str(hub_copy(STOCK_CLIP_IDS[0]) / "model.safetensors"), framework="pt") as handle:
        stock = set(handle.keys())
    assert "text_model.embeddings.position_ids" in stock and "logit_scale" in stock
    for repo_id in OFFICIAL_FGCLIP_IDS:
        with safe_open(str(hub_copy(repo_id) / "model.safetensors"), framework="pt") as handle:
            official = set(handle.keys())
            assert handle.get_tensor("text_model.embeddings.position_embedding_res.weight").shape[0] == 248
        assert {
            "text_model.embeddings.position_embedding_ori.weight",
            "text_filip_projection.weight",
            "logit_scale_finegraind",
            "logit_scale_hardneg",
        } <= official
        assert "text_model.embeddings.position_ids" not in official
