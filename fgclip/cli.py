"""One command-line contract for every fgclip command.

* Options are the fields of typed config dataclasses, declared with `option(...)`; the parser is derived from
  them (`CommandParser.add_options`) and the parsed values come back as those dataclasses (`options_from`),
  so every default lives in one place: the dataclass.
* One spelling: `--snake_case` (transformers' and LLaVA's). The `--kebab-case` form and any old names given
  as `aliases` are accepted but hidden from `--help`. A flag that is on by default is turned off with
  `--no_flag` (`--no-flag` also works).
* `run(main)` is the one runner: a `UserError` is printed as `error: <one line>` with exit code 2, never a
  traceback; Ctrl-C is exit code 130.
* This module imports only the standard library, so a command parses (and answers `--help`) before torch or
  transformers load. transformers' `HfArgumentParser` does the same derivation, but importing it loads
  transformers, it has no positional arguments and it lists every alias in `--help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from fgclip.errors import UserError, reported_here

_MISSING = dataclasses.MISSING


def option(
    help: str,
    default: Any = _MISSING,
    *,
    default_factory: Callable[[], Any] | Any = _MISSING,
    aliases: Sequence[str] = (),
    name: str | None = None,
    positional: bool = False,
    metavar: str | None = None,
    choices: Sequence[Any] | None = None,
    nargs: str | None = None,
    type: Callable[[str], Any] | None = None,  # noqa: A002 - argparse's name
    append: bool = False,
    const: Any = None,
) -> Any:
    """A dataclass field that is also a command-line option. Without a default the option is required.

    help: the `--help` text (the default is appended when it says something).
    aliases: other accepted spellings (old names), hidden from `--help`.
    name: the option's name where it is not the field's, e.g. `caption_model` for `CaptionConfig.model` when several
        configs of one command have a `model` field.
    positional: a positional argument instead of an option.
    type: a parser for one value (e.g. `positive_int`); by default the field's annotation decides.
    append: for a list field, one value per occurrence (`--text a --text b`) instead of several after one flag.
    const: with `nargs="?"`, the value of the option given without one (`--deepspeed` alone: the shipped config).
    """
    metadata = {
        "help": help,
        "aliases": tuple(aliases),
        "name": name,
        "positional": positional,
        "metavar": metavar,
        "choices": choices,
        "nargs": nargs,
        "type": type,
        "append": append,
        "const": const,
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def output_dir_option(help: str, default: Any = _MISSING, **kwargs) -> Any:
    """The output folder of a writing command: `--output_dir DIR` everywhere, the old `--out` accepted."""
    return option(help, default, aliases=["out"], metavar="DIR", **kwargs)


# ---------------------------------------------------------------- value parsers


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


# ---------------------------------------------------------------- parser


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option under its one spelling; the default after the help."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32, width=110)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            return super()._format_action_invocation(action)
        name = action.option_strings[0]
        if isinstance(action, _BooleanOption):
            return f"{name}, {action.negation}"
        if action.nargs == 0:
            return name
        return f"{name} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default is not None and default is not False and default not in ((), [], argparse.SUPPRESS)
        shown = shown and "default" not in text  # 0 is a default worth showing; False and None are not
        if shown and action.option_strings and action.nargs != 0:
            text += f" (default: {' '.join(map(str, default)) if isinstance(default, (list, tuple)) else default})"
        return text


class _BooleanOption(argparse.Action):
    """`--flag` / `--no_flag` (and the hidden `--no-flag`) for a flag that is on by default or decided later.
    argparse's `BooleanOptionalAction` knows only `--no-flag`."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        default: bool | None = None,
        required: bool = False,
        help: str | None = None,
    ):  # noqa: A002 - argparse's name
        self.positive = tuple(option_strings)
        negations: list[str] = []
        for name in self.positive:
            if name.startswith("--"):
                for negation in (f"--no_{name[2:].replace('-', '_')}", f"--no-{name[2:].replace('_', '-')}"):
                    if negation not in negations:
                        negations.append(negation)
        self.negation = negations[0]
        super().__init__([*self.positive, *negations], dest, nargs=0, default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string in self.positive)

    def format_usage(self) -> str:  # the usage line shows the one spelling and its negation, not every alias
        return f"{self.positive[0]} | {self.negation}"


