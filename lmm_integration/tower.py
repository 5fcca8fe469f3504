"""FG-CLIP as the vision tower of the original LLaVA codebase (haotian-liu/LLaVA), without forking it.

Two ways in:

1. No code change (hidden features): export the tower and pass the folder as `--vision_tower`:

       python -m fgclip.convert export-vision FGCLIP_DIR TOWER_DIR
       ... llava/train/train_mem.py --vision_tower TOWER_DIR --mm_vision_select_layer -2 ...

   LLaVA's own `CLIPVisionTower` loads it (its builder accepts existing local paths), because the export
   writes the `vision_model.`-prefixed layout that transformers 4.37 loads with every weight.

2. One line (FG-CLIP folders, dense features, `fgclip:` names): call `register_with_llava()` before LLaVA
   builds its model, e.g. as the first line of `llava/train/train_mem.py`:

       from lmm_integration.tower import register_with_llava; register_with_llava()

   or launch through this module, which registers and then runs the script unchanged:

       deepspeed --module lmm_integration.tower run llava/train/train_mem.py --vision_tower fgclip:TOWER_DIR ...

   After registration, `build_vision_tower` gives `FGCLIPVisionTower` for names starting with `fgclip:`
   and for local folders holding an FG-CLIP model or a dense tower; every other name goes to LLaVA's own
   builder. Dense features: export with `python -m lmm_integration.tower export --features dense`, or set
   `mm_vision_features = "dense"` on the model arguments.

Only torch and transformers APIs that 4.37 and 5.x share are used at import time, so this module runs
inside the old environment the original LLaVA pins.
"""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from, output_dir_option
from fgclip.lazy import lazy_exports
from fgclip.value_path import DENSE_MODEL_TYPE
from lmm_integration.dense import FEATURE_SOURCES
from lmm_integration.tower_names import wants_fgclip

# `FGCLIPVisionTower` loads torch and transformers: imported on first use, so that `--help` stays fast.
__getattr__, __dir__ = lazy_exports(__name__, {"FGCLIPVisionTower": "lmm_integration.llava_tower"})


def register_with_llava() -> None:
    """Route FG-CLIP tower names of LLaVA's `build_vision_tower` to `FGCLIPVisionTower`.

    Patches the function where LLaVA defines it and where `llava_arch` imported it. Idempotent.
    """
    try:
        import llava.model.llava_arch as llava_arch
        import llava.model.multimodal_encoder.builder as llava_builder
    except ImportError as error:
        raise ImportError(
            "register_with_llava needs the original LLaVA codebase (package `llava`) importable"
        ) from error
    original = getattr(llava_builder.build_vision_tower, "_llava_original", llava_builder.build_vision_tower)

    def build_vision_tower(vision_tower_cfg, **kwargs):
        name = getattr(vision_tower_cfg, "mm_vision_tower", getattr(vision_tower_cfg, "vision_tower", None))
        if wants_fgclip(name):
            from lmm_integration.llava_tower import FGCLIPVisionTower

            return FGCLIPVisionTower(name, args=vision_tower_cfg, **kwargs)
        return original(vision_tower_cfg, **kwargs)

    build_vision_tower._llava_original = original
    llava_builder.build_vision_tower = build_vision_tower
    llava_arch.build_vision_tower = build_vision_tower


EXPORT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def _earlier_export(folder: Path) -> bool:
    """A tower folder this command wrote (a tower config, its weights and image processor, nothing else)."""
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    names = {entry.name for entry in folder.iterdir()}
    return model_type in ("clip_vision_model", DENSE_MODEL_TYPE) and names <= set(EXPORT_FILES)


def export_tower(source: str | Path, out: str | Path, features: str = "hidden", overwrite: bool = False) -> Path:
    """Write a tower folder LLaVA can use: a stock `CLIPVisionModel` folder, or a dense one, through the project's
    one tower export route (`fgclip.model.vision_tower.write_vision_tower`: the layout transformers 4.37 loads).

    A dense folder holds the same weights; only its `model_type` says that the value-path features
    are meant (so `FGCLIPVisionTower` and `lmm_integration.build` pick them up by themselves). `out` may not be
    `source`; a folder holding anything but an earlier export is refused unless `overwrite`.
    """
    from fgclip.model.vision_tower import write_vision_tower
    from fgclip.outputs import prepare_output_dir
    from lmm_integration.vision import load_vision_tower  # transformers 5 + fgclip

    out = Path(out)
    owned = out.is_dir() and _earlier_export(out)
    prepare_output_dir(
        out,
        inputs=[source],
        owned=lambda entry: owned,
        overwrite=overwrite,
        option="--output_dir",
        what="files of another model",
    )
    loaded = load_vision_tower(source, features)
    return write_vision_tower(loaded.model, out, loaded.image_processor)


@dataclass
class ExportOptions:
    vision: str = option("FG-CLIP, CLIP or tower folder")
    output_dir: str = output_dir_option(
        "output folder; not the --vision folder, and one holding anything but an earlier export only with --overwrite"
    )
    overwrite: bool = option("write into an --output_dir folder holding other files", False)
    features: str = option(
        "hidden: stock CLIPVisionModel folder; dense: FG-CLIP value-path features (needs registration)",
        "hidden",
        choices=FEATURE_SOURCES,
    )


@dataclass
class RunOptions:
    script: str = option("the LLaVA script to run, e.g. llava/train/train_mem.py", positional=True)


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m lmm_integration.tower", description=__doc__)
    commands = parser.add_commands()
    commands.help = "export: write a tower folder; run: a LLaVA script with FGCLIPVisionTower registered"
    commands.add_parser("export", help="write a tower folder for LLaVA's --vision_tower").add_options(ExportOptions)
    script = commands.add_parser("run", help="register FGCLIPVisionTower with LLaVA, then run a LLaVA script")
    script.add_options(RunOptions)
    script.add_argument("script_args", nargs="...", help="its arguments, passed unchanged")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        register_with_llava()
        sys.argv = [args.script, *args.script_args]
        runpy.run_path(args.script, run_name="__main__")
        return 0
    options = options_from(args, ExportOptions)
    try:
        out = export_tower(options.vision, options.output_dir, options.features, options.overwrite)
    except (ValueError, OSError) as error:  # a folder the loaders cannot read
        from fgclip.errors import UserError

        raise UserError(str(error)) from error
    print(f"{options.features} tower of {options.vision} written to {out}")
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
