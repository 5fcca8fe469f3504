"""Run statistics: `stats.json` (images, regions per image, negatives per region, per-step counts and
drop reasons) and `stats.png` (the two histograms and the drop reasons)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from fgclip.data.schema import Record


class RecordStats:
    """Accumulates the shape of the final records, one record at a time."""

    def __init__(self):
        self.images = 0
        self.regions_per_image: Counter = Counter()
        self.negatives_per_region: Counter = Counter()

    def add(self, record: Record) -> None:
        self.images += 1
        self.regions_per_image[len(record.regions)] += 1
        for region in record.regions:
            self.negatives_per_region[len(region.hard_negatives)] += 1

    def to_json(self) -> dict:
        regions = sum(k * v for k, v in self.regions_per_image.items())
        negatives = sum(k * v for k, v in self.negatives_per_region.items())
        return {
            "images": self.images,
            "regions": regions,
            "negatives": negatives,
            "mean_regions_per_image": regions / self.images if self.images else 0.0,
            "mean_negatives_per_region": negatives / regions if regions else 0.0,
            "images_without_regions": self.regions_per_image.get(0, 0),
            "regions_per_image": {str(k): v for k, v in sorted(self.regions_per_image.items())},
            "negatives_per_region": {str(k): v for k, v in sorted(self.negatives_per_region.items())},
        }


def drop_reasons(input_counts: dict, step_counts: dict[str, dict]) -> dict[str, int]:
    """Unusable input items and every `dropped_*` count of every step, as "stage/reason"."""
    reasons = {f"input/{key}": value for key, value in sorted(input_counts.items()) if key != "items" and value}
    reasons.update(
        (f"{step}/{key[len('dropped_') :]}", value)
        for step, counts in step_counts.items()
        for key, value in sorted(counts.items())
        if key.startswith("dropped_") and value
    )
    return reasons


def write_stats(out_dir: str | Path, stats: RecordStats, input_counts: dict, step_counts: dict[str, dict]) -> dict:
    """Write `stats.json` and `stats.png` into `out_dir`; returns the JSON object."""
    out_dir = Path(out_dir)
    result = {
        **stats.to_json(),
        "input": dict(input_counts),
        "drop_reasons": drop_reasons(input_counts, step_counts),
        "steps": {step: dict(sorted(counts.items())) for step, counts in step_counts.items()},
    }
    (out_dir / "stats.json").write_text(json.dumps(result, indent=2) + "\n")
    plot_stats(out_dir / "stats.png", result)
    return result


def plot_stats(path: str | Path, result: dict) -> None:
    import matplotlib  # here, not at the top: only the end of a run plots

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    reasons = result["drop_reasons"]
    panels = 3 if reasons else 2
    figure, axes = plt.subplots(1, panels, figsize=(5 * panels, 3.6))
    for axis, key, title in (
        (axes[0], "regions_per_image", "regions per image"),
        (axes[1], "negatives_per_region", "hard negatives per region"),
    ):
        histogram = {int(k): v for k, v in result[key].items()}
        bars = axis.bar(list(histogram), list(histogram.values()), color="#4C72B0")
        axis.bar_label(bars, fontsize=7)
        if len(histogram) <= 20:  # counts are whole numbers: tick each bar
            axis.set_xticks(sorted(histogram))
        else:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_title(f"{title} (mean {result['mean_' + key]:.2f})")
        axis.set_xlabel(title.split(" per ")[0])
        axis.set_ylabel("count")
    if reasons:
        names = list(reasons)
        bars = axes[2].barh(names, [reasons[n] for n in names], color="#C44E52")
        axes[2].bar_label(bars, fontsize=7)
        axes[2].set_title("dropped, by reason")
        axes[2].tick_params(axis="y", labelsize=7)
    figure.suptitle(f"{result['images']} images, {result['regions']} regions, {result['negatives']} negatives")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
