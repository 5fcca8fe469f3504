"""The options the LMM evaluations share: `--model` and how it is run (`fgclip.llava.settings.GenerationSettings`,
the runner's config and the commands' options at once, so each default is written once, there).
Standard library only: `--help` loads no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, OptionGroup, option
from fgclip.errors import UserError
from fgclip.llava.settings import GenerationSettings


@dataclass
class LMMModelOption:
    model: Path | None = option(
        "LLaVA folder to run (stock LlavaForConditionalGeneration + processor); instead of --answers", None
    )


def generation_parser(prog: str, description: str | None, *groups: OptionGroup, max_new_tokens: int) -> CommandParser:
    """The command line of an LMM evaluation: its own `groups`, then --model and the `GenerationSettings` options,
    with this command's answer length as the default."""
    model_group = "running a model (--model)"
    options = [*groups, (LMMModelOption, model_group), (GenerationSettings, model_group)]
    parser = CommandParser(prog=prog, description=description, options=options)
    parser.set_defaults(max_new_tokens=max_new_tokens)
    return parser


def one_answer_source(answers: object, model: Path | None, model_needs: str = "") -> None:
    """Exactly one of --answers (score a file) and --model (run a model), or a one-line `UserError`."""
    if (answers is None) == (model is None):
        raise UserError(f"give exactly one of --answers (score a file) or --model{model_needs} (run a model)")
