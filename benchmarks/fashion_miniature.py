"""Benchmark: does Fashion-FINE's global + local embedding help? A miniature, held out, on CPU.

    python -m benchmarks.fashion_miniature [--output_file benchmarks/results/fashion_miniature.json]

1. Synthesise a product set (`fgclip.fashion.synthetic`): families of garments whose titles differ in one
   or two attributes, three images per product, seven subcategories; train / val / test by family, so the
   test products are attribute combinations never seen in training.
2. One start: a tiny FG-CLIP (random, seeded), saved as a folder.
3. Finetune it twice with `scripts/finetune_fashion.py --task retrieval` (same data, seed, steps, losses):
   global-only (`--no-local_pooling`) and global + local; each run's model is the best validation step.
4. Evaluate the start and both models on the TEST split with `eval.fashion`: FashionGen sample-100 and full
   R@1/R@10 both ways, and text-guided retrieval R@10/R@50 (zero-shot sum of each model's own embeddings,
   the test split's image_splits as galleries). With `--tgir_steps`, each model is also finetuned for
   text-guided retrieval (`--task tgir`) and evaluated with its trained composition.
5. Write the table (JSON + markdown) with the differences global + local minus global-only.
"""

from __future__ import annotations

import json
import os
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fgclip.cli import (
    CommandParser,
    entry_point,
    non_negative_int,
    option,
    options_from,
    positive_int,
)
from fgclip.train.config import TinyModel

GEN_COLUMNS = (
    "s100_i2t_r1",
    "s100_i2t_r10",
    "s100_t2i_r1",
    "s100_t2i_r10",
    "full_i2t_r1",
    "full_i2t_r10",
    "full_t2i_r1",
    "full_t2i_r10",
)
IQ_COLUMNS = ("tgir_r10", "tgir_r50")
HEADERS = (
    "model",
    "s100 I->T R@1",
    "R@10",
    "s100 T->I R@1",
    "R@10",
    "full I->T R@1",
    "R@10",
    "full T->I R@1",
    "R@10",
    "TGIR R@10",
    "R@50",
)


@dataclass
class Miniature:
    run_dir: str = option("data, runs and evaluations go here", "runs/fashion_miniature")
    families: int = option("product families to synthesise", 320, type=positive_int)
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)
    views: int = 3
    steps: int = option("retrieval finetuning steps per model", 250, type=positive_int)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 25
    eval_every: int = 50
    tgir_steps: int = option(
        "also finetune each model for text-guided retrieval this many steps (0: off)", 0, type=non_negative_int
    )
    num_queries: int = 1000
    num_negatives: int = 100
    seed: int = option("seed of data, start model and runs", 0)
    progress: bool = option("progress bars (--no_progress: none)", True)
    tiny: TinyModel = field(default_factory=TinyModel)


def _finetune(
    m: Miniature,
    task: str,
    init: Path,
    out: Path,
    data: list[Path],
    val: list[Path],
    steps: int,
    local_pooling: bool | None,
) -> dict:
    from fgclip.fashion.config import FinetuneConfig
    from fgclip.fashion.train import finetune

    config = FinetuneConfig(
        task=task,
        init=str(init),
        data=[str(p) for p in data],
        val=[str(p) for p in val],
        output_dir=str(out),
        local_pooling=local_pooling,
        lr=m.lr,
        weight_decay=m.weight_decay,
        warmup_steps=m.warmup_steps,
        min_lr_ratio=0.0,
        max_steps=steps,
        batch_size=m.batch_size,
        eval_every=m.eval_every,
        seed=m.seed,
        num_workers=0,
        log_every=25,
        progress=m.progress,
    )
    result = finetune(config)
    return {
        "dir": result.best_dir,
        "seconds": result.seconds,
        "best": result.best,
        "first_loss": result.first_loss,
        "last_loss": result.last_loss,
    }


def _evaluate(model_dir: Path, data: Path, out: Path, m: Miniature) -> dict:
    from eval import fashion

    common = ["--model", str(model_dir), "--device", "cpu", "--num_workers", "0", "--no_cache", "--batch_size", "128"]
    gen = fashion.main(
        [
            "--task",
            "fashiongen",
            "--data",
            str(data / "fashiongen" / "test.jsonl"),
            "--mode",
            "both",
            "--num_queries",
            str(m.num_queries),
            "--num_negatives",
            str(m.num_negatives),
            "--seed",
            str(m.seed),
            "--output_dir",
            str(out / "fashiongen"),
            *common,
        ]
    )
    categories = ("dress", "shirt", "toptee")
    iq = fashion.main(
        [
            "--task",
            "fashioniq",
            "--images",
            str(data / "images"),
            "--output_dir",
            str(out / "fashioniq"),
            "--data",
            *[str(data / "captions" / f"cap.{c}.test.json") for c in categories],
            "--gallery",
            *[str(data / "image_splits" / f"split.{c}.test.json") for c in categories],
            *common,
        ]
    )
    prefix = "fusion_" if iq["embeddings"] == ["fusion"] else ""
    row = {key: gen[f"{prefix}{key}"] for key in GEN_COLUMNS}
    row.update(
        tgir_r10=iq[f"{prefix}avg_r10"],
        tgir_r50=iq[f"{prefix}avg_r50"],
        embedding=gen["embeddings"][0],
        composition=iq.get("fusion", {}).get("composition", "sum"),
    )
    row["sizes"] = {
        "images": gen["num_images"],
        "products": gen["num_products"],
        "s100_queries": gen["s100_queries"],
        "s100_mean_negatives": gen["s100_mean_negatives"],
        "tgir_queries": iq["num_queries"],
    }
    return row


