"""Item 1: an FG-CLIP stage-1 training step against open_clip's own step on the same work.

    python -m benchmarks.run train_step [--device cuda] [--smoke] [--output_dir DIR]

Same images, same captions, same tower sizes, batch, precision, optimizer and clipping (see
`benchmarks.steps`). FG-CLIP's stage 1 also encodes a 248-slot long caption per image, which CLIP does
not, so like is compared with like in two figures:
- short captions only, padded to 77 tokens exactly as open_clip's tokenizer pads them (target <= 1.05),
  and the same padded to the longest caption of the batch (the collator's default);
- the full stage-1 step (long + short captions) against open_clip, next to its model-FLOP ratio: a time
  ratio close to the FLOP ratio means the extra long-caption work runs as efficiently as the rest.
Also: images/s of each step and, on a GPU with a known peak, model-FLOPs utilisation.
"""

from __future__ import annotations

from benchmarks.harness import (
    Figure,
    Report,
    describe_device,
    paired_ratio,
    peak_memory_bytes,
    require_finite_losses,
    time_interleaved,
    with_smaller_batch_on_oom,
)
from benchmarks.levers import pad_to_fixed, short_only
from benchmarks.settings import BenchSettings
from benchmarks.shapes import build_fgclip, build_open_clip_twin, get_shape, open_clip_config, parameter_count
from benchmarks.steps import FGCLIPStep, OpenCLIPStep, batch_flops, make_adamw, maybe_compile, open_clip_flops
from benchmarks.workload import make_batch, make_records, make_samples, text_stats
from fgclip.tokenizer import FGCLIPTokenizer

NAME = "train_step"


def _measure(settings: BenchSettings, batch_size: int) -> dict:
    shape = get_shape(settings.shape_name())
    config = shape.config()
    device = settings.torch_device
    tokenizer = FGCLIPTokenizer()
    records = make_records(batch_size, settings.seed)
    samples = make_samples(records, shape.image_size, with_regions=False, seed=settings.seed)
    batch = make_batch(samples, with_regions=False, tokenizer=tokenizer)
    short_fixed = short_only(pad_to_fixed(batch, tokenizer.tokenizer.pad_token_id))

    from open_clip.tokenizer import tokenize

    context = config.text_config.max_position_embeddings
    open_clip_texts = tokenize([sample.short_caption for sample in samples], context_length=context).to(device)
    images = batch.pixel_values.to(device)

    model = build_fgclip(shape, settings.seed).to(device)
    twin = build_open_clip_twin(config, settings.seed).to(device)
    called, twin_called = maybe_compile(model, settings), maybe_compile(twin, settings)
    optimizer = make_adamw(model, settings)  # one optimizer state for the three FG-CLIP variants

    def fgclip_step(which):
        return FGCLIPStep(called, which.to(device), 1, settings, module=model, optimizer=optimizer)

    candidates = {
        "fgclip_short_fixed77": fgclip_step(short_fixed),
        "open_clip": OpenCLIPStep(twin_called, images, open_clip_texts, settings, module=twin),
        "fgclip_short_longest": fgclip_step(short_only(batch)),
        "fgclip_stage1": fgclip_step(batch),
    }
    timings = time_interleaved(candidates, device, settings.warmup_or(2), settings.repeats_or(7))
    memory = {name: peak_memory_bytes(run, device) for name, run in candidates.items()}
    require_finite_losses(candidates)
    return {
        "timings": timings,
        "memory": memory,
        "flops": {
            "fgclip_stage1": batch_flops(config, batch, 1),
            "fgclip_short_fixed77": batch_flops(config, short_fixed, 1),
            "open_clip": open_clip_flops(config, batch_size, context),
        },
        "texts": text_stats(batch),
        "parameters": {"fgclip": parameter_count(model), "open_clip": parameter_count(twin)},
        "open_clip_config": open_clip_config(config),
        "shape": shape.name,
    }


def run(settings: BenchSettings) -> Report:
    requested = settings.batch_or(cpu=32, gpu=256, smoke=4)
    result, batch_size = with_smaller_batch_on_oom(lambda size: _measure(settings, size), requested)
    timings, flops = result["timings"], result["flops"]
    median = {name: timing.median for name, timing in timings.items()}
    stage1_flop_ratio = flops["fgclip_stage1"]["computed"] / flops["open_clip"]
    stage1_time_ratio = paired_ratio(timings["fgclip_stage1"], timings["open_clip"])
    device_name = describe_device(settings.torch_device)["name"]
    figures = [
        Figure(
            "stage-1 step, short captions at 77 tokens: FG-CLIP / open_clip",
            paired_ratio(timings["fgclip_short_fixed77"], timings["open_clip"]),
            "x",
            ("<=", 1.05),
            "same texts, same token shapes as open_clip's tokenizer",
        ),
        Figure(
            "stage-1 step, short captions padded to the batch's longest: FG-CLIP / open_clip",
            paired_ratio(timings["fgclip_short_longest"], timings["open_clip"]),
            "x",
            None,
            "the collator's dynamic padding",
        ),
        Figure(
            "full stage-1 step (long + short captions): FG-CLIP / open_clip",
            stage1_time_ratio,
            "x",
            None,
            f"does {stage1_flop_ratio:.2f}x open_clip's model FLOPs (long captions)",
        ),
        Figure(
            "full stage-1 step: time ratio / FLOP ratio",
            stage1_time_ratio / stage1_flop_ratio if stage1_time_ratio else None,
            "x",
            None,
            "1.0 = the extra long-caption work runs as fast per FLOP",
        ),
        Figure(
            f"stage-1 images/s per device (FG-CLIP, batch {batch_size})",
            batch_size / median["fgclip_stage1"],
            "images/s",
            None,
            device_name,
        ),
        Figure(
            f"open_clip images/s per device (batch {batch_size})",
            batch_size / median["open_clip"],
            "images/s",
            None,
            device_name,
        ),
    ]
    achieved = flops["fgclip_stage1"]["useful"] / median["fgclip_stage1"]
    figures.append(
        Figure("stage-1 achieved model TFLOP/s (text FLOPs at each caption's own length)", achieved / 1e12, "TFLOP/s")
    )
    peak = settings.peak_flops()
    if peak is not None:
        figures.append(
            Figure(
                "stage-1 model-FLOPs utilisation (MFU)",
                100 * achieved / peak,
                "%",
                (">=", 40.0),
                f"peak {peak / 1e12:.0f} TFLOP/s bf16",
            )
        )
        open_clip_achieved = flops["open_clip"] / median["open_clip"]
        figures.append(
            Figure(
                "open_clip step MFU",
                100 * open_clip_achieved / peak,
                "%",
                None,
                "its 77-token captions counted in full",
            )
        )
    details = {
        "batch_size": batch_size,
        "requested_batch_size": requested,
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
        "peak_memory_bytes": result["memory"],
        "flops_per_step": flops,
        "texts": result["texts"],
        "parameters": result["parameters"],
        "open_clip_config": result["open_clip_config"],
        "shape": result["shape"],
        "step": "zero_grad, autocast forward + loss, backward, clip_grad_norm 1.0, AdamW (fused on CUDA)",
    }
    return Report(NAME, figures, details, describe_device(settings.torch_device), settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
