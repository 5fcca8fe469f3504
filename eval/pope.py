"""POPE object-hallucination evaluation of a LLaVA model, or scoring of any model's answers file.

    python -m eval.pope --questions coco_pope_random.json coco_pope_popular.json coco_pope_adversarial.json \\
        --model LLAVA_DIR --images val2014/ --out runs/pope
    python -m eval.pope --questions coco_pope_random.json --answers answers.jsonl --out runs/pope
    python -m eval.pope --build-questions --instances instances_val2014.json --out pope_files/

Scores with the public POPE rule (eval.lmm.pope_rule) per split (random / popular / adversarial, named
from the file names or a merged file's `category` field) and averaged. A question without an answer is
scored as wrong and reported in `num_missing`; nothing leaves the denominator, and results.json says
complete: false (--strict: exit 2). An answers file that is empty, a JSON list or holds no usable line is
an error, not a score of 0. A question line repeated exactly is scored once and counted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from eval.common.cli import add_output_args, owned_outputs, prepare_out
from eval.common.coverage import Coverage
from eval.common.reporting import grouped_bar_plot, markdown_table, write_results
from eval.lmm.answers_file import question_key, read_answers_file
from eval.lmm.errors import LMMEvalError, run_cli
from eval.lmm.options import add_generation_args, positive_int, settings_from_args
from eval.lmm.pope_questions import (
    STRATEGIES,
    PopeQuestion,
    build_pope_questions,
    read_coco_objects,
    read_pope_questions,
    write_question_files,
)
from eval.lmm.pope_rule import average_metrics, score_yes_no
from eval.lmm.prompting import SHORT_ANSWER, with_suffix

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
OWNED = owned_outputs({"pope"}, {"results.md", "pope.png", "answers"})
OWNED_QUESTIONS = owned_outputs((), {f"pope_{strategy}.jsonl" for strategy in STRATEGIES})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.pope",
        description="POPE hallucination evaluation: run a LLaVA folder on POPE question files and/or score an "
        "answers file with the public POPE rule; or build POPE question files from COCO-style annotations. "
        "Metrics per split and averaged; a question without an answer is scored as wrong and counted (num_missing).",
    )
    parser.add_argument(
        "--questions", nargs="+", type=Path,
        help="POPE question files (JSON lines: question_id, image, text, label); one split each, named from "
        "the file name (random/popular/adversarial), or one merged file split by its 'category' field",
    )
    parser.add_argument(
        "--answers", nargs="+", type=Path,
        help="score these answers files (JSON lines with question_id and text or answer) instead of running a "
        "model: one per --questions file in the same order, or one for all when question ids are unique",
    )
    parser.add_argument("--model", type=Path, help="LLaVA folder to run (stock LlavaForConditionalGeneration + processor)")
    parser.add_argument("--images", type=Path, help="folder holding the question files' images (with --model)")
    add_output_args(parser, help="output folder: results.json, results.md, pope.png; answers/<split>.jsonl when a "
                    "model runs (re-running with the same --out resumes from them); with --build-questions, the "
                    "question files")
    parser.add_argument("--limit", type=positive_int, help="only the first N questions of each split (smoke runs)")
    build = parser.add_argument_group("building question files (--build-questions)")
    build.add_argument("--build-questions", action="store_true", help="write pope_{random,popular,adversarial}.jsonl to --out")
    build.add_argument("--instances", type=Path, help="COCO-style instances JSON (images, annotations, categories)")
    build.add_argument("--num-images", type=positive_int, default=500, help="images per split (default 500, as POPE)")
    build.add_argument("--per-image", type=positive_int, default=3, help="yes and no questions per image, each (default 3)")
    build.add_argument("--build-seed", type=int, default=0, help="seed for image, positive and random-negative choice (default 0)")
    add_generation_args(parser, max_new_tokens=16)
    return parser


def split_name(path: Path, taken: set[str]) -> str:
    stem = path.stem.lower()
    name = next((strategy for strategy in STRATEGIES if strategy in stem), path.stem)
    while name in taken:
        name += "_"
    return name


def load_splits(paths: Sequence[Path], limit: int | None, counts: dict | None = None) -> dict[str, list[PopeQuestion]]:
    splits: dict[str, list[PopeQuestion]] = {}
    for path in paths:
        questions = read_pope_questions(path, counts)
        categories = list(dict.fromkeys(q.category for q in questions))
        if len(paths) == 1 and len(categories) > 1 and None not in categories:
            for category in categories:
                splits[category] = [q for q in questions if q.category == category]
        else:
            splits[split_name(path, set(splits))] = questions
    return {name: questions[:limit] if limit else questions for name, questions in splits.items()}


def answers_from_files(args, splits: dict[str, list[PopeQuestion]], counts: dict) -> dict[str, dict[str, str]]:
    """Per split, question id -> answer text, from --answers files."""
    if len(args.answers) not in (1, len(args.questions)):
        raise LMMEvalError(f"give one --answers file, or one per --questions file ({len(args.questions)}), not {len(args.answers)}")
    if len(args.answers) == 1:
        keys = [question_key(q.question_id) for questions in splits.values() for q in questions]
        if len(set(keys)) != len(keys):
            raise LMMEvalError("question ids repeat across the question files; give one --answers file per --questions file")
        sources = {name: args.answers[0] for name in splits}
    elif len(splits) != len(args.answers):
        raise LMMEvalError("a merged question file with categories needs a single --answers file")
    else:
        sources = dict(zip(splits, args.answers))
    per_split, used = {}, {}
    for name, path in sources.items():
        contents = used.get(path) or read_answers_file(path)
        if path not in used:
            counts["bad_answer_lines"] += contents.bad_lines
            counts["duplicate_answers"] += contents.duplicates
            used[path] = contents
        per_split[name] = contents.answers
    question_keys = {question_key(q.question_id) for questions in splits.values() for q in questions}
    counts["answers_without_question"] = sum(
        1 for contents in used.values() for key in contents.answers if key not in question_keys
    )
    return per_split


def answers_from_model(args, splits: dict[str, list[PopeQuestion]], counts: dict) -> tuple[dict[str, dict[str, str]], dict]:
    from eval.lmm.generation import PromptItem, answer_all, load_lmm

    if args.images is None or not args.images.is_dir():
        raise LMMEvalError("--model needs --images, the folder that holds the question files' images")
    settings = settings_from_args(args)
    lmm = load_lmm(args.model, settings)
    per_split = {}
    for name, questions in splits.items():
        items = [
            PromptItem(q.question_id, args.images / q.image, q.text if SHORT_ANSWER in q.text else with_suffix(q.text, SHORT_ANSWER))
            for q in questions
        ]
        summary = answer_all(lmm, items, args.out / "answers" / f"{name}.jsonl", settings, description=f"POPE {name}")
        for key, value in summary.counts().items():
            if key != "questions":
                counts[key] = counts.get(key, 0) + value
        per_split[name] = summary.answers
    return per_split, asdict(settings)


def score(splits: dict[str, list[PopeQuestion]], answers: dict[str, dict[str, str]]) -> dict[str, dict]:
    results = {}
    for name, questions in splits.items():
        labels = {question_key(q.question_id): q.label for q in questions}
        results[name] = score_yes_no(labels, answers.get(name, {})).metrics()
    return results


def run_build(args) -> None:
    if args.instances is None:
        raise LMMEvalError("--build-questions needs --instances, a COCO-style instances JSON")
    prepare_out(args, [args.instances], OWNED_QUESTIONS)
    images = read_coco_objects(args.instances)
    splits = build_pope_questions(images, args.num_images, args.per_image, args.build_seed)
    paths = write_question_files(splits, args.out)
    per_split = len(next(iter(splits.values())))
    print(f"wrote {len(paths)} files of {per_split} questions ({per_split // (2 * args.per_image)} images) to {args.out}")


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    if args.build_questions:
        run_build(args)
        return None
    started = time.time()
    if not args.questions:
        raise LMMEvalError("give --questions (or --build-questions)")
    if (args.answers is None) == (args.model is None):
        raise LMMEvalError("give exactly one of --answers (score a file) or --model with --images (run a model)")
    out = prepare_out(args, [*args.questions, *(args.answers or []), args.model, args.images], OWNED)
    counts = {"questions": 0, "duplicate_questions": 0, "bad_answer_lines": 0, "duplicate_answers": 0}
    splits = load_splits(args.questions, args.limit, counts)
    counts["questions"] = sum(len(q) for q in splits.values())
    generation = None
    if args.answers is not None:
        answers = answers_from_files(args, splits, counts)
    else:
        answers, generation = answers_from_model(args, splits, counts)
    per_split = score(splits, answers)
    counts["missing_answers"] = sum(split["num_missing"] for split in per_split.values())
    counts["empty_answers"] = sum(split["num_empty"] for split in per_split.values())
    cover = Coverage("questions", counts["questions"], counts["questions"] - counts["missing_answers"],
                     {"no_answer_scored_as_wrong": counts["missing_answers"]},
                     duplicates=counts["duplicate_questions"])
    cover.warn()
    metrics = {
        **average_metrics(per_split, METRICS),
        "num_questions": counts["questions"],
        "num_missing": counts["missing_answers"],
    }
    rows = [[name] + [split[m] for m in METRICS] + [split["num_questions"], split["num_missing"]] for name, split in per_split.items()]
    rows.append(["average"] + [metrics[m] for m in METRICS] + [metrics["num_questions"], metrics["num_missing"]])
    table = markdown_table(["split", *METRICS, "questions", "missing"], rows)
    model = str(args.model) if args.model else ", ".join(str(p) for p in args.answers)
    result = write_results(
        out, "pope", metrics, model=model, data=[str(p) for p in args.questions], counts=counts,
        started=started, table=table + f"\n{cover.note}\n",
        extra={
            **cover.as_json(),
            "splits": {name: {key: split[key] for key in (*METRICS, "num_questions", "num_missing")}
                       for name, split in per_split.items()},
            # run settings and raw counts: kept out of the metrics that eval.report compares
            "details": {"generation": generation, "missing_answers_scored_as": "wrong",
                        "confusion": {name: {key: split[key] for key in ("tp", "fp", "tn", "fn", "num_empty", "num_yes_answers")}
                                      for name, split in per_split.items()}},
        },
    )
    grouped_bar_plot(out / "pope.png", {name: {m: split[m] for m in METRICS} for name, split in per_split.items()},
                     "POPE per split", "fraction")
    print(table)
    print(f"POPE F1 {metrics['f1']:.4f} on {cover.summary} -> {out / 'results.json'}")
    cover.enforce(args.strict, out / "results.json")
    return result


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
