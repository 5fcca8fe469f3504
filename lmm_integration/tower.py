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
from pathlib import Path

import torch
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

from lmm_integration.dense import check_feature_source, value_path_features

NAME_PREFIX = "fgclip:"
DENSE_MODEL_TYPE = "fgclip_dense_vision"  # the same string as fgclip.model.dense_tower (not imported: 5.x code)
FGCLIP_MODEL_TYPES = ("fgclip",)
_CONFIG_BOOKKEEPING = ("model_type", "architectures", "transformers_version", "auto_map", "_name_or_path")


def _strip_prefix(name: str) -> str:
    return name[len(NAME_PREFIX):] if name.startswith(NAME_PREFIX) else name


def _read_config(directory: Path) -> dict:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ValueError(f"FG-CLIP vision tower: {directory} has no config.json")
    return json.loads(config_file.read_text())


def _is_fgclip_dual_encoder(config: dict) -> bool:
    return config.get("model_type") in FGCLIP_MODEL_TYPES or "FGCLIPModel" in (config.get("architectures") or [])


def _vision_config(config: dict) -> CLIPVisionConfig:
    """The tower's `CLIPVisionConfig` from a tower, CLIP or FG-CLIP `config.json`."""
    values = config.get("vision_config", config) if "vision_config" in config else config
    return CLIPVisionConfig(**{key: value for key, value in values.items() if key not in _CONFIG_BOOKKEEPING})


