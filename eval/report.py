"""Compare evaluation runs: gather results.json files into one markdown table and a bar chart per benchmark.

    python -m eval.report runs/eval/clip runs/eval/stage1 runs/eval/stage2 --output_dir runs/eval/report

Each RUN is a results.json file or a folder searched (recursively) for results.json files, so a folder
per model holding one sub-folder per benchmark works as it is. Every run is kept: runs are labelled by
their folder name, lengthened with parent folders where two would otherwise share a label (runs/a/eval and
runs/b/eval become a/eval and b/eval), or by --names. Any results.json written through
eval.common.reporting.write_results is understood, the encoder benchmarks' and the LMM evaluations'
alike. Results are grouped by benchmark and data file; each group gets a table of the metrics every run
in it shares (numbers, nested objects flattened as `a/b`), and a grouped bar PNG of those that are
fractions in [0, 1] (counts such as num_regions are tabled, not plotted).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from eval.common.cli import prepare_output
from eval.common.options import OutputFolder
from eval.common.reporting import grouped_bar_plot, markdown_table, model_label
from fgclip.cli import CommandParser, entry_point, option, options_from
from fgclip.errors import UserError
from fgclip.json_files import read_json

# Keys of results.json that describe the run rather than measure it.
METADATA_KEYS = {
    "benchmark",
    "model",
    "data",
    "counts",
    "seconds",
    "device",
    "date",
    "details",
    "encoder",
    "cache",
    "plots",
    "note",
    "complete",
    "coverage",
    "fusion",
    "seed",
    "templates",
    "num_templates",
    "gallery",
    "format",
}
REPORT_FILES = ("report.md", "report.json")


@dataclass
class Run:
    label: str
    path: Path
    result: dict
    within: str = ""  # the results.json's folder relative to the RUN argument ("" when it is the argument)

    @property
    def benchmark(self) -> str:
        return str(self.result.get("benchmark") or self.path.parent.name)

    @property
    def data_names(self) -> str:
        data = self.result.get("data", "")
        names = [Path(str(d)).name for d in (data if isinstance(data, list) else [data])]
        return ", ".join(n for n in names if n)


def flatten_metrics(result: dict, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Numeric leaves of a results object (booleans and metadata left out); nested keys as `a/b`."""
    metrics: dict[str, float] = {}
    for key, value in result.items():
        if depth == 0 and key in METADATA_KEYS:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            metrics[name] = value
        elif isinstance(value, dict) and depth < 2:
            metrics.update(flatten_metrics(value, f"{name}/", depth + 1))
    return metrics


def find_results(argument: Path) -> list[Path]:
    if argument.is_file():
        return [argument]
    if argument.is_dir():
        found = sorted(argument.rglob("results.json"))
        if not found:
            raise UserError(f"{argument} holds no results.json")
        return found
    raise UserError(f"{argument} does not exist")


def distinct_labels(paths: list[Path]) -> list[str]:
    """A short label per path: its last folder name, with as many parent folders as it takes to tell it from
    every other path (the same path given twice gets a " (2)" suffix)."""
    parts = [Path(path).resolve().parts for path in paths]
    depth = [1] * len(paths)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = [
            i
            for i, label in enumerate(labels)
            if depth[i] < len(parts[i]) - 1
            and any(other == label and parts[j] != parts[i] for j, other in enumerate(labels))
        ]
        if not clashes:
            break
        for i in clashes:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label} ({seen[label]})"
    return labels


def load_runs(arguments: list[Path], names: list[str] | None) -> list[Run]:
    if names is not None and len(names) != len(arguments):
        raise UserError(f"--names has {len(names)} labels for {len(arguments)} runs")
    if names is not None and len(set(names)) != len(names):
        raise UserError(
            f"--names repeats a label ({', '.join(n for n in names if names.count(n) > 1)}); give each run its own"
        )
    folders = [argument.parent if argument.is_file() else argument for argument in arguments]
    labels = names or distinct_labels(folders)
    runs = []
    for label, argument, folder in zip(labels, arguments, folders):
        for path in find_results(argument):
            result = read_json(path, dict, f"{path} does not hold a results object")
            within = path.parent.relative_to(folder).as_posix()
            runs.append(Run(label, path, result, "" if within == "." else within))
    return runs


