"""Checkpoint conversions as commands.

    python -m fgclip.convert from-clip CLIP_DIR OUT_DIR          # stock HF CLIP -> FG-CLIP (long tables stretched)
    python -m fgclip.convert from-official RELEASE_DIR OUT_DIR   # qihoo360/fg-clip-* layout -> this project
    python -m fgclip.convert export-vision MODEL_DIR OUT_DIR     # -> plain CLIPVisionModel folder for LLaVA
    python -m fgclip.convert export-onnx MODEL_DIR OUT_DIR       # -> vision.onnx, text.onnx, text_long.onnx

The sources are folders as downloaded from the Hugging Face Hub (e.g. `hf download
openai/clip-vit-base-patch16 --local-dir CLIP_DIR`), read with no edit. OUT_DIR must be new or empty:
a folder that holds anything else (another model, say) is refused unless --overwrite is given, and
OUT_DIR may never be the source folder itself.

Every output folder carries its tokenizer (the source's own, e.g. LAION's "!" padding) and FG-CLIP's
image processor: resize to a square, no centre crop, as FG-CLIP is trained and evaluated. The
shortest-edge resize + centre crop of a Hub CLIP folder's preprocessor_config.json is not carried
over. The saved config.json carries the tokenizer's real special-token ids (the Hub's OpenAI configs keep a
legacy eos_token_id 2). Every output folder also carries a model card (README.md, `fgclip.model_card`).
Errors are one line with exit code 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from, positive_int
from fgclip.errors import UserError

# sub-command -> (the source kinds it reads, what its source is, what it does)
COMMANDS = {
    "from-clip": (
        ("clip",),
        "a Hugging Face CLIP folder (a local copy of openai/clip-vit-base-patch16, "
        "-large-patch14, -large-patch14-336, or a LAION HF-format CLIP)",
        "FG-CLIP initialised from a stock CLIP: its weights as they are, the 248-slot long-text table "
        "stretched from the 77-slot one and the long-text projection copied from the text projection",
    ),
    "from-official": (
        ("official-fgclip",),
        "an official FG-CLIP release folder (qihoo360/fg-clip-base or -large)",
        "an official FG-CLIP release in this project's format, every trained weight as released",
    ),
    "export-vision": (
        ("fgclip", "clip", "official-fgclip"),
        "an FG-CLIP folder (this project's, a CLIP folder or an official release)",
        "the image tower as a stock CLIPVisionModel folder (+ image processor) that transformers 5.x "
        "and the 4.37 of the original LLaVA load with every weight: LLaVA's --vision_tower",
    ),
    "export-onnx": (
        ("fgclip", "clip", "official-fgclip"),
        "an FG-CLIP folder (this project's, a CLIP folder or an official release)",
        "ONNX graphs: vision.onnx, text.onnx (77 tokens), text_long.onnx (248 tokens), onnx_config.json, "
        "the tokenizer, the image processor and a model card. Needs pip install 'fgclip[onnx]'",
    ),
}
# What to use instead when a source is of another kind.
ADVICE = {
    "fgclip": "it is already an FG-CLIP folder of this project",
    "official-fgclip": "it is an official FG-CLIP release: use from-official",
    "clip": "it is a stock CLIP folder: use from-clip",
}


@dataclass
class ConvertOptions:
    """What every sub-command reads and writes."""

    source: Path = option(
        "the source model folder (see the command's description for the kinds it reads)",
        positional=True,
        metavar="SOURCE_DIR",
    )
    output: Path = option(
        "output folder: created, or new and empty (export-onnx: or a previous export)",
        positional=True,
        metavar="OUT_DIR",
    )
    overwrite: bool = option(
        "write into OUT_DIR even if it holds other files (files of the same names are replaced, "
        "the rest is left as it is); never allowed when OUT_DIR is the source folder",
        False,
    )


@dataclass
class OnnxOptions(ConvertOptions):
    opset: int | None = option(
        "ONNX opset (default: the exporter's; recorded in onnx_config.json)", None, type=positive_int
    )


def _source(command: str, options: ConvertOptions) -> Path:
    """The source folder, checked (kind, config, whole weight files) before anything is written."""
    from fgclip.model.conversion import detect_checkpoint_kind

    kind = detect_checkpoint_kind(options.source)
    if kind not in COMMANDS[command][0]:
        raise UserError(f"{command} cannot read {options.source}: {ADVICE[kind]}")
    return options.source


def _output(options: ConvertOptions, owned=None, what: str | None = None) -> Path:
    from fgclip.outputs import prepare_output_dir

    holds_model = (options.output / "config.json").is_file()
    return prepare_output_dir(
        options.output,
        inputs=[options.source],
        owned=owned or (),
        overwrite=options.overwrite,
        option="OUT_DIR",
        what=what or ("a model" if holds_model else ""),
    )


def _convert(command: str, options: ConvertOptions) -> str:
    """from-clip and from-official: load (converted on load), save with the source's tokenizer."""
    from fgclip.folders import save_with_processors
    from fgclip.model import FGCLIPModel
    from fgclip.model_card import Provenance
    from fgclip.tokenizer import FGCLIPTokenizer

    source = _source(command, options)
    tokenizer = FGCLIPTokenizer.from_pretrained(source)
    output = _output(options)
    save_with_processors(FGCLIPModel.from_pretrained(source), output, tokenizer, Provenance.converted(source, command))
    return f"{'FG-CLIP initialised from CLIP' if command == 'from-clip' else 'official FG-CLIP'} {source} -> {output}"


