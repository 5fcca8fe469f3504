"""Result files every evaluation writes: `results.json`, `results.md` and a PNG plot.

`results.json` always carries the metrics, the model and data it came from, item counts (with the
number skipped and why) and the wall time, so a number never travels without its provenance.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eval.common.coverage import Coverage


def pyplot():
    """matplotlib's pyplot on the file-only backend (no display on servers); loaded when a plot is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def device_description() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()})"


def model_label(directory: str | Path) -> str:
    """A short name for plots: the folder name, with its parent when the name alone says little
    (training runs end in `.../final` or `.../checkpoint-N`)."""
    directory = Path(directory)
    generic = directory.name in {"final", "model", "best", "last"} or directory.name.startswith("checkpoint")
    return f"{directory.parent.name}/{directory.name}" if generic and directory.parent.name else directory.name


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub markdown table; floats with 4 decimals."""
    lines = ["| " + " | ".join(str(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_results(
    out_dir: str | Path,
    benchmark: str,
    metrics: Mapping,
    *,
    model: str,
    data: str | Sequence[str],
    counts: Mapping[str, int],
    started: float,
    table: str,
    extra: Mapping | None = None,
) -> dict:
    """Write `results.json` and `results.md`; returns the JSON object.

    counts: at least the items in the input and the items scored; when they differ, the reason
    should be in `counts` too (e.g. `skipped_missing_image`), so a partial score says so.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": benchmark,
        **dict(metrics),
        "model": str(model),
        "data": [str(d) for d in data] if isinstance(data, (list, tuple)) else str(data),
        "counts": dict(counts),
        "seconds": round(time.time() - started, 3),
        "device": device_description(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if extra:
        result.update(extra)
    (out_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    header = f"# {benchmark}\n\nmodel: `{model}`  \ndata: `{result['data']}`  \ncounts: {dict(counts)}\n\n"
    (out_dir / "results.md").write_text(header + table)
    return result


def write_scored_results(
    out_dir: str | Path,
    benchmark: str,
    metrics: Mapping,
    cover: Coverage,
    *,
    model: str | Path,
    data: str | Sequence[str],
    counts: Mapping[str, int],
    started: float,
    table: str,
    headline: str,
    strict: bool,
    extra: Mapping | None = None,
) -> dict:
    """The end of every scoring evaluation: `write_results` with what the score covers (`complete`, the note
    under the table, the counts by reason), the command's last line ("<headline> on 14 of 17 regions ->
    OUT/results.json"), then with --strict a one-line error (exit 2) when anything was skipped. Returns the
    JSON object."""
    results = Path(out_dir) / "results.json"
    result = write_results(
        out_dir,
        benchmark,
        metrics,
        model=str(model),
        data=data,
        counts=counts,
        started=started,
        table=table + f"\n{cover.note}\n",
        extra={**cover.as_json(), **(extra or {})},
    )
    print(f"{headline} on {cover.summary} -> {results}")
    cover.enforce(strict, results)
    return result


def _save(figure, axis, path: str | Path, title: str, ylabel: str, legend: bool = True) -> None:
    """Title, y label and legend; then the PNG, and the figure's memory freed."""
    axis.set_title(title)
    axis.set_ylabel(ylabel)
    if legend:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot().close(figure)


def bar_plot(path: str | Path, values: Mapping[str, float], title: str, ylabel: str, chance: float | None = None):
    """A labelled bar chart (e.g. accuracy per FG-OVD difficulty), with an optional chance line."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(4, 1.2 * len(values) + 2), 3.5))
    names, heights = list(values), [values[name] for name in values]
    bars = axis.bar(names, heights, color="#4C72B0")
    axis.bar_label(bars, labels=[f"{h:.3f}" for h in heights], fontsize=8)
    if chance is not None:
        axis.axhline(chance, color="gray", linestyle="--", linewidth=1, label="chance")
        axis.legend(loc="upper right", fontsize=8)
    axis.set_ylim(0, max(1.0, max(heights, default=0) * 1.15))
    _save(figure, axis, path, title, ylabel, legend=False)


def grouped_bar_plot(path: str | Path, groups: Mapping[str, Mapping[str, float]], title: str, ylabel: str):
    """Bars grouped by metric, one colour per series (e.g. one per model in a comparison)."""
    series = list(groups)
    metrics = list(dict.fromkeys(m for values in groups.values() for m in values))
    width = 0.8 / max(1, len(series))
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(5, 1.0 * len(metrics) * len(series) + 2), 3.8))
    for index, name in enumerate(series):
        xs = [m + index * width for m in range(len(metrics))]
        axis.bar(xs, [groups[name].get(metric, 0.0) for metric in metrics], width, label=name)
    axis.set_xticks([m + width * (len(series) - 1) / 2 for m in range(len(metrics))], metrics, rotation=20)
    _save(figure, axis, path, title, ylabel)


def line_plot(path: str | Path, curves: Mapping[str, Mapping[float, float]], title: str, xlabel: str, ylabel: str):
    """Curves such as recall@K against K, one line per direction or model."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for name, points in curves.items():
        xs = sorted(points)
        axis.plot(xs, [points[x] for x in xs], marker="o", label=name)
    axis.set_xlabel(xlabel)
    _save(figure, axis, path, title, ylabel)