def _unwrap_optional(annotation: Any) -> Any:
    """`X | None` -> X."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


OptionGroup = type | tuple[type, str]  # an option dataclass, alone or with the title of its --help group


class CommandParser(argparse.ArgumentParser):
    """An `ArgumentParser` whose options come from config dataclasses and whose errors are one line.

    options: the config dataclasses to add at once (`add_options`), in order, each alone or as
        `(dataclass, group title)`; dataclasses given the same title share one group.
    """

    def __init__(self, *args, options: Sequence[OptionGroup] = (), **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        titled = {}  # group title -> the argparse group made for it
        for item in options:
            config_type, title = item if isinstance(item, tuple) else (item, None)
            if title is None:
                self.add_options(config_type)
            else:
                titled[title] = self.add_options(config_type, titled.get(title, title))

    def error(self, message: str):  # one line, not argparse's usage block
        for action in self._actions:  # argparse names an option by all its spellings: name it by the one
            if len(action.option_strings) > 1:
                message = message.replace("/".join(action.option_strings), action.option_strings[0])
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def add_options(
        self, config_type: type, group: str | argparse._ArgumentGroup | None = None
    ) -> argparse._ActionsContainer:
        """Add one argument per `option(...)` field of the dataclass `config_type`; `group` is a new group's
        title or a group returned by an earlier call. Returns where the arguments went."""
        container = self.add_argument_group(group) if isinstance(group, str) else (group or self)
        hints = typing.get_type_hints(config_type)
        for field in dataclasses.fields(config_type):
            if field.init and "help" in field.metadata:
                _add_field(container, field, hints[field.name])
        return container

    def add_commands(self, dest: str = "command") -> argparse._SubParsersAction:
        """Sub-commands (`python -m fgclip.convert from-clip ...`), each a `CommandParser`."""
        return self.add_subparsers(dest=dest, required=True, parser_class=CommandParser, metavar="COMMAND")


def _add_field(container, field: dataclasses.Field, annotation: Any) -> None:
    meta = field.metadata
    has_default = field.default is not _MISSING or field.default_factory is not _MISSING
    default = (
        field.default
        if field.default is not _MISSING
        else (field.default_factory() if field.default_factory is not _MISSING else None)
    )
    annotation = _unwrap_optional(annotation)
    kwargs: dict[str, Any] = {"help": meta["help"], "default": default}
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]

    origin = typing.get_origin(annotation)
    if annotation is bool:
        # --flag / --no_flag; a None default means "decided later" (e.g. bf16 on a GPU that supports it)
        kwargs["action"] = _BooleanOption if default in (True, None) else "store_true"
    else:
        element = annotation
        if origin in (list, tuple):
            element = typing.get_args(annotation)[0]
            if meta.get("append"):
                kwargs["action"] = "append"
            else:
                kwargs["nargs"] = meta["nargs"] or ("+" if not has_default else "*")
        elif meta["nargs"]:
            kwargs["nargs"] = meta["nargs"]
            if meta.get("const") is not None:
                kwargs["const"] = meta["const"]
        if typing.get_origin(element) is Literal:
            kwargs["choices"] = typing.get_args(element)
            element = type(kwargs["choices"][0])
        if meta["choices"] is not None:
            kwargs["choices"] = meta["choices"]
        kwargs["type"] = meta["type"] or (element if element in (int, float, str, Path) else str)

    dest = _dest(field)
    if meta["positional"]:
        if not has_default:
            kwargs.pop("default")
        elif "nargs" not in kwargs:
            kwargs["nargs"] = "?"
        container.add_argument(dest, **kwargs)
        return
    names = [f"--{dest}"]
    for alias in (dest.replace("_", "-"), *meta["aliases"]):
        alias = alias if alias.startswith("-") else f"--{alias}"
        if alias not in names:
            names.append(alias)
    if not has_default:
        kwargs["required"] = True
        kwargs.pop("default")
    container.add_argument(*names, dest=dest, **kwargs)


def _dest(field: dataclasses.Field) -> str:
    """Where the parsed value of a field is in the namespace: the option's name."""
    return field.metadata.get("name") or field.name


def options_from(namespace: argparse.Namespace, config_type: type, **overrides) -> Any:
    """The `config_type` dataclass filled from parsed arguments (fields without an option keep their default)."""
    values = {
        field.name: getattr(namespace, _dest(field))
        for field in dataclasses.fields(config_type)
        if field.init and hasattr(namespace, _dest(field))
    }
    values.update(overrides)
    return config_type(**values)


# ---------------------------------------------------------------- running


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> int:
    """Run a command's `main(argv)`: 0 on success (or main's own int), 2 with one line for a `UserError`,
    130 on Ctrl-C."""
    try:
        result = main(argv)
    except UserError as error:
        if reported_here(error):
            print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def one_line(error: BaseException) -> str:
    """An error's message on one line. An error re-raised from a data-loader worker carries the worker's
    traceback; its last line ("Type: message") is the message."""
    text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if "Original Traceback" in text:
        return lines[-1].split(": ", 1)[-1]
    return " ".join(lines)


def entry_point(main: Callable[[Sequence[str] | None], object]) -> Callable[[], None]:
    """A console-script function for `main` (see `[project.scripts]` in pyproject.toml)."""

    def script() -> None:
        sys.exit(run(main))

    script.__doc__ = main.__doc__
    return script
