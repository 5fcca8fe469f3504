"""Attribute analysis of a LLaVA model: yes/no and multiple-choice questions built from region records.

    python -m eval.attributes --data regions.jsonl --model LLAVA_DIR --output_dir runs/attributes
    python -m eval.attributes --data regions.jsonl --answers answers.jsonl --output_dir runs/attributes

The data are records of data-format.md section 1 whose regions carry `hard_negatives` (FineHARD JSON
lists are read too). Questions are built deterministically (eval.lmm.attribute_questions, --question_seed) and
written to OUT/questions.jsonl; yes/no answers are read with the POPE rule, multiple-choice answers by
their letter. Accuracy per attribute type (colour, material, size, count, pattern, state) and overall;
a missing or unreadable answer is scored as wrong and counted, and results.json then says complete: false
(as it does when records were skipped as invalid; --strict makes either exit 2). A region repeated exactly
(same image, box, caption and negatives) is asked about once and counted.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from eval.common.cli import owned_outputs, prepare_output
from eval.common.coverage import Coverage
from eval.common.options import OutputOptions
from eval.common.reporting import grouped_bar_plot, markdown_table, write_scored_results
from eval.lmm.answers_file import question_key, read_answers_file
from eval.lmm.attribute_questions import AttributeQuestion, parse_choice, region_questions
from eval.lmm.options import LMMModelOption, generation_parser, one_answer_source
from eval.lmm.pope_rule import pope_answer
from fgclip.cli import CommandParser, entry_point, option, options_from, positive_int
from fgclip.data.schema import BadRecord, iter_record_file
from fgclip.errors import UserError
from fgclip.llava.settings import GenerationSettings

KINDS = ("yes_no", "multiple_choice")
KIND_LABELS = {"yes_no": "yes/no", "multiple_choice": "multiple choice"}
OWNED = owned_outputs({"attributes"}, {"results.md", "attributes.png", "questions.jsonl", "answers.jsonl"})


@dataclass
class AttributesOptions:
    data: Path = option(
        "region records (JSONL of data-format.md section 1, or a FineHARD .json list) with hard_negatives"
    )
    images: Path | None = option("root for relative image paths (default: the folder holding --data)", None)
    answers: Path | None = option("score this answers file (question_id + text) instead of running a model", None)
    kinds: list[str] = option(
        "question kinds: yes_no (a true and a false question per region) and multiple_choice (the caption among 3 "
        "negatives, A-D; needs 3 negatives)",
        default_factory=lambda: list(KINDS),
        choices=KINDS,
        nargs="+",
    )
    question_seed: int = option("seed of the negative choice and the option order", 0)
    limit: int | None = option("only the first N records (smoke runs)", None, type=positive_int)


@dataclass
class AttributesOutput(OutputOptions):
    output_dir: Path = option(
        "output folder: questions.jsonl, answers.jsonl (with --model; re-running resumes from "
        "it), results.json, results.md, attributes.png",
        aliases=["out"],
    )


def build_parser() -> CommandParser:
    return generation_parser(
        "python -m eval.attributes", __doc__, AttributesOptions, (AttributesOutput, "output"), max_new_tokens=16
    )


def build_questions(options: AttributesOptions, counts: dict) -> list[AttributeQuestion]:
    if not options.data.is_file():
        raise UserError(f"data file {options.data} does not exist")
    questions: list[AttributeQuestion] = []
    seen: set[tuple] = set()
    for index, record in enumerate(iter_record_file(options.data, require_captions=False)):
        if options.limit is not None and index >= options.limit:
            break
        counts["records"] += 1
        if isinstance(record, BadRecord):
            counts["skipped_bad_records"] += 1
            continue
        for region_index, region in enumerate(record.regions):
            counts["regions"] += 1
            key = (record.image, tuple(region.bbox), region.caption, tuple(region.hard_negatives))
            if key in seen:
                counts["duplicate_regions"] += 1
                continue
            seen.add(key)
            built = region_questions(
                f"{index}:{region_index}",
                record.image,
                region.caption,
                region.hard_negatives,
                options.question_seed,
                tuple(options.kinds),
            )
            if not built:
                counts["regions_without_negatives"] += 1
            elif "multiple_choice" in options.kinds and not any(q.kind == "multiple_choice" for q in built):
                counts["regions_with_fewer_than_3_negatives"] += 1
            questions += built
    if not questions:
        raise UserError(f"{options.data} gives no questions: no region has hard_negatives ({counts})")
    return questions


def write_questions(path: Path, questions: list[AttributeQuestion]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for question in questions:
            handle.write(json.dumps(asdict(question), ensure_ascii=False) + "\n")


def run_model(
    model: Path, settings: GenerationSettings, root: Path, questions: list[AttributeQuestion], out: Path, counts: dict
) -> dict[str, str]:
    from eval.lmm.generation import PromptItem, answer_all
    from fgclip.llava.generation import load_lmm

    lmm = load_lmm(model, settings)
    items = [
        PromptItem(q.question_id, Path(q.image) if Path(q.image).is_absolute() else root / q.image, q.prompt)
        for q in questions
    ]
    summary = answer_all(lmm, items, out / "answers.jsonl", settings, description="attributes")
    summary.add_counts(counts)
    return summary.answers


def is_correct(question: AttributeQuestion, text: str) -> bool:
    if question.kind == "yes_no":
        return pope_answer(text) == question.answer
    return parse_choice(text, question.options) == question.answer


def score(questions: list[AttributeQuestion], answers: dict[str, str], counts: dict) -> dict:
    """Accuracy overall, per kind and per (type, kind); missing/unparsed answers are wrong."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])  # (type, kind) -> [correct, total]
    for question in questions:
        text = answers.get(question_key(question.question_id))
        if text is None:
            counts["missing_answers"] += 1
            correct = False
        else:
            if question.kind == "multiple_choice" and parse_choice(text, question.options) is None:
                counts["unparsed_choices"] += 1
            correct = is_correct(question, text)
        cell = totals[(question.attribute_type, question.kind)]
        cell[0] += correct
        cell[1] += 1

    def accuracy(cells) -> float:
        correct, total = sum(c[0] for c in cells), sum(c[1] for c in cells)
        return correct / total if total else 0.0

    per_type = {}
    for kind_type in sorted({t for t, _ in totals}):
        entry = {"accuracy": accuracy([v for (t, _), v in totals.items() if t == kind_type])}
        for kind in KINDS:
            if (kind_type, kind) in totals:
                entry[kind] = accuracy([totals[(kind_type, kind)]])
                entry[f"{kind}_questions"] = totals[(kind_type, kind)][1]
        per_type[kind_type] = entry
    metrics = {"accuracy": accuracy(totals.values()), "num_questions": len(questions)}
    for kind in KINDS:
        cells = [v for (_, k), v in totals.items() if k == kind]
        if cells:
            metrics[f"{kind}_accuracy"] = accuracy(cells)
            metrics[f"num_{kind}"] = sum(c[1] for c in cells)
    metrics["num_missing"] = counts["missing_answers"]
    metrics["per_type"] = per_type
    return metrics


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options, output = options_from(args, AttributesOptions), options_from(args, AttributesOutput)
    model = options_from(args, LMMModelOption).model
    started = time.time()
    one_answer_source(options.answers, model)
    out = prepare_output(output, [options.data, options.answers, model, options.images], OWNED)
    counts = dict.fromkeys(
        (
            "records",
            "skipped_bad_records",
            "regions",
            "duplicate_regions",
            "regions_without_negatives",
            "regions_with_fewer_than_3_negatives",
            "missing_answers",
            "unparsed_choices",
        ),
        0,
    )
    questions = build_questions(options, counts)
    counts["questions"] = len(questions)
    write_questions(out / "questions.jsonl", questions)  # first: answering them elsewhere needs only this file
    generation = None
    if options.answers is not None:
        contents = read_answers_file(options.answers)
        counts["bad_answer_lines"] = contents.bad_lines
        answers = contents.answers
    else:
        settings = options_from(args, GenerationSettings)
        answers = run_model(model, settings, options.images or options.data.parent, questions, out, counts)
        generation = asdict(settings)
    metrics = score(questions, answers, counts)
    cover = Coverage(
        "questions",
        len(questions),
        len(questions) - counts["missing_answers"],
        {"no_answer_scored_as_wrong": counts["missing_answers"], "bad_records": counts["skipped_bad_records"]},
        duplicates=counts["duplicate_regions"],
    )
    cover.warn()
    per_type = metrics["per_type"]
    rows = [
        [
            name,
            entry["accuracy"],
            entry.get("yes_no", "-"),
            entry.get("yes_no_questions", 0),
            entry.get("multiple_choice", "-"),
            entry.get("multiple_choice_questions", 0),
        ]
        for name, entry in per_type.items()
    ]
    rows.append(
        [
            "overall",
            metrics["accuracy"],
            metrics.get("yes_no_accuracy", "-"),
            metrics.get("num_yes_no", 0),
            metrics.get("multiple_choice_accuracy", "-"),
            metrics.get("num_multiple_choice", 0),
        ]
    )
    table = markdown_table(
        ["attribute", "accuracy", "yes/no", "yes/no questions", "multiple choice", "mc questions"], rows
    )
    groups = {
        KIND_LABELS[kind]: {name: entry[kind] for name, entry in per_type.items() if kind in entry}
        for kind in KINDS
        if f"{kind}_accuracy" in metrics
    }
    grouped_bar_plot(out / "attributes.png", groups, "Accuracy per attribute type", "accuracy")
    print(table)
    return write_scored_results(
        out,
        "attributes",
        metrics,
        cover,
        model=model or options.answers,
        data=str(options.data),
        counts=counts,
        started=started,
        table=table,
        headline=f"attribute accuracy {metrics['accuracy']:.4f}",
        strict=output.strict,
        extra={
            "details": {
                "generation": generation,
                "question_seed": options.question_seed,
                "missing_answers_scored_as": "wrong",
            }
        },
    )


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
