"""`save_with_processors`: a folder that stock transformers reads whole (tokenizer, square processor, card)."""

from transformers import CLIPImageProcessor, CLIPTokenizer

from fgclip import FGCLIPModel
from fgclip.folders import save_with_processors


def test_save_with_processors_makes_a_self_contained_folder(tiny_model, tmp_path):
    save_with_processors(tiny_model, tmp_path)
    assert CLIPTokenizer.from_pretrained(tmp_path)("a cat")["input_ids"] == [49406, 320, 2368, 49407]
    processor = CLIPImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 32, "width": 32} and not processor.do_center_crop
    assert (tmp_path / "README.md").is_file() and (tmp_path / "model.safetensors").is_file()
    assert FGCLIPModel.from_pretrained(tmp_path).config.special_token_ids == tiny_model.config.special_token_ids
