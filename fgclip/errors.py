"""The one kind of error that means "the user can fix this": a bad option, a missing or malformed input,
a folder that is not what a command needs. Every command prints its message as one line on stderr and
exits with code 2, never with a traceback. Raise `UserError` itself; the message says where the error arose.
Record-level problems that are counted and skipped (`RecordError`, `ImageError`) are not user errors."""

from __future__ import annotations


class UserError(Exception):
    """A problem with what the user gave, with a one-line message that says what and, where it can, how to fix it."""
