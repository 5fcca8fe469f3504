"""The one kind of error that means "the user can fix this": a bad option, a missing or malformed input,
a folder that is not what a command needs. Every command prints its message as one line on stderr and
exits with code 2, never with a traceback. Raise `UserError` itself; the message says where the error arose.
Record-level problems that are counted and skipped (`RecordError`, `ImageError`) are not user errors."""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with what the user gave, with a one-line message that says what and, where it can, how to fix it.

    every_rank: every process of a multi-process job raises it alike (all ranks agreed on it), so only rank 0
        prints it (`reported_here`) and the job's log holds it once.
    """

    def __init__(self, message: str, every_rank: bool = False):
        super().__init__(message)
        self.every_rank = every_rank


def reported_here(error: BaseException) -> bool:
    """Whether this process prints `error`: one raised alike on every rank (`every_rank`) is printed by rank 0 only."""
    return not getattr(error, "every_rank", False) or os.environ.get("RANK", "0") == "0"