class FGCLIPVisionTower(nn.Module):
    """Drop-in for LLaVA's `CLIPVisionTower`: same constructor, methods and properties.

    vision_tower: a folder (optionally written `fgclip:FOLDER`): an exported tower (plain or dense), a
        stock CLIP folder, or an FG-CLIP folder (the last needs transformers 5 and `fgclip`).
    args: LLaVA's model arguments or model config; reads `mm_vision_select_layer`,
        `mm_vision_select_feature` (`patch` drops CLS, `cls_patch` keeps it), `unfreeze_mm_vision_tower`
        and, if present, `mm_vision_features` (`hidden` or `dense`; a dense tower folder implies dense).
    """

    def __init__(self, vision_tower: str, args, delay_load: bool = False):
        super().__init__()
        self.is_loaded = False
        self.vision_tower_name = vision_tower
        self.path = Path(_strip_prefix(str(vision_tower)))
        self.select_layer = getattr(args, "mm_vision_select_layer", -2)
        self.select_feature = getattr(args, "mm_vision_select_feature", "patch")
        if self.select_feature not in ("patch", "cls_patch"):
            raise ValueError(f"Unexpected select feature: {self.select_feature}")
        config = _read_config(self.path)
        implied = "dense" if config.get("model_type") == DENSE_MODEL_TYPE else "hidden"
        self.features = check_feature_source(getattr(args, "mm_vision_features", None) or implied)
        self.cfg_only = _vision_config(config)
        if not delay_load or getattr(args, "unfreeze_mm_vision_tower", False):
            self.load_model()

    def load_model(self, device_map=None) -> None:
        if self.is_loaded:
            print(f"{self.vision_tower_name} is already loaded, `load_model` called again, skipping.")
            return
        config = _read_config(self.path)
        if _is_fgclip_dual_encoder(config):
            from lmm_integration.vision import load_vision_tower  # transformers 5 + fgclip

            loaded = load_vision_tower(self.path, "hidden")
            self.vision_tower, self.image_processor = loaded.model, loaded.image_processor
            if device_map is not None:
                self.vision_tower.to(device_map)
        else:
            self.vision_tower = CLIPVisionModel.from_pretrained(str(self.path), config=self.cfg_only, device_map=device_map)
            self.image_processor = self._folder_image_processor()
        self.vision_tower.requires_grad_(False)
        self.is_loaded = True

    def _folder_image_processor(self) -> CLIPImageProcessor:
        if (self.path / "preprocessor_config.json").is_file():
            return CLIPImageProcessor.from_pretrained(str(self.path))
        size = self.cfg_only.image_size  # FG-CLIP's square resize; crop_size is read by LLaVA for blank images
        return CLIPImageProcessor(size={"height": size, "width": size}, crop_size={"height": size, "width": size},
                                  do_center_crop=False, resample=3)

    def feature_select(self, forward_output) -> torch.Tensor:
        """`(B, N, C)` patch features (`N` = patches, +1 with `cls_patch`)."""
        if self.features == "dense":
            features = value_path_features(self.vision_tower, forward_output.hidden_states[-2])
        else:
            features = forward_output.hidden_states[self.select_layer]
        return features[:, 1:] if self.select_feature == "patch" else features

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        output = self.vision_tower(images.to(device=self.device, dtype=self.dtype), output_hidden_states=True)
        return self.feature_select(output).to(images.dtype)

    def forward(self, images):
        """images: `(B, 3, S, S)` or a list of `(3, S, S)`; returns `(B, N, C)` or a list of `(1, N, C)`."""
        trainable = any(parameter.requires_grad for parameter in self.vision_tower.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            if isinstance(images, list):
                return [self._encode(image.unsqueeze(0)) for image in images]
            return self._encode(images)

    @property
    def dummy_feature(self) -> torch.Tensor:
        return torch.zeros(1, self.hidden_size, device=self.device, dtype=self.dtype)

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_tower.dtype

    @property
    def device(self) -> torch.device:
        return self.vision_tower.device

    @property
    def config(self) -> CLIPVisionConfig:
        return self.vision_tower.config if self.is_loaded else self.cfg_only

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_patches_per_side(self) -> int:
        return self.config.image_size // self.config.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_patches_per_side**2


def _wants_fgclip(name: str | None) -> bool:
    if not name:
        return False
    if name.startswith(NAME_PREFIX):
        return True
    directory = Path(name)
    if not (directory / "config.json").is_file():
        return False
    config = json.loads((directory / "config.json").read_text())
    return _is_fgclip_dual_encoder(config) or config.get("model_type") == DENSE_MODEL_TYPE


def register_with_llava() -> None:
    """Route FG-CLIP tower names of LLaVA's `build_vision_tower` to `FGCLIPVisionTower`.

    Patches the function where LLaVA defines it and where `llava_arch` imported it. Idempotent.
    """
    try:
        import llava.model.llava_arch as llava_arch
        import llava.model.multimodal_encoder.builder as llava_builder
    except ImportError as error:
        raise ImportError("register_with_llava needs the original LLaVA codebase (package `llava`) importable") from error
    original = getattr(llava_builder.build_vision_tower, "_llava_original", llava_builder.build_vision_tower)

    def build_vision_tower(vision_tower_cfg, **kwargs):
        name = getattr(vision_tower_cfg, "mm_vision_tower", getattr(vision_tower_cfg, "vision_tower", None))
        if _wants_fgclip(name):
            return FGCLIPVisionTower(name, args=vision_tower_cfg, **kwargs)
        return original(vision_tower_cfg, **kwargs)

    build_vision_tower._llava_original = original
    llava_builder.build_vision_tower = build_vision_tower
    llava_arch.build_vision_tower = build_vision_tower


def _earlier_export(folder: Path) -> bool:
    """A tower folder this command wrote (a tower config, its weights and image processor, nothing else)."""
    import json

    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        return False
    names = {entry.name for entry in folder.iterdir()}
    return model_type in ("clip_vision_model", "fgclip_dense_vision") and names <= set(EXPORT_FILES)


def export_tower(source: str | Path, out: str | Path, features: str = "hidden", overwrite: bool = False) -> Path:
    """Write a tower folder LLaVA can use: a stock `CLIPVisionModel` folder, or a dense one.

    A dense folder holds the same weights; only its `model_type` says that the value-path features
    are meant (so `FGCLIPVisionTower` and `lmm_integration.build` pick them up by themselves). `out` may not be
    `source`; a folder holding anything but an earlier export is refused unless `overwrite`.
    """
    from fgclip.outputs import prepare_output_dir
    from lmm_integration.vision import load_vision_tower  # transformers 5 + fgclip

    out = Path(out)
    owned = out.is_dir() and _earlier_export(out)
    prepare_output_dir(out, inputs=[source], owned=lambda entry: owned, overwrite=overwrite,
                       what="files of another model")
    loaded = load_vision_tower(source, features)
    loaded.model.save_pretrained(str(out))
    loaded.image_processor.save_pretrained(str(out))
    _prefix_weights(out)
    return out


EXPORT_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


def _prefix_weights(directory: Path) -> None:
    """Rewrite the weights with the `vision_model.` prefix that transformers 4.37 needs (see
    fgclip.model.conversion.export_vision_tower); transformers 5 loads both layouts."""
    from safetensors.torch import load_file, save_file

    weights = directory / "model.safetensors"
    state = load_file(str(weights))
    state = {name if name.startswith("vision_model.") else f"vision_model.{name}": tensor for name, tensor in state.items()}
    save_file(state, str(weights), metadata={"format": "pt"})


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m lmm_integration.tower", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    export = commands.add_parser("export", help="write a tower folder for LLaVA's --vision_tower")
    export.add_argument("--vision", required=True, help="FG-CLIP, CLIP or tower folder")
    export.add_argument("--out", required=True,
                        help="output folder; not the --vision folder, and one holding anything but an earlier export "
                             "only with --overwrite")
    export.add_argument("--overwrite", action="store_true", help="write into an --out folder holding other files")
    export.add_argument("--features", choices=("hidden", "dense"), default="hidden",
                        help="hidden: stock CLIPVisionModel folder; dense: FG-CLIP value-path features (needs registration)")
    run = commands.add_parser("run", help="register FGCLIPVisionTower with LLaVA, then run a LLaVA script")
    run.add_argument("script", help="the LLaVA script to run, e.g. llava/train/train_mem.py")
    run.add_argument("script_args", nargs=argparse.REMAINDER, help="its arguments, passed unchanged")
    args = parser.parse_args(argv)
    if args.command == "run":
        register_with_llava()
        sys.argv = [args.script, *args.script_args]
        runpy.run_path(args.script, run_name="__main__")
        return 0
    from fgclip.errors import UserError

    try:
        out = export_tower(args.vision, args.out, args.features, args.overwrite)
    except (UserError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{args.features} tower of {args.vision} written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
