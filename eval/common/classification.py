"""What zero-shot and box classification share after encoding: the prompt options, the prompt-ensemble
classifier, top-1 / top-5 / mean per-class top-1, the table, the bar plot and the results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from eval.common.cli import owned_outputs, wrapped
from eval.common.command import EncoderRun
from eval.common.options import encoder_parser
from eval.common.prompts import TEMPLATES_HELP, class_text_embeddings, load_templates
from eval.common.reporting import bar_plot, markdown_table, model_label
from fgclip.cli import CommandParser, OptionGroup, option, options_from

if TYPE_CHECKING:
    import argparse

    import torch

    from eval.common.coverage import Coverage
    from eval.common.encoder import EncodedImages


@dataclass
class ClassificationOptions:
    templates: str = option(TEMPLATES_HELP, "clip80")
    per_class: bool = option("add the per-class top-1 table to results.md (results.json always has it)", False)


@dataclass(frozen=True)
class ClassificationTask:
    """What a classification benchmark is called: `benchmark` in results.json (and `<benchmark>.png`), the
    plot's and the last line's `title`, and the `unit` classified ("boxes", "images") for `num_<unit>`."""

    benchmark: str
    title: str
    unit: str

    @property
    def plot(self) -> str:
        return f"{self.benchmark}.png"

    @property
    def owned(self) -> Callable[[Path], bool]:
        """What the benchmark may write again in its output folder (`eval.common.cli.owned_outputs`)."""
        return owned_outputs({self.benchmark}, {"results.md", self.plot})


def classification_parser(prog: str, description: str, *groups: OptionGroup, epilog: str) -> CommandParser:
    """The command line of a classification benchmark: its own `groups`, the prompt options
    (`ClassificationOptions`) and the encoder options; `epilog` is wrapped."""
    return encoder_parser(prog, description, *groups, ClassificationOptions, epilog=wrapped(epilog))


@dataclass
class ClassificationRun(EncoderRun):
    """An encoder run that classifies by a prompt ensemble: with the prompt options and their templates."""

    prompts: ClassificationOptions = field(default_factory=ClassificationOptions)
    templates: tuple[str, ...] = ()

    @classmethod
    def parsed(cls, args: argparse.Namespace) -> ClassificationRun:
        """From a `classification_parser` command line."""
        prompts = options_from(args, ClassificationOptions)
        return super().parsed(args, prompts=prompts, templates=load_templates(prompts.templates))

    def classify_and_finish(
        self,
        task: ClassificationTask,
        encoded: EncodedImages,
        labels: torch.Tensor,
        classnames: Sequence[str],
        cover: Coverage,
        *,
        data: str | Path,
        counts: Mapping[str, int],
    ) -> dict:
        """Classify the scored rows of `encoded` (those `ok`; `labels`: one class index per row) against the
        prompt-ensemble classifier of `classnames` and write everything: results.json / .md (per-class top-1 in
        `details`), the bar plot."""
        from eval.common.metrics import classification_report

        embeddings, labels = encoded.embeddings[encoded.ok], labels[encoded.ok]
        classifier = class_text_embeddings(self.encoder, list(classnames), self.templates)
        cover.truncated = self.encoder.truncated_texts()
        cover.warn()
        metrics, per_class = classification_report(embeddings @ classifier.T, labels, classnames)
        metrics.update({f"num_{task.unit}": len(labels), "num_classes": len(classnames)})
        scores = [metrics["top1"], metrics["top5"], metrics["mean_class_top1"]]
        table = markdown_table(
            [task.unit, "classes", "templates", "top-1", "top-5", "mean per-class top-1"],
            [[len(labels), len(classnames), len(self.templates), *scores]],
        )
        if self.prompts.per_class:
            table += "\n" + markdown_table(
                ["class", task.unit, "top-1"], [[name, v["count"], v["top1"]] for name, v in per_class.items()]
            )
        bar_plot(
            self.out / task.plot,
            {"top-1": metrics["top1"], "top-5": metrics["top5"], "mean per-class top-1": metrics["mean_class_top1"]},
            f"{task.title} ({model_label(self.model)})",
            "accuracy",
            chance=1 / len(classnames),
        )
        return self.finish(
            task.benchmark,
            metrics,
            cover,
            data=data,
            counts=counts,
            table=table,
            headline=f"{task.title} top-1 {metrics['top1']:.4f} top-5 {metrics['top5']:.4f}",
            extra={
                "templates": self.prompts.templates,
                "num_templates": len(self.templates),
                "details": {"per_class": per_class},
                "plots": [task.plot],
            },
        )
