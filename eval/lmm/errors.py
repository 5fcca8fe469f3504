"""The error contract of the LMM runs: a usage or data problem is one stderr line and exit code 2."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from eval.common.cli import EvalError
from fgclip.errors import UserError


class LMMEvalError(EvalError):
    """A problem with the user's input (missing file, malformed data, not a LLaVA folder).

    A kind of the evaluations' shared `EvalError`, so `eval.common.cli.run_main` reports it the same way.
    """


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main`; every `UserError` (`LMMEvalError`, a refused --out) becomes `error: ...` on stderr
    and exit code 2."""
    try:
        main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (answers written so far are kept; run again to resume)", file=sys.stderr)
        return 130
    return 0
