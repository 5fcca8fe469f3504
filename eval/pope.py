"""POPE object-hallucination evaluation of a LLaVA model, or scoring of any model's answers file.

    python -m eval.pope --questions coco_pope_random.json coco_pope_popular.json coco_pope_adversarial.json \\
        --model LLAVA_DIR --images val2014/ --output_dir runs/pope
    python -m eval.pope --questions coco_pope_random.json --answers answers.jsonl --output_dir runs/pope
    python -m eval.pope --build_questions --instances instances_val2014.json --output_dir pope_files/

Scores with the public POPE rule (eval.lmm.pope_rule) per split (random / popular / adversarial, named
from the file names or a merged file's `category` field) and averaged. A question without an answer is
scored as wrong and reported in `num_missing`; nothing leaves the denominator, and results.json says
complete: false (--strict: exit 2). An answers file that is empty, a JSON list or holds no usable line is
an error, not a score of 0. A question line repeated exactly is scored once and counted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.common.cli import owned_outputs, prepare_output
from eval.common.coverage import Coverage
from eval.common.options import OutputOptions
from eval.common.reporting import grouped_bar_plot, markdown_table, write_scored_results
from eval.lmm.answers_file import question_key, read_answers_file
from eval.lmm.options import LMMModelOption, generation_parser, one_answer_source
from eval.lmm.pope_questions import (
    STRATEGIES,
    PopeQuestion,
    build_pope_questions,
    read_coco_objects,
    read_pope_questions,
    write_question_files,
)
from eval.lmm.pope_rule import average_metrics, score_yes_no
from fgclip.cli import CommandParser, entry_point, option, options_from, positive_int
from fgclip.errors import UserError
from fgclip.llava.prompting import SHORT_ANSWER, with_suffix
from fgclip.llava.settings import GenerationSettings

METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")
OWNED = owned_outputs({"pope"}, {"results.md", "pope.png", "answers"})
OWNED_QUESTIONS = owned_outputs((), {f"pope_{strategy}.jsonl" for strategy in STRATEGIES})


@dataclass
class PopeOptions:
    questions: list[Path] | None = option(
        "POPE question files (JSON lines: question_id, image, text, label); one split each, named from the file name "
        "(random/popular/adversarial), or one merged file split by its 'category' field",
        None,
        nargs="+",
    )
    answers: list[Path] | None = option(
        "score these answers files (JSON lines with question_id and text or answer) instead of running a model: one "
        "per --questions file in the same order, or one for all when question ids are unique",
        None,
        nargs="+",
    )
    images: Path | None = option("folder holding the question files' images (with --model)", None)
    limit: int | None = option("only the first N questions of each split (smoke runs)", None, type=positive_int)


@dataclass
class PopeBuildOptions:
    build_questions: bool = option("write pope_{random,popular,adversarial}.jsonl to --output_dir", False)
    instances: Path | None = option("COCO-style instances JSON (images, annotations, categories)", None)
    num_images: int = option("images per split (as POPE)", 500, type=positive_int)
    per_image: int = option("yes and no questions per image, each", 3, type=positive_int)
    build_seed: int = option("seed for image, positive and random-negative choice", 0)


@dataclass
class PopeOutput(OutputOptions):
    output_dir: Path = option(
        "output folder: results.json, results.md, pope.png; answers/<split>.jsonl when a model runs (re-running with "
        "the same --output_dir resumes from them); with --build_questions, the question files",
        aliases=["out"],
    )


def build_parser() -> CommandParser:
    return generation_parser(
        "python -m eval.pope",
        __doc__,
        PopeOptions,
        (PopeOutput, "output"),
        (PopeBuildOptions, "building question files (--build_questions)"),
        max_new_tokens=16,
    )


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


def answers_from_files(
    options: PopeOptions, splits: dict[str, list[PopeQuestion]], counts: dict
) -> dict[str, dict[str, str]]:
    """Per split, question id -> answer text, from --answers files."""
    answers, questions = options.answers, options.questions
    if len(answers) not in (1, len(questions)):
        raise UserError(f"give one --answers file, or one per --questions file ({len(questions)}), not {len(answers)}")
    if len(answers) == 1:
        keys = [question_key(q.question_id) for split in splits.values() for q in split]
        if len(set(keys)) != len(keys):
            raise UserError(
                "question ids repeat across the question files; give one --answers file per --questions file"
            )
        sources = {name: answers[0] for name in splits}
    elif len(splits) != len(answers):
        raise UserError("a merged question file with categories needs a single --answers file")
    else:
        sources = dict(zip(splits, answers))
    per_split, used = {}, {}
    for name, path in sources.items():
        contents = used.get(path) or read_answers_file(path)
        if path not in used:
            counts["bad_answer_lines"] += contents.bad_lines
            counts["duplicate_answers"] += contents.duplicates
            used[path] = contents
        per_split[name] = contents.answers
    question_keys = {question_key(q.question_id) for split in splits.values() for q in split}
    counts["answers_without_question"] = sum(
        1 for contents in used.values() for key in contents.answers if key not in question_keys
    )
    return per_split


def answers_from_model(
    model: Path,
    images: Path | None,
    settings: GenerationSettings,
    out: Path,
    splits: dict[str, list[PopeQuestion]],
    counts: dict,
) -> dict[str, dict[str, str]]:
    from eval.lmm.generation import PromptItem, answer_all
    from fgclip.llava.generation import load_lmm

    if images is None or not images.is_dir():
        raise UserError("--model needs --images, the folder that holds the question files' images")
    lmm = load_lmm(model, settings)
    per_split = {}
    for name, questions in splits.items():
        items = [
            PromptItem(
                q.question_id, images / q.image, q.text if SHORT_ANSWER in q.text else with_suffix(q.text, SHORT_ANSWER)
            )
            for q in questions
        ]
        summary = answer_all(lmm, items, out / "answers" / f"{name}.jsonl", settings, description=f"POPE {name}")
        summary.add_counts(counts)
        per_split[name] = summary.answers
    return per_split


def score(splits: dict[str, list[PopeQuestion]], answers: dict[str, dict[str, str]]) -> dict[str, dict]:
    results = {}
    for name, questions in splits.items():
        labels = {question_key(q.question_id): q.label for q in questions}
        results[name] = score_yes_no(labels, answers.get(name, {})).metrics()
    return results


def run_build(build: PopeBuildOptions, output: PopeOutput) -> None:
    if build.instances is None:
        raise UserError("--build_questions needs --instances, a COCO-style instances JSON")
    out = prepare_output(output, [build.instances], OWNED_QUESTIONS, what="files --build_questions did not write")
    images = read_coco_objects(build.instances)
    splits = build_pope_questions(images, build.num_images, build.per_image, build.build_seed)
    paths = write_question_files(splits, out)
    per_split = len(next(iter(splits.values())))
    print(f"wrote {len(paths)} files of {per_split} questions ({per_split // (2 * build.per_image)} images) to {out}")


def main(argv: Sequence[str] | None = None) -> dict | None:
    args = build_parser().parse_args(argv)
    options, output = options_from(args, PopeOptions), options_from(args, PopeOutput)
    if args.build_questions:
        run_build(options_from(args, PopeBuildOptions), output)
        return None
    started = time.time()
    model = options_from(args, LMMModelOption).model
    if not options.questions:
        raise UserError("give --questions (or --build_questions)")
    one_answer_source(options.answers, model, " with --images")
    out = prepare_output(output, [*options.questions, *(options.answers or []), model, options.images], OWNED)
    counts = {"questions": 0, "duplicate_questions": 0, "bad_answer_lines": 0, "duplicate_answers": 0}
    splits = load_splits(options.questions, options.limit, counts)
    counts["questions"] = sum(len(q) for q in splits.values())
    generation = None
    if options.answers is not None:
        answers = answers_from_files(options, splits, counts)
    else:
        settings = options_from(args, GenerationSettings)
        answers, generation = answers_from_model(model, options.images, settings, out, splits, counts), asdict(settings)
    per_split = score(splits, answers)
    counts["missing_answers"] = sum(split["num_missing"] for split in per_split.values())
    counts["empty_answers"] = sum(split["num_empty"] for split in per_split.values())
    cover = Coverage(
        "questions",
        counts["questions"],
        counts["questions"] - counts["missing_answers"],
        {"no_answer_scored_as_wrong": counts["missing_answers"]},
        duplicates=counts["duplicate_questions"],
    )
    cover.warn()
    metrics = {
        **average_metrics(per_split, METRICS),
        "num_questions": counts["questions"],
        "num_missing": counts["missing_answers"],
    }
    rows = [
        [name] + [split[m] for m in METRICS] + [split["num_questions"], split["num_missing"]]
        for name, split in per_split.items()
    ]
    rows.append(["average"] + [metrics[m] for m in METRICS] + [metrics["num_questions"], metrics["num_missing"]])
    table = markdown_table(["split", *METRICS, "questions", "missing"], rows)
    grouped_bar_plot(
        out / "pope.png",
        {name: {m: split[m] for m in METRICS} for name, split in per_split.items()},
        "POPE per split",
        "fraction",
    )
    print(table)
    return write_scored_results(
        out,
        "pope",
        metrics,
        cover,
        model=model or ", ".join(str(p) for p in options.answers),
        data=[str(p) for p in options.questions],
        counts=counts,
        started=started,
        table=table,
        headline=f"POPE F1 {metrics['f1']:.4f}",
        strict=output.strict,
        extra={
            "splits": {
                name: {key: split[key] for key in (*METRICS, "num_questions", "num_missing")}
                for name, split in per_split.items()
            },
            # run settings and raw counts: kept out of the metrics that eval.report compares
            "details": {
                "generation": generation,
                "missing_answers_scored_as": "wrong",
                "confusion": {
                    name: {key: split[key] for key in ("tp", "fp", "tn", "fn", "num_empty", "num_yes_answers")}
                    for name, split in per_split.items()
                },
            },
        },
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
