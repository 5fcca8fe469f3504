"""LoRA / QLoRA for the language model of a LLaVA model (peft + bitsandbytes).

As in LLaVA-1.5's LoRA recipe, adapters go on every linear layer of the language model (not on the
vision tower, the projector or the LM head); the projector stays fully trainable and is saved with the
adapter (`modules_to_save`). QLoRA loads the LM's linear layers in 4-bit NF4 (or 8-bit); the tower,
projector and LM head stay in full precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PROJECTOR = "multi_modal_projector"
# transformers 5 matches these from the start of a module name (or as a suffix), so they are full prefixes.
KEEP_FULL_PRECISION = ["model.vision_tower", f"model.{PROJECTOR}", "lm_head"]


@dataclass
class LoraOptions:
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    bits: int | None = None  # 4 or 8 for QLoRA; None for plain LoRA


def quantization_config(bits: int, compute_dtype: torch.dtype):
    """bitsandbytes settings for QLoRA: NF4 with double quantisation, or LLM.int8."""
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype,
            llm_int8_skip_modules=KEEP_FULL_PRECISION,
        )
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_FULL_PRECISION)
    raise ValueError(f"QLoRA bits must be 4 or 8, got {bits}")


def language_model_linear_names(model: nn.Module) -> list[str]:
    """Full names of the linear layers (plain or bitsandbytes) inside the language model."""
    names = []
    for name, module in model.named_modules():
        if ".language_model." not in f".{name}." or not name:
            continue
        if isinstance(module, nn.Linear) or type(module).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.append(name)
    if not names:
        raise ValueError("no linear layer found in the language model for LoRA")
    return names


def add_lora(model: nn.Module, options: LoraOptions, gradient_checkpointing: bool):
    """Wrap `model` with LoRA adapters on the LM; the projector is trained in full and saved with them."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if options.bits:
        # `gradient_checkpointing` is switched on by the Trainer (TrainingArguments.activation_checkpointing), not
        # by peft, which would call transformers' deprecated gradient_checkpointing_enable (a FutureWarning).
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = LoraConfig(
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        bias="none",
        target_modules=language_model_linear_names(model),
        modules_to_save=[PROJECTOR],
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, dtype: torch.dtype):
    """The full-precision base model with the adapter (and trained projector) merged in.

    For QLoRA the adapter was trained against the quantised LM and is merged into the full-precision
    one, as QLoRA releases do; the difference is the 4-bit rounding of the frozen weights.
    """
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    base = LlavaForConditionalGeneration.from_pretrained(str(base_dir), dtype=dtype)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
