"""Typed settings of the data engine: one dataclass per step, one for the run.

The command line fills these once (`fgclip.pipeline.cli`); every step receives only its own
dataclass, and a step's settings are written next to its shard outputs so a re-run with different
settings is caught instead of silently mixing outputs made two ways.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The steps in the order data flows through them; `--steps` picks any subset, run in this order.
STEP_ORDER = ("captions", "expressions", "grounding", "negatives", "filter")

DEFAULT_CAPTION_PROMPT = (
    "Describe this image in detail: every visible object with its colour, material, size, texture, "
    "count and position, in plain sentences."
)
DEFAULT_NEGATIVE_PROMPT = (
    'Rewrite the phrase "{expression}" into {count} different phrases that describe a different object '
    "by changing only its attributes (colour, material, size, count, texture, pattern or state). Keep the "
    'noun "{noun}" exactly as it is. Write one phrase per line and nothing else.'
)


@dataclass
class CaptionConfig:
    """Step 1: long (and short) captions from an image-text-to-text model."""

    model: str | None = None  # Hub name or local folder; None = only derive missing short captions
    prompt: str = DEFAULT_CAPTION_PROMPT
    short_prompt: str | None = None  # None = Long-CLIP's rule (the long caption's first sentence)
    template: str | None = None  # "USER: <image>\\n{prompt} ASSISTANT:" for models without a chat template
    batch_size: int = 8
    max_new_tokens: int = 300
    short_max_new_tokens: int = 40
    dtype: str = "auto"  # auto = bfloat16 on GPU, float32 on CPU
    trust_remote_code: bool = False
    overwrite: bool = False  # re-caption records that already have captions


@dataclass
class ExpressionConfig:
    """Step 2: referring expressions (noun chunks with their modifiers) from the long caption."""

    spacy_model: str | None = None  # None = the first installed English pipeline of SPACY_CANDIDATES
    max_expressions: int = 12
    max_long_words: int = 24  # longest region long_caption (the noun's whole phrase) kept
    batch_size: int = 64  # spaCy nlp.pipe batch


@dataclass
class GroundingConfig:
    """Step 3: a box for each expression from an open-vocabulary detector."""

    model: str | None = None  # OWLv2 / Grounding DINO name or folder, or a YOLO-World .pt file
    backend: str = "auto"  # auto | transformers | ultralytics
    score_threshold: float = 0.4  # FG-CLIP keeps detections with confidence > 0.4
    nms_iou: float = 0.5
    max_boxes_per_expression: int = 1
    cross_expression_nms: bool = True  # one box never carries two expressions
    batch_size: int = 8
    dtype: str = "auto"
    overwrite: bool = False  # re-ground records that already have regions


@dataclass
class NegativeConfig:
    """Step 4: hard negatives per region, rule-based by default, a causal LM when one is named."""

    count: int = 10
    seed: int = 0
    model: str | None = None  # causal LM name or folder; None = rule-based generator only
    prompt: str = DEFAULT_NEGATIVE_PROMPT
    batch_size: int = 16
    max_new_tokens: int = 200
    dtype: str = "auto"
    trust_remote_code: bool = False
    allow_insertions: bool = True  # add an attribute when an expression has none to swap
    overwrite: bool = False  # regenerate regions that already have negatives


@dataclass
class FilterConfig:
    """Step 5: drop what would hurt training, count every drop."""

    min_box_area: float = 0.0025  # share of the image; 0.0025 = a 5% x 5% box
    min_box_side: float = 0.02
    duplicate_iou: float = 0.9
    max_long_tokens: int = 248  # FG-CLIP's long text length (BOS and EOS included)
    max_short_tokens: int = 77
    max_regions: int = 0  # 0 = keep all regions of an image
    drop_records_without_regions: bool = False


@dataclass
class RunConfig:
    """How the steps are executed: shards, workers, engine."""

    shard_size: int = 256
    engine: str = "local"  # local | ray
    workers: int = 0  # 0 = one per GPU for model steps on GPU, else 1
    spread_model: bool = False  # one worker whose model spans every GPU (device_map="auto"), for 70B LMs
    device: str = "auto"  # auto | cpu | cuda
    ray_address: str | None = None
    fresh: bool = False  # discard this output folder's earlier step outputs first
    webdataset: bool = False
    webdataset_maxcount: int = 1000
    max_bad_fraction: float = 0.5  # stop when more of the input than this is unusable


@dataclass
class PipelineConfig:
    steps: tuple[str, ...] = STEP_ORDER
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    expressions: ExpressionConfig = field(default_factory=ExpressionConfig)
    grounding: GroundingConfig = field(default_factory=GroundingConfig)
    negatives: NegativeConfig = field(default_factory=NegativeConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def step_config(self, name: str):
        return getattr(self, name)

    def to_json(self) -> dict:
        return asdict(self)
