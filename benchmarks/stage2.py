"""Item 2: a stage-2 step (global + regional + hard negatives) against a stage-1 step on the same images.

    python -m benchmarks.run stage2 [--device cuda] [--smoke] [--output_dir DIR]

FineHARD-like load (`benchmarks.workload`): 4 boxes per image, each with its referring expression and
10 hard negatives, so up to 1 + 4 x (1 + 10) short texts per image besides the long caption. Stage 1 and
stage 2 run on the same images and captions. Then each speed lever is switched off in turn and the
step timed again; a lever's figure is (step without it) / (step with it), so > 1 means it pays:
- length groups: the short texts encoded in up to 8 length groups, each padded to its own longest
  (`FGCLIPConfig.short_text_groups`, off by default; also reported as stage 2 / stage 1 with it on),
- dynamic text padding (pad to the batch's longest instead of 77 / 248 tokens),
- encoding each distinct short text once per step (the collator's de-duplication),
- SDPA attention (transformers' default) instead of eager attention,
- fused AdamW instead of the multi-tensor one (CUDA only),
- `torch.compile` (with `--compile`).
One RoIAlign call for the whole batch is how `FGCLIPModel.pool_regions` is written; it has no switch.
"""

from __future__ import annotations

import copy

import torch

from benchmarks.harness import (
    Figure,
    Report,
    describe_device,
    drop_what_does_not_fit,
    paired_ratio,
    peak_memory_bytes,
    require_finite_losses,
    time_interleaved,
    with_smaller_batch_on_oom,
)
from benchmarks.levers import expand_short_texts, pad_to_fixed, without_text_levers
from benchmarks.settings import BenchSettings
from benchmarks.shapes import build_fgclip, get_shape
from benchmarks.steps import FGCLIPStep, batch_flops, make_adamw
from benchmarks.workload import make_batch, make_records, make_samples, text_stats
from fgclip.tokenizer import FGCLIPTokenizer

NAME = "stage2"
LENGTH_GROUPS = 8


