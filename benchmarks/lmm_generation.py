"""Item 6: POPE questions/s with batched generation against one question at a time, identical answers required.

    python -m benchmarks.run lmm_generation [--device cuda] [--smoke] [--output_dir DIR]

A LLaVA folder is built from configs the way a user builds one (`lmm_integration.build`: an FG-CLIP
image tower saved by this project, a fresh projector and a random Llama-architecture LM from
`benchmarks.llava_miniature.tiny_lm`), POPE-style yes/no questions are asked about synthetic scenes (the
miniature's question maker, written as a POPE question file and read back with `eval.pope`'s reader),
and `eval.lmm.generation.compare_batched_to_sequential` answers them in batches (left padding, KV cache,
greedy) and one by one, the way the original LLaVA evaluation scripts loop. The figure is the time ratio;
every answer must be identical. Answers are capped at 8 new tokens: a trained model answers POPE in one
word and stops, a random one never stops, and the cap keeps the decode share realistic. The LM runs in
float32 by default: on random weights the top two logits are close, and bf16 rounding that differs between
a padded batch and a lone prompt would flip greedy choices, which is a property of the weights, not of
batching.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness import Figure, Report, describe_device
from benchmarks.settings import BenchSettings
from benchmarks.shapes import build_fgclip, get_shape

NAME = "lmm_generation"
MAX_NEW_TOKENS = 8


def _plan(settings: BenchSettings) -> dict:
    if settings.smoke:
        return {"images": 6, "questions": 4, "batch": 2, "llm_hidden": 32, "llm_layers": 1, "shape": "tiny"}
    if settings.on_gpu:
        return {
            "images": 160,
            "questions": 128,
            "batch": settings.batch_or(8, 16),
            "llm_hidden": 1024,
            "llm_layers": 8,
            "shape": settings.shape or "b16",
        }
    return {
        "images": 48,
        "questions": 32,
        "batch": settings.batch_or(8, 16),
        "llm_hidden": 128,
        "llm_layers": 2,
        "shape": settings.shape or "tiny",
    }


def build_pope_setup(root: Path, plan: dict, seed: int):
    """(LLaVA folder, POPE question file, image folder) for the benchmark, all under `root`."""
    from benchmarks.llava_miniature.questions import Vocabulary, write_miniature_data
    from benchmarks.llava_miniature.tiny_lm import build_tiny_llm
    from fgclip.data.schema import Record, iter_record_file
    from fgclip.data.synthetic import generate
    from fgclip.folders import save_with_processors
    from lmm_integration.build import BuildOptions, build_llava

    shape = get_shape(plan["shape"])
    scenes = generate(
        root / "scenes", plan["images"], seed, max(64, shape.image_size), heldout_fraction=0.5, progress=False
    )

    def records(path: Path) -> list[Record]:
        return [item for item in iter_record_file(path) if isinstance(item, Record)]

    data = write_miniature_data(
        records(scenes.train),
        records(scenes.heldout),
        scenes.root,
        root / "qa",
        Vocabulary.of_set(scenes.root),
        seed=seed,
    )
    questions = [json.loads(line) for line in data.heldout.read_text().splitlines()]
    pope = [
        {
            "question_id": q["question_id"],
            "image": Path(q["image"]).name,
            "text": q["question"],
            "label": q["answer"].lower(),
        }
        for q in questions
        if q["kind"] == "yes_no"
    ][: plan["questions"]]
    question_file = root / "pope_questions.jsonl"
    question_file.write_text("".join(json.dumps(item) + "\n" for item in pope))

    vision = root / "vision"
    save_with_processors(build_fgclip(shape, seed).eval(), vision)
    llm = build_tiny_llm(
        root / "llm", data.texts, hidden_size=plan["llm_hidden"], num_layers=plan["llm_layers"], seed=seed
    )
    llava = build_llava(vision, llm, root / "llava", BuildOptions(system_prompt="", seed=seed))
    return llava, question_file, scenes.root / "images"


def run(settings: BenchSettings) -> Report:
    from eval.lmm.generation import PromptItem, compare_batched_to_sequential
    from eval.lmm.pope_questions import read_pope_questions
    from fgclip.llava.generation import generate_answers, load_lmm, read_image
    from fgclip.llava.prompting import SHORT_ANSWER, with_suffix
    from fgclip.llava.settings import GenerationSettings

    plan = _plan(settings)
    dtype = settings.lmm_dtype
    with tempfile.TemporaryDirectory(prefix="fgclip-lmm-bench-") as folder:
        llava, question_file, images = build_pope_setup(Path(folder), plan, settings.seed)
        questions = read_pope_questions(question_file)
        # the prompt eval.pope asks: LLaVA-1.5's question + short-answer instruction
        items = [PromptItem(q.question_id, images / q.image, with_suffix(q.text, SHORT_ANSWER)) for q in questions]
        generation = GenerationSettings(
            batch_size=plan["batch"],
            max_new_tokens=MAX_NEW_TOKENS,
            device=str(settings.torch_device),
            dtype="float32" if dtype == "auto" else dtype,
        )
        lmm = load_lmm(llava, generation)
        warm = items[: plan["batch"]]
        for _ in range(settings.warmup_or(1)):
            generate_answers(lmm, [read_image(item.image) for item in warm], [item.prompt for item in warm], generation)
        reports = [compare_batched_to_sequential(lmm, items, generation) for _ in range(settings.repeats_or(3))]
        parameters = sum(p.numel() for p in lmm.model.parameters())
    batched = statistics.median(r.batched_seconds for r in reports)
    single = statistics.median(r.one_at_a_time_seconds for r in reports)
    mismatches = [m for r in reports for m in r.mismatches]
    identical_share = 1 - len({str(m["question_id"]) for m in mismatches}) / len(items)
    device_name = describe_device(settings.torch_device)["name"]
    figures = [
        Figure(
            f"POPE questions/s, batched (batch {plan['batch']}) / one at a time",
            single / batched,
            "x",
            (">=", 4.0),
            "target set for a GPU",
        ),
        Figure(
            "answers identical batched and one at a time",
            100 * identical_share,
            "%",
            (">=", 100.0),
            f"{len(items)} questions, greedy, {generation.dtype}",
        ),
        Figure("POPE questions/s batched", len(items) / batched, "questions/s", None, device_name),
        Figure("POPE questions/s one at a time", len(items) / single, "questions/s", None, device_name),
    ]
    details = {
        "plan": plan,
        "questions": len(items),
        "max_new_tokens": MAX_NEW_TOKENS,
        "dtype": generation.dtype,
        "parameters": parameters,
        "batched_seconds": [r.batched_seconds for r in reports],
        "one_at_a_time_seconds": [r.one_at_a_time_seconds for r in reports],
        "mismatches": mismatches[:10],
    }
    return Report(NAME, figures, details, describe_device(settings.torch_device), settings.as_dict())


if __name__ == "__main__":
    from benchmarks.run import run_as_main

    run_as_main(NAME)
