"""Reading a JSON file a user gave: one rule for every command. Standard library only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fgclip.errors import UserError

JSON_NAMES = {dict: "object", list: "list", str: "string"}


def read_json(path: str | Path, expected: type | None = None, wrong_type: str | None = None) -> Any:
    """The JSON value in `path`. A missing file, or one that is not UTF-8 text or not valid JSON, is a one-line
    `UserError` naming it; with `expected`, so is a value of another type (`wrong_type` is that message, by default
    a generic one)."""
    if not Path(path).is_file():
        raise UserError(f"{path} does not exist")
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise UserError(f"{path} is not UTF-8 text: {error}") from error
    if expected is not None and not isinstance(value, expected):
        raise UserError(
            wrong_type
            or f"{path} must hold a JSON {JSON_NAMES.get(expected, expected.__name__)}, not {type(value).__name__}"
        )
    return value