def _export_vision(command: str, options: ConvertOptions) -> str:
    from fgclip.model import FGCLIPModel
    from fgclip.model_card import Provenance, write_model_card

    source = _source(command, options)
    output = _output(options)
    model = FGCLIPModel.from_pretrained(source)
    model.export_vision_tower(output)
    write_model_card(model, output, Provenance.converted(source, command))
    return f"vision tower of {source} exported as a CLIPVisionModel folder -> {output}"


def _export_onnx(command: str, options: OnnxOptions) -> str:
    from fgclip.model import FGCLIPModel
    from fgclip.model_card import Provenance, write_model_card
    from fgclip.onnx_export import (
        CONFIG_FILE,
        TEXT_FILE,
        TEXT_LONG_FILE,
        VISION_FILE,
        export_onnx,
        is_export_output,
        require_packages,
    )
    from fgclip.tokenizer import FGCLIPTokenizer

    require_packages()
    source = _source(command, options)
    output = _output(options, owned=is_export_output, what="files")
    model = FGCLIPModel.from_pretrained(source)
    info = export_onnx(model, FGCLIPTokenizer.from_pretrained(source), output, options.opset)
    write_model_card(model, output, Provenance.converted(source, command))
    return (
        f"ONNX graphs of {source} (opset {info.opset}, image {info.image_size} px, dim {info.embedding_dim}) "
        f"-> {output}/{{{VISION_FILE},{TEXT_FILE},{TEXT_LONG_FILE}}} + {CONFIG_FILE}"
    )


HANDLERS = {
    "from-clip": (_convert, ConvertOptions),
    "from-official": (_convert, ConvertOptions),
    "export-vision": (_export_vision, ConvertOptions),
    "export-onnx": (_export_onnx, OnnxOptions),
}


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m fgclip.convert", description=__doc__)
    commands = parser.add_commands()
    for name, (_, source, does) in COMMANDS.items():
        command = commands.add_parser(name, help=does.split(":")[0], description=f"{does}.\n\nSOURCE_DIR: {source}.")
        command.add_options(HANDLERS[name][1])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler, options_type = HANDLERS[args.command]
    try:
        print(handler(args.command, options_from(args, options_type)))
    except OSError as error:  # an unreadable or unwritable folder: one line, like every user error
        raise UserError(f"{args.command}: {error.strerror or error} ({error.filename or args.output})") from error
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
