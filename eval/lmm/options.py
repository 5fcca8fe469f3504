"""The options the LMM evaluations share: `--model` and how it is run (`fgclip.llava.settings.GenerationSettings`,
the runner's config and the commands' options at once, so each default is written once, there).
Standard library only: `--help` loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, option
from fgclip.errors import UserError
from fgclip.llava.settings import GenerationSettings


@dataclass
class LMMModelOption:
    model: Path | None = option(
        "LLaVA folder to run (stock LlavaForConditionalGeneration + processor); instead of --answers", None
    )


def add_generation_options(parser: CommandParser, max_new_tokens: int) -> None:
    """--model and the `GenerationSettings` options, with this command's answer length as the default."""
    group = parser.add_options(LMMModelOption, "running a model (--model)")
    parser.add_options(GenerationSettings, group)
    parser.set_defaults(max_new_tokens=max_new_tokens)


def one_answer_source(answers: object, model: Path | None, model_needs: str = "") -> None:
    """Exactly one of --answers (score a file) and --model (run a model), or a one-line `UserError`."""
    if (answers is None) == (model is None):
        raise UserError(f"give exactly one of --answers (score a file) or --model{model_needs} (run a model)")
