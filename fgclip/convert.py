"""Checkpoint conversions as commands.

    python -m fgclip.convert from-clip CLIP_DIR OUT_DIR          # stock HF CLIP -> FG-CLIP (long tables stretched)
    python -m fgclip.convert from-official RELEASE_DIR OUT_DIR   # qihoo360/fg-clip-* layout -> this project
    python -m fgclip.convert export-vision MODEL_DIR OUT_DIR     # -> plain CLIPVisionModel folder for LLaVA
    python -m fgclip.convert export-onnx MODEL_DIR OUT_DIR       # -> vision.onnx, text.onnx, text_long.onnx

Every output folder carries its tokenizer and image processor. Errors are one line with exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from fgclip import onnx_export
from fgclip.errors import UserError
from fgclip.model.conversion import (
    CheckpointError,
    export_vision_tower,
    fgclip_from_clip,
    fgclip_from_official,
    save_with_processors,
)
from fgclip.model.modeling import FGCLIPModel
from fgclip.model_card import Provenance, write_model_card


def _from_clip(args) -> str:
    save_with_processors(fgclip_from_clip(args.source), args.output, Provenance.converted(args.source, "from-clip"))
    return f"FG-CLIP initialised from CLIP {args.source} -> {args.output}"


def _from_official(args) -> str:
    save_with_processors(fgclip_from_official(args.source), args.output,
                         Provenance.converted(args.source, "from-official"))
    return f"official FG-CLIP {args.source} imported -> {args.output}"


def _export_vision(args) -> str:
    model = FGCLIPModel.from_pretrained(args.source)
    export_vision_tower(model, args.output)
    write_model_card(model, args.output, Provenance.converted(args.source, "export-vision"))
    return f"vision tower of {args.source} exported as a CLIPVisionModel folder -> {args.output}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fgclip.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, source_help in (
        ("from-clip", _from_clip, "a Hugging Face CLIP folder (e.g. a local copy of openai/clip-vit-base-patch16)"),
        ("from-official", _from_official, "an official FG-CLIP release folder (qihoo360/fg-clip-base or -large)"),
        ("export-vision", _export_vision, "an FG-CLIP folder (this project's, a CLIP folder or an official release)"),
    ):
        command = commands.add_parser(name, help=source_help)
        command.add_argument("source", help=source_help)
        command.add_argument("output", help="output folder (created; files in it are overwritten)")
        command.set_defaults(handler=handler)
    onnx = commands.add_parser("export-onnx", help="ONNX graphs of an FG-CLIP folder (needs fgclip[onnx])",
                               description=onnx_export.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    onnx_export.add_arguments(onnx)
    onnx.set_defaults(handler=onnx_export.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(args.handler(args))
    except (CheckpointError, UserError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
