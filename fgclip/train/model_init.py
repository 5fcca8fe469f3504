"""The model a run starts from: `tiny` (random, small) or a checkpoint folder of any kind
`FGCLIPModel.from_pretrained` loads (this project's, stock HF CLIP, official FG-CLIP release)."""

from __future__ import annotations

from pathlib import Path

import torch

from fgclip.errors import UserError
from fgclip.model import FGCLIPModel
from fgclip.model.conversion import detect_checkpoint_kind
from fgclip.train.config import ModelInit


def describe_init(init: str) -> str:
    """'tiny', or the checkpoint kind of the folder; `UserError` if it is none we can load."""
    if init == "tiny":
        return "tiny"
    path = Path(init)
    if not path.exists():
        raise UserError(f"--init {init}: no such folder (give 'tiny' or a model folder)")
    return detect_checkpoint_kind(path)


def build_model(init: ModelInit, stage: int, seed: int) -> FGCLIPModel:
    """The model to train, in fp32. Stage 1 freezes the regional and hard-negative temperatures,
    which no stage-1 loss uses (so no engine sees parameters that never get a gradient)."""
    describe_init(init.init)
    if init.init == "tiny":
        torch.manual_seed(seed)  # the same initial weights on every rank and every run
        model = FGCLIPModel(init.tiny.to_config())
    else:
        try:
            model = FGCLIPModel.from_pretrained(init.init, dtype=torch.float32)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise UserError(
                f"--init {init.init} cannot be loaded: {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}"
            ) from error
    model = model.float().train()
    if init.short_text_groups is not None:  # a speed lever of the model's forward, saved with its config
        model.config.short_text_groups = init.short_text_groups
    if stage == 1:
        model.logit_scale_region.requires_grad_(False)
        model.logit_scale_hard.requires_grad_(False)
    if init.gradient_checkpointing:
        # transformers renamed the switch late in 5.x; the old name is a deprecated alias (FutureWarning) there.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


WEIGHT_SUFFIXES = (".safetensors", ".bin")


def describe_model_files(init: str) -> dict:
    """What a resumed run checks of its model: the folder (resolved) and the size of its weight files."""
    if init == "tiny":
        return {"init": "tiny"}
    folder = Path(init).expanduser().resolve()
    weights = sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return {"init": str(folder), "weight_bytes": weights}
