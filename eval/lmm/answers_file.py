"""The answers JSONL: append-only, one line per answered question, which is what makes runs resumable.

Lines are `{"question_id": ..., "prompt": ..., "text": <raw answer>, "model_id": ...}` (data-format.md
section 2 asks for at least `question_id` and `text`). A run appends and flushes after every batch, so
a killed run loses at most the batch in flight; a torn last line is cut off when the file is reopened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fgclip.errors import UserError


def question_key(question_id) -> str:
    """Question ids compared as strings, so `7` in a question file matches `"7"` in an answers file."""
    return str(question_id)


@dataclass
class AnswerFileContents:
    """Answers read from a file: raw text by question id, plus what could not be used."""

    answers: dict[str, str] = field(default_factory=dict)
    prompts: dict[str, str] = field(default_factory=dict)
    bad_lines: int = 0
    duplicates: int = 0


def read_answers(path: str | Path) -> AnswerFileContents:
    """Read an answers JSONL (ours, LLaVA's `text` or POPE's `answer` field). Missing file -> empty.

    Malformed lines are counted, never fatal; for a repeated question id the first answer is kept and
    the repeat counted.
    """
    contents = AnswerFileContents()
    path = Path(path)
    if not path.exists():
        return contents
    with path.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                contents.bad_lines += 1
                continue
            text = item.get("text", item.get("answer")) if isinstance(item, dict) else None
            if not isinstance(item, dict) or "question_id" not in item or not isinstance(text, str):
                contents.bad_lines += 1
                continue
            key = question_key(item["question_id"])
            if key in contents.answers:
                contents.duplicates += 1
                continue
            contents.answers[key] = text
            if isinstance(item.get("prompt"), str):
                contents.prompts[key] = item["prompt"]
    return contents


def read_answers_file(path: str | Path) -> AnswerFileContents:
    """An answers file the user gave (`--answers`). It must exist and hold at least one answer line: an empty
    file, a JSON list or a file of unusable lines is an error (one line, exit 2), never a score of 0."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"answers file {path} does not exist")
    with path.open("rb") as handle:
        head = next((line.lstrip() for line in handle if line.strip()), b"")
    if not head:
        raise UserError(f"answers file {path} is empty")
    if head.startswith(b"["):
        raise UserError(
            f"answers file {path} holds a JSON list; answers files are JSON lines, one "
            '{"question_id": ..., "text": ...} object per line'
        )
    contents = read_answers(path)
    if not contents.answers:
        raise UserError(
            f"answers file {path} holds no usable answer: {contents.bad_lines} lines, none a JSON "
            "object with question_id and text (or answer)"
        )
    return contents


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line that a killed run left without its newline; True when something was cut."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1  # 0 when the only line is torn
    with path.open("r+b") as handle:
        handle.truncate(cut)
    return True


class AnswerWriter:
    """Appends answer lines and makes them durable after each batch."""

    def __init__(self, path: str | Path, model_id: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self.model_id = model_id
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, rows: Iterable[tuple[object, str, str, dict]]) -> None:
        """rows: (question_id, prompt, answer text, extra fields) for one batch."""
        for question_id, prompt, text, extra in rows:
            line = {"question_id": question_id, "prompt": prompt, "text": text, "model_id": self.model_id, **extra}
            self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> AnswerWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_same_prompts(existing: AnswerFileContents, prompts: dict[str, str], path: Path) -> None:
    """Refuse to resume into a file written for other prompts (a different question file or template)."""
    for key, prompt in prompts.items():
        old = existing.prompts.get(key)
        if old is not None and old != prompt:
            raise UserError(
                f"{path} already answers question {key} with another prompt ({old!r} vs {prompt!r}); "
                "use a new --output_dir folder or delete the answers file"
            )
