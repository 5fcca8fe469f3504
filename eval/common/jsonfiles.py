"""Reading annotation files: JSON documents and JSON-lines, with malformed input reported, not raised."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fgclip.errors import UserError
from fgclip.json_files import read_json


@dataclass
class Item:
    """One item of an annotation file: where it came from, and the parsed object or why it failed."""

    source: str  # "file:line" or "file:index"
    value: object = None
    error: str | None = None


def load_json(path: Path) -> object:
    """A whole JSON document; a missing or malformed file is a one-line `UserError` (`fgclip.json_files`' rule)."""
    return read_json(path)


def list_items(path: Path, document: object) -> Iterator[Item]:
    """The items of a `.json` document that must be a list (else a one-line `UserError`)."""
    if not isinstance(document, list):
        raise UserError(f"{path} must hold a JSON list of items (or use a .jsonl file, one item per line)")
    for index, value in enumerate(document):
        yield Item(f"{path}:{index}", value)


def json_document(path: Path) -> object | None:
    """The parsed document of a `.json` file, or None when its text is JSON lines (read it with `iter_items`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    return None if looks_like_json_lines(path) else load_json(path)


def iter_items(path: Path) -> Iterator[Item]:
    """Items of a `.jsonl` file (one per non-empty line; a bad line, invalid JSON or invalid UTF-8, becomes an
    `Item` with `error`) or of a `.json` file holding a list. A `.json` file that is not a list is an `UserError`.

    A `.json` file whose text is JSON lines (POPE ships its question files so) is read line by line too.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    if path.suffix == ".json" and not looks_like_json_lines(path):
        yield from list_items(path, load_json(path))
        return
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield Item(f"{path}:{number}", json.loads(line))
            except UnicodeDecodeError:
                yield Item(f"{path}:{number}", error="not UTF-8 text")
            except json.JSONDecodeError as error:
                yield Item(f"{path}:{number}", error=f"not valid JSON: {error.msg}")


def looks_like_json_lines(path: Path) -> bool:
    """True when the first non-blank line is a whole JSON object and more text follows it."""
    with path.open("rb") as handle:
        first = b""
        for line in handle:
            if line.strip():
                first = line
                break
        rest = any(line.strip() for line in handle)
    if not rest or not first.lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(first), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
