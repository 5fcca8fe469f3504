"""What a run shows and records: a tqdm bar on rank 0 (loss, lr, samples/s, ETA), `metrics.jsonl`
(one object per logged step) and, with `--report_to tensorboard`, TensorBoard event files.

(Named `reporting`, not `logging`, so it never shadows the standard library's module.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
VALIDATION_FILE = "validation.jsonl"


def _parsed(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:  # a line cut short by a kill
        return None
    return value if isinstance(value, dict) else None


def read_metrics(path: Path) -> list[dict]:
    """The logged steps of `metrics.jsonl`, without a line a kill cut short."""
    if not path.is_file():
        return []
    return [item for item in map(_parsed, path.read_text().splitlines()) if item is not None]


def truncate_metrics(path: Path, after_step: int) -> None:
    """Drop lines logged after `after_step` (a resumed run logs those steps again) and cut-short lines."""
    if not path.is_file():
        return
    kept = [item for item in read_metrics(path) if item.get("step", 0) <= after_step]
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(json.dumps(item) + "\n" for item in kept))
    temporary.replace(path)


class RunReporter:
    """Progress and metrics of a run; everything is a no-op except on the main rank."""

    def __init__(
        self,
        output_dir: str | Path,
        total_steps: int,
        start_step: int,
        is_main: bool,
        report_to: str = "none",
        progress: bool = True,
        description: str = "training",
    ):
        self.is_main = is_main
        self.metrics_path = Path(output_dir) / METRICS_FILE
        self.writer = None
        self.bar = None
        self.first_logged_loss: float | None = None  # of the whole run, also across a resume
        self.last_logged_loss: float | None = None
        if not is_main:
            return
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        truncate_metrics(self.metrics_path, start_step)
        truncate_metrics(self.metrics_path.with_name(VALIDATION_FILE), start_step)
        earlier = read_metrics(self.metrics_path)
        self.first_logged_loss = earlier[0]["loss"] if earlier else None
        self.last_logged_loss = earlier[-1]["loss"] if earlier else None
        if report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(output_dir) / "tensorboard"), purge_step=start_step + 1)
        self.bar = tqdm(
            total=total_steps,
            initial=start_step,
            desc=description,
            disable=not progress,
            dynamic_ncols=True,
            unit="step",
        )

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def log(self, metrics: dict) -> None:
        """Write one logged step (`metrics` has at least `step` and `loss`)."""
        if not self.is_main:
            return
        if self.first_logged_loss is None:
            self.first_logged_loss = metrics["loss"]
        self.last_logged_loss = metrics["loss"]
        record = {"time": round(time.time(), 3), **metrics}
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                if name != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                    self.writer.add_scalar(f"train/{name}", value, metrics["step"])
            self.writer.flush()
        if self.bar is not None:
            self.bar.set_postfix(
                loss=f"{metrics['loss']:.4f}",
                lr=f"{metrics.get('lr', 0):.2e}",
                samples_per_s=f"{metrics.get('samples_per_s', 0):.1f}",
                refresh=False,
            )

    def log_validation(self, metrics: dict) -> None:
        """Write one validation result (`metrics` has at least `step`) to validation.jsonl and TensorBoard."""
        if not self.is_main:
            return
        with self.metrics_path.with_name(VALIDATION_FILE).open("a") as handle:
            handle.write(json.dumps({"time": round(time.time(), 3), **metrics}) + "\n")
        if self.writer is not None:
            for name, value in metrics.items():
                if name != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"validation/{name}", value, metrics["step"])
            self.writer.flush()

    def message(self, text: str) -> None:
        if self.is_main:
            (self.bar.write if self.bar is not None else print)(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()
