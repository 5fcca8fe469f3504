"""Reading annotation files: JSON documents and JSON-lines, with malformed input reported, not raised."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from eval.common.cli import EvalError


@dataclass
class Item:
    """One item of an annotation file: where it came from, and the parsed object or why it failed."""

    source: str  # "file:line" or "file:index"
    value: object = None
    error: str | None = None


def load_json(path: Path) -> object:
    """A whole JSON document; a missing or malformed file is a one-line `EvalError`."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise EvalError(f"{path} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise EvalError(f"{path} is not UTF-8 text: {error}") from error


def iter_items(path: Path) -> Iterator[Item]:
    """Items of a `.jsonl` file (one per non-empty line; a bad line becomes an `Item` with `error`) or of
    a `.json` file holding a list. A `.json` file that is not a list is an `EvalError`."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"{path} does not exist")
    if path.suffix == ".json":
        items = load_json(path)
        if not isinstance(items, list):
            raise EvalError(f"{path} must hold a JSON list of items (or use a .jsonl file, one item per line)")
        for index, value in enumerate(items):
            yield Item(f"{path}:{index}", value)
        return
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield Item(f"{path}:{number}", json.loads(line))
                except json.JSONDecodeError as error:
                    yield Item(f"{path}:{number}", error=f"not valid JSON: {error.msg}")
    except UnicodeDecodeError as error:
        raise EvalError(f"{path} is not UTF-8 text: {error}") from error
