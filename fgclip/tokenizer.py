"""CLIP BPE tokenisation that works offline, with FG-CLIP's two lengths (77 short, 248 long).

The vocabulary comes from the BPE file that `open_clip` ships inside its package; from it we build a
transformers `CLIPTokenizer` once (transformers 5 takes the vocabulary as a dict and the merges as pairs;
file names would be silently ignored). It matches open_clip's tokenizer id for id and saves as a normal
tokenizer folder, which model folders carry so that stock transformers code can use them.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from transformers import CLIPTokenizer

from fgclip.errors import UserError

SHORT_LENGTH = 77
LONG_LENGTH = 248
BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
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


@dataclass(frozen=True)
class SpecialTokenIds:
    """The ids a text model needs from its tokenizer: text start, end of text (pooling happens at its first
    occurrence) and padding."""

    bos: int
    eos: int
    pad: int


# What CLIP's BPE tokenizer uses (OpenAI's and open_clip's vocabulary): <|startoftext|>, <|endoftext|>, and
# <|endoftext|> again as padding.
CLIP_SPECIAL_TOKEN_IDS = SpecialTokenIds(bos=49406, eos=49407, pad=49407)
# Files a tokenizer folder may hold; a model folder with none of them gets CLIP's tokenizer.
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "vocab.json")


class TokenizerFilesError(UserError, ValueError):
    """Tokenizer files that cannot give a usable end-of-text token (one-line message)."""


def _token_text(value) -> str | None:
    """A special token as written in tokenizer_config.json / special_tokens_map.json: a string or an
    `AddedToken` dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TokenizerFilesError(f"{path} is not readable JSON: {error}") from error


def _special_token_texts(directory: Path) -> tuple[dict[str, str], Path | None]:
    """bos/eos/pad token strings from special_tokens_map.json over tokenizer_config.json (as transformers
    reads them), and the file the end-of-text token came from."""
    texts: dict[str, str] = {}
    source = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        path = directory / name
        if not path.is_file():
            continue
        values = _read_json(path)
        if not isinstance(values, dict):
            raise TokenizerFilesError(f"{path} must hold a JSON object")
        for role in ("bos", "eos", "pad"):
            text = _token_text(values.get(f"{role}_token"))
            if text is not None:
                texts[role] = text
                source = path if role == "eos" else source
    return texts, source


def _vocabulary(directory: Path) -> tuple[dict[str, int], Path | None]:
    """token -> id of the folder's tokenizer: from tokenizer.json (its model vocabulary and added tokens)
    when there is one, as transformers builds the tokenizer from it; else from vocab.json."""
    fast_file, vocab_file = directory / "tokenizer.json", directory / "vocab.json"
    source = fast_file if fast_file.is_file() else vocab_file if vocab_file.is_file() else None
    if source is None:
        return {}, None
    stat = source.stat()
    return _vocabulary_of_file(str(source), stat.st_mtime_ns, stat.st_size), source


@lru_cache(maxsize=8)
def _vocabulary_of_file(path: str, mtime_ns: int, size: int) -> dict[str, int]:
    """Parsed once per file version (a vocabulary file is megabytes of JSON; loading a model reads it more
    than once)."""
    values = _read_json(Path(path))
    if not isinstance(values, dict):
        return {}
    if Path(path).name != "tokenizer.json":
        return {token: index for token, index in values.items() if isinstance(index, int)}
    vocab = dict((values.get("model") or {}).get("vocab") or {})
    for added in values.get("added_tokens") or []:
        if isinstance(added, dict) and "content" in added and "id" in added:
            vocab[added["content"]] = added["id"]
    return vocab


def has_tokenizer_files(directory: str | Path) -> bool:
    return any((Path(directory) / name).is_file() for name in TOKENIZER_FILES)


def folder_special_token_ids(directory: str | Path, vocab_size: int | None = None) -> SpecialTokenIds:
    """The real special-token ids of the tokenizer a model folder carries, read from its files; CLIP's
    (49406 / 49407 / 49407) when the folder has no tokenizer files.

    Never from `config.json`: the Hub's OpenAI CLIP folders keep a legacy `eos_token_id: 2` there, which is
    the id of "#" in CLIP's vocabulary. With `vocab_size` (the model's token-embedding rows), an id outside
    the model's vocabulary is an error too. Raises `TokenizerFilesError` (one line) when the end-of-text
    token is not in the vocabulary.
    """
    directory = Path(directory)
    if not has_tokenizer_files(directory):
        return CLIP_SPECIAL_TOKEN_IDS
    texts, eos_source = _special_token_texts(directory)
    vocab, vocab_source = _vocabulary(directory)
    eos_text = texts.get("eos", EOS_TOKEN)
    where = eos_source or directory
    if not vocab:
        raise TokenizerFilesError(f"{directory} has tokenizer files but no vocabulary (vocab.json or tokenizer.json)")
    if eos_text not in vocab:
        raise TokenizerFilesError(f"{where}: the end-of-text token {eos_text!r} is not in the vocabulary "
                                  f"({vocab_source.name}); text could not be pooled")
    eos = int(vocab[eos_text])
    if vocab_size is not None and not 0 <= eos < vocab_size:
        raise TokenizerFilesError(f"{where}: the end-of-text token {eos_text!r} has id {eos}, outside the model's "
                                  f"{vocab_size}-token vocabulary; the tokenizer does not belong to this model")
    bos = int(vocab.get(texts.get("bos", BOS_TOKEN), CLIP_SPECIAL_TOKEN_IDS.bos))
    pad = int(vocab.get(texts.get("pad", eos_text), eos))
    return SpecialTokenIds(bos=bos, eos=eos, pad=pad)


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
        build CLIP's when it carries none. `TokenizerFilesError` (one line) for unusable files."""
        if directory is None or not has_tokenizer_files(directory):
            return cls()
        expected = folder_special_token_ids(directory)
        try:
            tokenizer = CLIPTokenizer.from_pretrained(str(directory))
        except (OSError, ValueError, TypeError, KeyError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TokenizerFilesError(f"{directory}: the tokenizer files cannot be loaded: {reason}") from error
        if tokenizer.eos_token_id != expected.eos:
            raise TokenizerFilesError(f"{directory}: the tokenizer's end-of-text id is {tokenizer.eos_token_id}, "
                                      f"its files say {expected.eos}")
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

    def __call__(
        self, texts: str | list[str], long: bool = False, padding: str = "longest"
    ) -> dict[str, torch.Tensor]:
        """`{"input_ids", "attention_mask"}` as `(N, L)` tensors; `L <= 248` if long else `<= 77`."""
        if isinstance(texts, str):
            texts = [texts]
        max_length = LONG_LENGTH if long else SHORT_LENGTH
        encoded = self.tokenizer(
            list(texts), max_length=max_length, truncation=True, padding=padding, return_tensors="pt"
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
