"""On-disk embedding cache: one safetensors file per (model, encoding kind, options, inputs).

Keys are content fingerprints, not names: the model part covers the weight and config files (path,
size, modification time), the input part covers every image file's path, size and modification time
(or the texts themselves), so a changed checkpoint or image is never served stale embeddings, and
two benchmarks that encode the same images share one entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

# Files of a model folder whose change must invalidate cached embeddings.
_MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


def digest(parts) -> str:
    """A stable hex digest of JSON-serialisable `parts`."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()


def file_stat(path: Path) -> list:
    """[resolved path, size, mtime_ns] of a file, or [path, None, None] if it is missing."""
    try:
        stat = path.stat()
    except OSError:
        return [str(path), None, None]
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def files_digest(paths: Iterable[Path]) -> str:
    """Digest of the stats of `paths`, in order."""
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(json.dumps(file_stat(Path(path))).encode("utf-8"))
        hasher.update(b"\n")
    return hasher.hexdigest()


def texts_digest(texts: Iterable[str]) -> str:
    hasher = hashlib.sha256()
    for text in texts:
        hasher.update(text.encode("utf-8"))
        hasher.update(b"\x00")
    return hasher.hexdigest()


def model_fingerprint(directory: Path) -> str:
    """Digest of a model folder: its resolved path and the stats of its weight/config/tokenizer files."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in _MODEL_FILE_SUFFIXES)
    return digest({"path": str(directory.resolve()), "files": [file_stat(p) for p in files]})


class EmbeddingCache:
    """Read/write tensors under a key; `directory=None` disables caching (every lookup misses).

    `hits` and `misses` count lookups, so a results file can say whether it re-used embeddings.
    """

    def __init__(self, directory: str | Path | None):
        self.directory = Path(directory) if directory is not None else None
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def key(self, **parts) -> str:
        return digest(parts)

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.safetensors"

    def load(self, key: str) -> dict[str, torch.Tensor] | None:
        if not self.enabled:
            self.misses += 1
            return None
        path = self._path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as error:
            # A torn or foreign file: recompute (and overwrite) rather than fail the evaluation.
            print(f"warning: ignoring unreadable cache file {path}: {error}", file=sys.stderr)
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    def save(self, key: str, tensors: dict[str, torch.Tensor], description: dict | None = None) -> None:
        if not self.enabled:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        metadata = {"description": json.dumps(description or {}, sort_keys=True, default=str)}
        save_file({name: t.contiguous().cpu() for name, t in tensors.items()}, str(temporary), metadata=metadata)
        temporary.replace(path)  # atomic: a concurrent reader sees the old file or the whole new one

    def summary(self) -> dict:
        return {
            "enabled": self.enabled,
            "hits": self.hits,
            "misses": self.misses,
            "directory": str(self.directory) if self.directory else None,
        }
