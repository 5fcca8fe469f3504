"""Text is pooled at the tokenizer's real end-of-text id: on every Hub folder as it is, on our own older
folders that carry the legacy `eos_token_id: 2`, and never silently at a "#" (id 2)."""

import json
import shutil

import pytest
import torch
from transformers import CLIPModel

from eval import fgovd
from fgclip import FGCLIPModel, FGCLIPTokenizer
from fgclip.cli import run
from fgclip.errors import UserError
from fgclip.folders import save_with_processors
from fgclip.hf_files import CLIP_SPECIAL_TOKEN_IDS, folder_special_token_ids
from tests.conftest import write_one_region_record
from tests.hub_copies.clip import HUB_FOLDERS, STOCK_CLIP_IDS

# "item #." holds token id 2 ("#" without </w>): pooled there, the old code gave a wrong feature silently.
TEXTS = ["a photo of a cat", "item #. on a wooden table", "two small green spheres left of a red cube"]


def test_the_hash_text_really_holds_id_2():
    ids = FGCLIPTokenizer()(TEXTS)["input_ids"]
    assert (ids[1] == 2).any() and not (ids[0] == 2).any()


@pytest.mark.parametrize("repo_id", list(HUB_FOLDERS))
def test_text_features_equal_stock_clip_on_every_hub_folder(hub_copy, repo_id):
    folder = hub_copy(repo_id)
    model = FGCLIPModel.from_pretrained(folder).eval()
    assert model.eos_token_id == 49407
    tokenizer = FGCLIPTokenizer.from_pretrained(folder)  # the folder's own: LAION pads with "!" (id 0)
    batch = tokenizer(TEXTS)
    assert batch["input_ids"][0, -1] == (0 if HUB_FOLDERS[repo_id].pad_token == "!" else 49407)
    stock = CLIPModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ours = model.encode_text(**batch, normalize=False)
        theirs = stock.get_text_features(**batch).pooler_output
        ours_max = model.encode_text(**tokenizer(TEXTS, padding="max_length"), normalize=False)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours_max, theirs, rtol=0, atol=1e-5)


def test_pooling_at_the_legacy_id_2_would_have_been_wrong(hub_copy):
    """The case of the issue: with eos 2 the "#" text pools at the "#", a different feature, no error."""
    model = FGCLIPModel.from_pretrained(hub_copy("openai/clip-vit-base-patch16")).eval()
    batch = FGCLIPTokenizer()(TEXTS[1:2])
    with torch.no_grad():
        right = model.encode_text(**batch)
        model.config.text_config.eos_token_id = 2
        wrong = model.encode_text(**batch)
    assert not torch.allclose(right, wrong, atol=1e-3)


def _our_older_folder(tiny_model, directory):
    """A folder this project wrote before the ids were read from the tokenizer: eos 2 in its config."""
    save_with_processors(tiny_model, directory)
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    config["text_config"].update(bos_token_id=0, eos_token_id=2, pad_token_id=1)
    config_file.write_text(json.dumps(config))
    return directory


def test_our_older_folders_with_the_legacy_id_are_repaired_on_load(tiny_model, tmp_path):
    folder = _our_older_folder(tiny_model, tmp_path / "old")
    loaded = FGCLIPModel.from_pretrained(folder).eval()
    assert loaded.config.special_token_ids == CLIP_SPECIAL_TOKEN_IDS
    batch = FGCLIPTokenizer()(TEXTS)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_text(**batch), tiny_model.encode_text(**batch), rtol=0, atol=1e-6)
    loaded.save_pretrained(tmp_path / "resaved")
    assert json.loads((tmp_path / "resaved" / "config.json").read_text())["text_config"]["eos_token_id"] == 49407


def test_saved_folders_carry_the_ids_of_the_tokenizer_saved_with_them(tiny_model, hub_copy, tmp_path):
    laion = FGCLIPTokenizer.from_pretrained(hub_copy("laion/CLIP-ViT-B-32-laion2B-s34B-b79K"))
    save_with_processors(tiny_model, tmp_path / "laion_tok", laion)
    text = json.loads((tmp_path / "laion_tok" / "config.json").read_text())["text_config"]
    assert (text["bos_token_id"], text["eos_token_id"], text["pad_token_id"]) == (49406, 49407, 0)
    assert FGCLIPTokenizer.from_pretrained(tmp_path / "laion_tok").tokenizer.pad_token == "!"
    save_with_processors(tiny_model, tmp_path / "clip_tok")
    text = json.loads((tmp_path / "clip_tok" / "config.json").read_text())["text_config"]
    assert (text["bos_token_id"], text["eos_token_id"], text["pad_token_id"]) == (49406, 49407, 49407)


def _with_tokenizer_config(source, directory, **changes):
    shutil.copytree(source, directory)
    config_file = directory / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config.update(changes)
    config_file.write_text(json.dumps(config))
    (directory / "special_tokens_map.json").unlink()
    return directory


def test_an_end_of_text_token_missing_from_the_vocabulary_is_a_one_line_error(hub_copy, tmp_path, capsys):
    folder = _with_tokenizer_config(hub_copy("openai/clip-vit-base-patch16"), tmp_path / "clip", eos_token="</s>")
    expected = r"tokenizer_config.json: the end-of-text token '</s>' is not in the vocabulary"
    with pytest.raises(UserError, match=expected):
        folder_special_token_ids(folder)
    with pytest.raises(UserError, match=expected):
        FGCLIPTokenizer.from_pretrained(folder)
    with pytest.raises(UserError, match=expected):
        FGCLIPModel.from_pretrained(folder)
    data = write_one_region_record(tmp_path / "regions.jsonl")
    argv = ["--model", str(folder), "--data", str(data), "--out", str(tmp_path / "eval"), "--no-cache"]
    assert run(fgovd.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'</s>' is not in the vocabulary" in err


def test_an_end_of_text_id_outside_the_model_is_an_error(hub_copy, tmp_path):
    """A tokenizer that added tokens past the model's embedding rows cannot be this model's."""
    folder = tmp_path / "clip"
    shutil.copytree(hub_copy("openai/clip-vit-base-patch16"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["vocab_size"] = 49000
    config["text_config_dict"] = None
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="has id 49407, outside the model's 49000-token vocabulary"):
        FGCLIPModel.from_pretrained(folder)


def test_a_folder_without_tokenizer_files_gets_clip_ids(tmp_path, hub_copy):
    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(hub_copy(STOCK_CLIP_IDS[0]) / name, folder / name)
    assert folder_special_token_ids(folder) == CLIP_SPECIAL_TOKEN_IDS
    assert FGCLIPModel.from_pretrained(folder).eos_token_id == 49407