def group_runs(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs by (benchmark, data file names); two results of one run in one group get their sub-folder as suffix,
    so no result is ever dropped."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for member in runs:
        groups.setdefault((member.benchmark, member.data_names), []).append(member)
    for members in groups.values():
        labels = [member.label for member in members]
        for member in members:
            if labels.count(member.label) > 1 and member.within:
                member.label = f"{member.label}/{member.within}"
        labels = [member.label for member in members]
        for index, member in enumerate(members):
            repeats = labels[:index].count(member.label)
            if repeats:
                member.label = f"{member.label} ({repeats + 1})"
    return groups


def shared_metrics(members: list[Run]) -> tuple[list[str], list[str]]:
    """(metric keys every run has, in first-run order; keys only some runs have)."""
    flat = [flatten_metrics(member.result) for member in members]
    shared = [key for key in flat[0] if all(key in f for f in flat[1:])]
    partial = sorted({key for f in flat for key in f} - set(shared))
    return shared, partial


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "benchmark"


def build_report(runs: list[Run], out: Path) -> dict:
    sections, summary = ["# Evaluation comparison\n"], {}
    for (benchmark, data), members in group_runs(runs).items():
        shared, partial = shared_metrics(members)
        flat = [flatten_metrics(member.result) for member in members]
        title = f"{benchmark}" + (f" ({data})" if data else "")
        rows = [
            [member.label, f"`{model_label(str(member.result.get('model', '?')))}`", *[f[key] for key in shared]]
            for member, f in zip(members, flat)
        ]
        section = f"## {title}\n\n" + markdown_table(["run", "model", *shared], rows)
        if partial:
            section += f"\nnot in every run (left out): {', '.join(partial)}\n"
        incomplete = [member.label for member in members if member.result.get("complete") is False]
        if incomplete:
            section += f"\npartial coverage (see each results.json note): {', '.join(incomplete)}\n"
        plot_keys = [
            key
            for key in shared
            if not key.split("/")[-1].startswith("num_") and all(0.0 <= f[key] <= 1.0 for f in flat)
        ]
        plot = None
        if plot_keys:
            plot = f"report_{_slug(benchmark + '_' + data)}.png"
            grouped_bar_plot(
                out / plot,
                {member.label: {k: f[k] for k in plot_keys} for member, f in zip(members, flat)},
                title,
                "value",
            )
            section += f"\n![{title}]({plot})\n"
        sections.append(section)
        summary[title] = {
            "benchmark": benchmark,
            "data": data,
            "metrics": shared,
            "plot": plot,
            "runs": {
                member.label: {"path": str(member.path), **{k: f[k] for k in shared}}
                for member, f in zip(members, flat)
            },
        }
    (out / "report.md").write_text("\n".join(sections))
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


@dataclass
class ReportOptions:
    runs: list[Path] = option(
        "results.json files or folders holding them (searched recursively)", positional=True, metavar="RUN"
    )
    names: list[str] | None = option("a label per RUN for the tables and plots (default: the folder names)", None)


@dataclass
class ReportOutput(OutputFolder):
    output_dir: Path = option(
        "output folder: report.md (tables), report.json (the same numbers) and report_*.png; a "
        "folder holding an earlier report is written again",
        aliases=["out"],
    )


def is_report_file(entry: Path) -> bool:
    return entry.name in REPORT_FILES or (entry.name.startswith("report_") and entry.suffix == ".png")


def build_parser() -> CommandParser:
    return CommandParser(
        prog="python -m eval.report", description=__doc__, options=[ReportOptions, (ReportOutput, "output")]
    )


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    options = options_from(args, ReportOptions)
    out = prepare_output(
        options_from(args, ReportOutput), options.runs, is_report_file, what="files eval.report did not write"
    )
    runs = load_runs(options.runs, options.names)
    summary = build_report(runs, out)
    print(
        f"compared {len(runs)} result(s) of {len(options.runs)} run(s) over {len(summary)} benchmark group(s) "
        f"-> {out / 'report.md'}"
    )
    return summary


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