def run(m: Miniature) -> dict:
    import torch

    from fgclip import FGCLIPModel
    from fgclip.fashion.synthetic import SyntheticSettings, generate
    from fgclip.folders import save_with_processors

    started = time.time()
    root = Path(m.run_dir)
    data = root / "data"
    manifest = generate(
        data,
        SyntheticSettings(
            families=m.families,
            views=m.views,
            image_size=m.tiny.image_size,
            split_fractions=m.split_fractions,
            seed=m.seed,
        ),
        progress=m.progress,
    )
    torch.manual_seed(m.seed)
    start = root / "start"
    save_with_processors(FGCLIPModel(m.tiny.to_config()), start)
    synthesis_seconds = time.time() - started

    rows = [
        {
            "model": "start (tiny FG-CLIP, untrained)",
            **_evaluate(start, data, root / "eval" / "start", m),
            "train_seconds": 0.0,
        }
    ]
    runs = {}
    for name, local in (("global-only", False), ("global + local", True)):
        key = "global_local" if local else "global"
        runs[name] = _finetune(
            m,
            "retrieval",
            start,
            root / key,
            [data / "fashiongen" / "train.jsonl"],
            [data / "fashiongen" / "val.jsonl"],
            m.steps,
            local,
        )
        rows.append(
            {
                "model": f"{name} (retrieval finetune)",
                **_evaluate(runs[name]["dir"], data, root / "eval" / key, m),
                "train_seconds": runs[name]["seconds"],
                "best_step": runs[name]["best"]["step"],
                "val_score": runs[name]["best"]["score"],
            }
        )
    if m.tgir_steps:
        categories = ("dress", "shirt", "toptee")
        for name, key in (("global-only", "global"), ("global + local", "global_local")):
            tgir = _finetune(
                m,
                "tgir",
                runs[name]["dir"],
                root / f"{key}_tgir",
                [data / "captions" / f"cap.{c}.train.json" for c in categories],
                [data / "captions" / f"cap.{c}.val.json" for c in categories],
                m.tgir_steps,
                None,
            )
            rows.append(
                {
                    "model": f"{name} + TGIR finetune (trained composition)",
                    **_evaluate(tgir["dir"], data, root / "eval" / f"{key}_tgir", m),
                    "train_seconds": tgir["seconds"],
                    "best_step": tgir["best"]["step"],
                    "val_score": tgir["best"]["score"],
                }
            )
    by_name = {row["model"]: row for row in rows}
    local, plain = by_name["global + local (retrieval finetune)"], by_name["global-only (retrieval finetune)"]
    difference = {key: local[key] - plain[key] for key in GEN_COLUMNS + IQ_COLUMNS}
    return {
        "rows": rows,
        "global_local_minus_global": difference,
        "manifest": manifest,
        "synthesis_seconds": round(synthesis_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
        "settings": asdict(m),
    }


def markdown(result: dict) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for row in result["rows"]:
        values = [row[key] for key in GEN_COLUMNS + IQ_COLUMNS]
        lines.append(f"| {row['model']} | " + " | ".join(f"{100 * v:.1f}" for v in values) + " |")
    values = [result["global_local_minus_global"][key] for key in GEN_COLUMNS + IQ_COLUMNS]
    lines.append("| global + local minus global-only | " + " | ".join(f"{100 * v:+.1f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


@dataclass
class ReportOptions:
    output_file: str = option("JSON file to write", "benchmarks/results/fashion_miniature.json", aliases=["out"])


def main(argv=None) -> dict:
    parser = CommandParser(prog="python -m benchmarks.fashion_miniature", description=__doc__)
    parser.add_options(Miniature)
    parser.add_options(ReportOptions)
    args = parser.parse_args(argv)
    miniature, output_file = options_from(args, Miniature), options_from(args, ReportOptions).output_file
    if not miniature.progress:  # the evaluations' bars too, not only training's
        from benchmarks.settings import silence_progress_bars

        silence_progress_bars()

    from benchmarks.default_experiment import machine

    facts = machine()
    result = run(miniature)
    facts["load_average_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds do not depend on what else runs on a shared machine; wall seconds do
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    report = {
        "benchmark": "Fashion-FINE miniature: global-only vs global + local finetuning, held-out test split",
        **result,
        "table": markdown(result),
        "machine": facts,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(output_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(
        "\n" + report["table"] + f"\ntotal {result['total_seconds']:.0f} s ({result['cpu_seconds']:.0f} CPU s) on "
        f"{facts['name']}; written to {out}"
    )
    return report


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