def _eager_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The same weights with eager attention (a second model: the attention switch is per model)."""
    twin = copy.deepcopy(model)
    twin.set_attn_implementation("eager")
    return twin


def _measure(settings: BenchSettings, batch_size: int) -> dict:
    shape = get_shape(settings.shape_name())
    config = shape.config()
    device = settings.torch_device
    tokenizer = FGCLIPTokenizer()
    pad_id = tokenizer.tokenizer.pad_token_id
    records = make_records(batch_size, settings.seed)
    stage1 = make_batch(make_samples(records, shape.image_size, False, settings.seed), False, tokenizer)
    stage2 = make_batch(make_samples(records, shape.image_size, True, settings.seed), True, tokenizer)

    model = build_fgclip(shape, settings.seed).to(device)
    called = torch.compile(model) if settings.compile else model
    optimizer = make_adamw(model, settings)

    def step(batch, stage, run_model=called, module=model, step_optimizer=optimizer, fused=None, groups=1):
        return FGCLIPStep(
            run_model,
            batch.to(device),
            stage,
            settings,
            fused=fused,
            module=module,
            optimizer=step_optimizer,
            short_text_groups=groups,
        )

    candidates = {
        "stage1": step(stage1, 1),
        "stage2": step(stage2, 2),
        "stage2_length_groups": step(stage2, 2, groups=LENGTH_GROUPS),
        "stage2_fixed_padding": step(pad_to_fixed(stage2, pad_id), 2),
        "stage2_no_dedup": step(expand_short_texts(stage2), 2),
        "stage2_no_text_levers": step(without_text_levers(stage2, pad_id), 2),
    }
    eager = _eager_copy(model)
    eager_called = torch.compile(eager) if settings.compile else eager
    candidates["stage2_eager_attention"] = step(stage2, 2, eager_called, eager, make_adamw(eager, settings))
    if settings.on_gpu:
        candidates["stage2_foreach_adamw"] = step(stage2, 2, step_optimizer=None, fused=False)
    if settings.compile:
        candidates["stage2_not_compiled"] = step(stage2, 2, run_model=model)
    candidates, did_not_fit = drop_what_does_not_fit(candidates, device, required=("stage1", "stage2"))
    timings = time_interleaved(candidates, device, settings.warmup_or(2), settings.repeats_or(5))
    memory = {name: peak_memory_bytes(candidates[name], device) for name in ("stage1", "stage2")}
    require_finite_losses(candidates)
    return {
        "timings": timings,
        "memory": memory,
        "did_not_fit": did_not_fit,
        "flops": {"stage1": batch_flops(config, stage1, 1), "stage2": batch_flops(config, stage2, 2)},
        "texts": {
            "stage1": text_stats(stage1),
            "stage2": text_stats(stage2),
            "stage2_no_text_levers": text_stats(without_text_levers(stage2, pad_id)),
        },
        "shape": shape.name,
    }


LEVERS = (
    ("stage2_length_groups", f"lever: {LENGTH_GROUPS} length groups for short texts (one padded tensor / groups)"),
    ("stage2_fixed_padding", "lever: pad texts to the batch's longest (fixed 77/248 / dynamic)"),
    ("stage2_no_dedup", "lever: encode each distinct short text once (every use / distinct)"),
    ("stage2_no_text_levers", "levers: both text levers (neither / both)"),
    ("stage2_eager_attention", "lever: SDPA attention (eager / SDPA)"),
    ("stage2_foreach_adamw", "lever: fused AdamW (multi-tensor / fused)"),
    ("stage2_not_compiled", "lever: torch.compile (eager / compiled)"),
)


def run(settings: BenchSettings) -> Report:
    requested = settings.batch_or(cpu=8, gpu=64, smoke=2)
    result, batch_size = with_smaller_batch_on_oom(lambda size: _measure(settings, size), requested)
    timings, flops, texts = result["timings"], result["flops"], result["texts"]
    median = {name: timing.median for name, timing in timings.items()}
    per_image = texts["stage2"]["short_texts"] / batch_size
    flop_ratio = flops["stage2"]["computed"] / flops["stage1"]["computed"]
    figures = [
        Figure(
            "stage-2 step / stage-1 step (same images)",
            paired_ratio(timings["stage2"], timings["stage1"]),
            "x",
            ("<=", 1.35),
            f"{per_image:.1f} distinct short texts per image; FLOP ratio {flop_ratio:.2f}",
        ),
    ]
    figures.append(
        Figure(
            f"stage-2 step with {LENGTH_GROUPS} length groups / stage-1 step",
            paired_ratio(timings["stage2_length_groups"], timings["stage1"]),
            "x",
            ("<=", 1.35),
            "config.short_text_groups = 8 (exact)",
        )
    )
    for name, label in LEVERS:
        if name == "stage2_length_groups":  # on, it is faster: report (without / with) like the others
            figures.append(
                Figure(label, paired_ratio(timings["stage2"], timings[name]), "x", None, "> 1: the lever pays")
            )
        elif name in median:
            figures.append(
                Figure(label, paired_ratio(timings[name], timings["stage2"]), "x", None, "> 1: the lever pays")
            )
        elif name in result["did_not_fit"]:
            figures.append(
                Figure(label, None, "x", None, f"without it, stage 2 does not fit the GPU at batch {batch_size}")
            )
    device_name = describe_device(settings.torch_device)["name"]
    figures += [
        Figure(f"stage-1 images/s (batch {batch_size})", batch_size / median["stage1"], "images/s", None, device_name),
        Figure(f"stage-2 images/s (batch {batch_size})", batch_size / median["stage2"], "images/s", None, device_name),
    ]
    peak = settings.peak_flops()
    if peak is not None:
        for stage in ("stage1", "stage2"):
            figures.append(
                Figure(
                    f"{stage.replace('stage', 'stage-')} MFU",
                    100 * flops[stage]["useful"] / median[stage] / peak,
                    "%",
                    None,
                    f"peak {peak / 1e12:.0f} TFLOP/s bf16",
                )
            )
    details = {
        "batch_size": batch_size,
        "requested_batch_size": requested,
        "timings": {name: timing.as_dict() for name, timing in timings.items()},
        "peak_memory_bytes": result["memory"],
        "did_not_fit": result["did_not_fit"],
        "flops_per_step": flops,
        "texts": texts,
        "shape": result["shape"],
        "load": "4 regions x (1 positive + 10 hard negatives) per image, FineHARD-like text lengths",
    }
    return Report(NAME, figures, details, describe_device(settings.torch_device), settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
