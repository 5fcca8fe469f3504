"""CLIP BPE tokenisation that works offline, with FG-CLIP's two lengths (77 short, 248 long).

The vocabulary comes from the BPE file that `open_clip` ships inside its package; from it we build a
transformers `CLIPTokenizer` once (transformers 5 takes the vocabulary as a dict and the merges as pairs;
file names would be silently ignored). It matches open_clip's tokenizer id for id and saves as a normal
tokenizer folder, which model folders carry so that stock transformers code can use them.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

import torch
from transformers import CLIPTokenizer

from fgclip.errors import UserError
from fgclip.hf_files import BOS_TOKEN, EOS_TOKEN, SpecialTokenIds, folder_special_token_ids, has_tokenizer_files

SHORT_LENGTH = 77
LONG_LENGTH = 248
# open_clip uses the first 49152 - 256 - 2 merges of the file (the first line is a header).
_NUM_MERGES = 49152 - 256 - 2


@lru_cache(maxsize=1)
def _clip_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from open_clip.tokenizer import bytes_to_unicode, default_bpe  # imported here: open_clip pulls in timm

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[1 : _NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(pair) for pair in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, merges


def build_clip_tokenizer(model_max_length: int = SHORT_LENGTH) -> CLIPTokenizer:
    """A transformers `CLIPTokenizer` with OpenAI CLIP's 49,408-token vocabulary, built offline."""
    vocab, merges = _clip_vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=model_max_length,
    )


class FGCLIPTokenizer:
    """Tokenises captions for `FGCLIPModel.encode_text`.

    Short texts are truncated to 77 tokens, long texts to 248; a truncated text keeps its final EOS.
    Padding is to the longest text of the call by default, which is exact under CLIP's causal mask
    and first-EOS pooling; pass `padding="max_length"` for fixed shapes.
    """

    def __init__(self, tokenizer: CLIPTokenizer | None = None):
        self.tokenizer = tokenizer if tokenizer is not None else build_clip_tokenizer()

    @classmethod
    def from_pretrained(cls, directory: str | Path | None = None) -> FGCLIPTokenizer:
        """Load the tokenizer a model folder carries (a Hub CLIP folder's, with its own padding token);
        build CLIP's when it carries none. `UserError` (one line) for unusable files."""
        if directory is None or not has_tokenizer_files(directory):
            return cls()
        expected = folder_special_token_ids(directory)
        try:
            tokenizer = CLIPTokenizer.from_pretrained(str(directory))
        except (OSError, ValueError, TypeError, KeyError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{directory}: the tokenizer files cannot be loaded: {reason}") from error
        if tokenizer.eos_token_id != expected.eos:
            raise UserError(
                f"{directory}: the tokenizer's end-of-text id is {tokenizer.eos_token_id}, its files say {expected.eos}"
            )
        return cls(tokenizer)

    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(str(directory))

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def special_token_ids(self) -> SpecialTokenIds:
        """The ids a model config saved with this tokenizer must carry."""
        tokenizer = self.tokenizer
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return SpecialTokenIds(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=pad)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def truncated(self, texts: list[str], long: bool = False) -> list[bool]:
        """Which texts have more tokens (BOS and EOS included) than the 77 (or 248 with `long`) they are cut to."""
        limit = LONG_LENGTH if long else SHORT_LENGTH
        encoded = self.tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
        return [len(ids) > limit for ids in encoded]

    def __call__(self, texts: str | list[str], long: bool = False, padding: str = "longest") -> dict[str, torch.Tensor]:
        """`{"input_ids", "attention_mask"}` as `(N, L)` tensors; `L <= 248` if long else `<= 77`."""
        if isinstance(texts, str):
            texts = [texts]
        max_length = LONG_LENGTH if long else SHORT_LENGTH
        encoded = self.tokenizer(
            list(texts), max_length=max_length, truncation=True, padding=padding, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
