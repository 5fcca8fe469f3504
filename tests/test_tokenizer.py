"""The offline CLIP tokenizer against open_clip's, and FG-CLIP's two lengths."""

import open_clip
import pytest

from fgclip.tokenizer import LONG_LENGTH, SHORT_LENGTH, FGCLIPTokenizer

STRINGS = [
    "a photo of a cat",
    "A Small, RED cube; left of (two) shiny spheres!",
    "Café déjà vu: naïve façade",
    "   lots   of\twhite\n space  ",
    "numbers 3.14 and 1,000,000 and emoji-free text",
    "",
]


@pytest.fixture(scope="module")
def reference():
    return open_clip.get_tokenizer("ViT-B-16")


@pytest.mark.parametrize("text", STRINGS)
def test_ids_match_open_clip(tokenizer, reference, text):
    ours = tokenizer([text])["input_ids"][0].tolist()
    theirs = reference([text])[0].tolist()
    assert ours == theirs[: theirs.index(49407) + 1]


def test_truncation_keeps_the_eos(tokenizer):
    long_text = "word " * 500
    short = tokenizer([long_text])["input_ids"]
    long = tokenizer([long_text], long=True)["input_ids"]
    assert short.shape == (1, SHORT_LENGTH) and long.shape == (1, LONG_LENGTH)
    assert short[0, -1].item() == long[0, -1].item() == tokenizer.eos_token_id


def test_padding_to_longest_or_max_length(tokenizer):
    batch = tokenizer(["a", "a much longer caption than the first"])
    assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())
    assert tokenizer(["a"], padding="max_length")["input_ids"].shape == (1, SHORT_LENGTH)
    assert tokenizer(["a"], long=True, padding="max_length")["input_ids"].shape == (1, LONG_LENGTH)


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = FGCLIPTokenizer.from_pretrained(tmp_path)
    for text in STRINGS:
        assert reloaded([text])["input_ids"].tolist() == tokenizer([text])["input_ids"].tolist()
    assert FGCLIPTokenizer.from_pretrained(tmp_path / "nothing-here").vocab_size == 49408


def test_truncated_says_which_texts_are_cut(tokenizer):
    # 75 words + BOS + EOS fill the 77 slots exactly; one more word is cut
    texts = ["a dog", "word " * 75, "word " * 76, "word " * 246, "word " * 247]
    assert tokenizer.truncated(texts) == [False, False, True, True, True]
    assert tokenizer.truncated(texts, long=True) == [False, False, False, False, True]
