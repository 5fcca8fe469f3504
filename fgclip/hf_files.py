"""The JSON files of a Hugging Face model folder, read as data: `config.json` and the special-token ids that
the folder's tokenizer files give.

Standard library only: the model's loader (`fgclip.model.conversion`), the tokenizer (`fgclip.tokenizer`)
and the LLaVA tower code that must run under the transformers 4.37 of the original LLaVA all read folders
through it, and none of them needs the others to do so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from fgclip.errors import UserError
from fgclip.json_files import read_json

# Keys of a config.json that describe the file, not the model (dropped when one config is built from another).
FILE_KEYS = ("model_type", "architectures", "transformers_version", "auto_map", "_name_or_path", "_commit_hash")

BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
# Files a tokenizer folder may hold; a model folder with none of them gets CLIP's tokenizer.
TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json", "vocab.json")


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


def model_fields(values: dict) -> dict:
    """A config's values without the keys that describe the file (`FILE_KEYS`), e.g. to build a
    `CLIPVisionConfig` from the vision part of a dual encoder's config."""
    return {key: value for key, value in values.items() if key not in FILE_KEYS}


def read_config(directory: str | Path) -> dict:
    """`directory/config.json` as a dict; `UserError` when it is missing or not a JSON object."""
    config_file = Path(directory) / "config.json"
    if not config_file.is_file():
        raise UserError(f"{directory} has no config.json: not a Hugging Face model folder")
    return read_json(config_file, dict)


# ---------------------------------------------------------------- special tokens


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
        raise UserError(f"{path} is not readable JSON: {error}") from error


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
            raise UserError(f"{path} must hold a JSON object")
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
    the model's vocabulary is an error too. Raises `UserError` (one line) when the end-of-text token
    is not in the vocabulary.
    """
    directory = Path(directory)
    if not has_tokenizer_files(directory):
        return CLIP_SPECIAL_TOKEN_IDS
    texts, eos_source = _special_token_texts(directory)
    vocab, vocab_source = _vocabulary(directory)
    eos_text = texts.get("eos", EOS_TOKEN)
    where = eos_source or directory
    if not vocab:
        raise UserError(f"{directory} has tokenizer files but no vocabulary (vocab.json or tokenizer.json)")
    if eos_text not in vocab:
        raise UserError(
            f"{where}: the end-of-text token {eos_text!r} is not in the vocabulary "
            f"({vocab_source.name}); text could not be pooled"
        )
    eos = int(vocab[eos_text])
    if vocab_size is not None and not 0 <= eos < vocab_size:
        raise UserError(
            f"{where}: the end-of-text token {eos_text!r} has id {eos}, outside the model's "
            f"{vocab_size}-token vocabulary; the tokenizer does not belong to this model"
        )
    bos = int(vocab.get(texts.get("bos", BOS_TOKEN), CLIP_SPECIAL_TOKEN_IDS.bos))
    pad = int(vocab.get(texts.get("pad", eos_text), eos))
    return SpecialTokenIds(bos=bos, eos=eos, pad=pad)
