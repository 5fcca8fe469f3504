"""Checkpoint conversions as commands.

    python -m fgclip.convert from-clip CLIP_DIR OUT_DIR          # stock HF CLIP -> FG-CLIP (long tables stretched)
    python -m fgclip.convert from-official RELEASE_DIR OUT_DIR   # qihoo360/fg-clip-* layout -> this project
    python -m fgclip.convert export-vision MODEL_DIR OUT_DIR     # -> plain CLIPVisionModel folder for LLaVA
    python -m fgclip.convert export-onnx MODEL_DIR OUT_DIR       # -> vision.onnx, text.onnx, text_long.onnx

The sources are folders as downloaded from the Hugging Face Hub (e.g. `huggingface-cli download
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

import argparse
import sys
from pathlib import Path

OVERWRITE_HELP = ("write into OUT_DIR even if it holds other files (files of the same names are replaced, the "
                  "rest is left as it is); never allowed when OUT_DIR is the source folder")


def _source(args, expected: tuple[str, ...]) -> Path:
    """The source folder, checked (kind, config, whole weight files) before anything is written."""
    from fgclip.model.conversion import CheckpointError, detect_checkpoint_kind

    kind = detect_checkpoint_kind(args.source)
    if kind not in expected:
        advice = {"fgclip": "it is already an FG-CLIP folder of this project",
                  "official-fgclip": "it is an official FG-CLIP release: use from-official",
                  "clip": "it is a stock CLIP folder: use from-clip"}[kind]
        raise CheckpointError(f"{args.command} cannot read {args.source}: {advice}")
    return Path(args.source)


def _output(args) -> Path:
    from fgclip.outputs import prepare_output_dir

    output = Path(args.output)
    holds_model = (output / "config.json").is_file()
    return prepare_output_dir(output, inputs=[args.source], overwrite=args.overwrite, option="OUT_DIR",
                              what="a model" if holds_model else "")


def _from_clip(args) -> str:
    from fgclip.model.conversion import fgclip_from_clip, save_with_processors
    from fgclip.model_card import Provenance
    from fgclip.tokenizer import FGCLIPTokenizer

    source = _source(args, ("clip",))
    tokenizer = FGCLIPTokenizer.from_pretrained(source)
    output = _output(args)
    save_with_processors(fgclip_from_clip(source), output, tokenizer, Provenance.converted(source, "from-clip"))
    return f"FG-CLIP initialised from CLIP {source} -> {output}"


def _from_official(args) -> str:
    from fgclip.model.conversion import fgclip_from_official, save_with_processors
    from fgclip.model_card import Provenance
    from fgclip.tokenizer import FGCLIPTokenizer

    source = _source(args, ("official-fgclip",))
    tokenizer = FGCLIPTokenizer.from_pretrained(source)
    output = _output(args)
    save_with_processors(fgclip_from_official(source), output, tokenizer, Provenance.converted(source, "from-official"))
    return f"official FG-CLIP {source} imported -> {output}"


def _export_vision(args) -> str:
    from fgclip.model.conversion import export_vision_tower
    from fgclip.model.modeling import FGCLIPModel
    from fgclip.model_card import Provenance, write_model_card

    source = _source(args, ("fgclip", "clip", "official-fgclip"))
    output = _output(args)
    model = FGCLIPModel.from_pretrained(source)
    export_vision_tower(model, output)
    write_model_card(model, output, Provenance.converted(source, "export-vision"))
    return f"vision tower of {source} exported as a CLIPVisionModel folder -> {output}"


def _export_onnx(args) -> str:
    from fgclip.onnx_export import run  # its own module: torch's ONNX exporter, onnx and onnxscript

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fgclip.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, source_help in (
        ("from-clip", _from_clip, ("a Hugging Face CLIP folder (a local copy of openai/clip-vit-base-patch16, "
                                   "-large-patch14, -large-patch14-336, or a LAION HF-format CLIP)")),
        ("from-official", _from_official, "an official FG-CLIP release folder (qihoo360/fg-clip-base or -large)"),
        ("export-vision", _export_vision, "an FG-CLIP folder (this project's, a CLIP folder or an official release)"),
    ):
        command = commands.add_parser(name, help=source_help, description=source_help)
        command.add_argument("source", help=source_help)
        command.add_argument("output", metavar="OUT_DIR", help="output folder: created, or new and empty")
        command.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
        command.set_defaults(handler=handler)
    onnx_help = "ONNX graphs of an FG-CLIP folder (this project's, a CLIP folder or an official release)"
    onnx = commands.add_parser("export-onnx", help=onnx_help, description=onnx_help + (
        ": vision.onnx, text.onnx (77 tokens), text_long.onnx (248 tokens), onnx_config.json, the tokenizer, the "
        "image processor and a model card. Needs pip install 'fgclip[onnx]'."))
    onnx.add_argument("source", help="the model folder to export")
    onnx.add_argument("output", metavar="OUT_DIR", help="output folder: created, new, empty or a previous export")
    onnx.add_argument("--opset", type=int, default=None,
                      help="ONNX opset (default: the exporter's; recorded in onnx_config.json)")
    onnx.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    onnx.set_defaults(handler=_export_onnx)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fgclip.errors import UserError  # after parsing: --help and usage errors stay fast

    try:
        print(args.handler(args))
    except (UserError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
