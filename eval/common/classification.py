"""What zero-shot and box classification share after encoding: the prompt options, the prompt-ensemble
classifier, top-1 / top-5 / mean per-class top-1, the table, the bar plot and the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eval.common.cli import wrapped
from eval.common.command import EncoderRun
from eval.common.options import add_encoder_options
from eval.common.prompts import TEMPLATES_HELP, class_text_embeddings, load_templates
from eval.common.reporting import bar_plot, markdown_table, model_label
from fgclip.cli import CommandParser, option, options_from

if TYPE_CHECKING:
    import torch

    from eval.common.coverage import Coverage
    from eval.common.encoder import Encoder


@dataclass
class ClassificationOptions:
    templates: str = option(TEMPLATES_HELP, "clip80")
    per_class: bool = option("add the per-class top-1 table to results.md (results.json always has it)", False)


def classification_parser(prog: str, description: str, epilog: str, options_type: type) -> CommandParser:
    """The command line of a classification benchmark: its own `options_type`, the prompt options
    (ClassificationOptions) and the encoder options."""
    parser = CommandParser(prog=prog, description=description, epilog=wrapped(epilog))
    parser.add_options(options_type)
    parser.add_options(ClassificationOptions)
    add_encoder_options(parser)
    return parser


def parse_classification(
    parser: CommandParser, argv: Sequence[str] | None, options_type: type
) -> tuple[object, ClassificationOptions, EncoderRun, tuple[str, ...]]:
    """Parse a `classification_parser` command line: (its `options_type` options, the prompt options, the
    encoder run, the loaded prompt templates)."""
    args = parser.parse_args(argv)
    prompts = options_from(args, ClassificationOptions)
    return options_from(args, options_type), prompts, EncoderRun.parsed(args), load_templates(prompts.templates)


def classify_and_finish(
    run: EncoderRun,
    out: Path,
    encoder: Encoder,
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    classnames: Sequence[str],
    templates: Sequence[str],
    options: ClassificationOptions,
    cover: Coverage,
    *,
    benchmark: str,
    title: str,
    unit: str,
    data: str,
    counts: Mapping[str, int],
) -> dict:
    """Classify the scored `embeddings` (`(N, D)`, one per item) against the prompt-ensemble classifier of
    `classnames` and write everything: results.json / .md (per-class top-1 in `details`), `<benchmark>.png`.

    unit: what is classified ("boxes", "images"), for `num_<unit>` and the table.
    """
    from eval.common.metrics import classification_report

    classifier = class_text_embeddings(encoder, list(classnames), tuple(templates))
    cover.truncated = encoder.truncated_texts()
    cover.warn()
    metrics, per_class = classification_report(embeddings @ classifier.T, labels, classnames)
    metrics.update({f"num_{unit}": len(labels), "num_classes": len(classnames)})
    table = markdown_table(
        [unit, "classes", "templates", "top-1", "top-5", "mean per-class top-1"],
        [[len(labels), len(classnames), len(templates), metrics["top1"], metrics["top5"], metrics["mean_class_top1"]]],
    )
    if options.per_class:
        table += "\n" + markdown_table(
            ["class", unit, "top-1"], [[name, v["count"], v["top1"]] for name, v in per_class.items()]
        )
    plot = f"{benchmark}.png"
    bar_plot(
        out / plot,
        {"top-1": metrics["top1"], "top-5": metrics["top5"], "mean per-class top-1": metrics["mean_class_top1"]},
        f"{title} ({model_label(run.model)})",
        "accuracy",
        chance=1 / len(classnames),
    )
    return run.finish(
        out,
        benchmark,
        metrics,
        cover,
        encoder,
        data=data,
        counts=counts,
        table=table,
        headline=f"{title} top-1 {metrics['top1']:.4f} top-5 {metrics['top5']:.4f}",
        extra={
            "templates": options.templates,
            "num_templates": len(templates),
            "details": {"per_class": per_class},
            "plots": [plot],
        },
    )
