"""The whole LLaVA path on CPU with tiny models: build -> stage A -> stage B (ZeRO-2) -> held-out answers.

    python -m benchmarks.llava_miniature --vision runs/fgclip_tiny/final [runs/clip_tiny/final ...] \\
        --output_dir runs/llava_mini

For each vision encoder folder (e.g. the tiny FG-CLIP the embedded default of scripts/pretrain_fgclip.py
trains, and a baseline), on the same synthetic scenes and the same tiny Llama LM:
1. synthetic scenes (fgclip.data.synthetic; or --scenes an existing set) -> captions for stage A,
   multi-turn attribute / yes-no / "where is" conversations for stage B, held-out questions;
2. a word-level tokenizer trained on those texts and a random tiny Llama (benchmarks.llava_miniature.tiny_lm);
3. `lmm_integration.build`, then stages A and B with scripts/finetune_llava.sh: the `deepspeed` launcher,
   scripts/zero2_llava.json, 2 processes (gloo on CPU);
4. held-out questions answered with the evaluation runner (eval.lmm.generation, stock loaders) and
   scored per kind against chance. OUT/results.json, results.md and results.png compare the encoders.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from fgclip.cli import CommandParser, entry_point, option, options_from, positive_float, positive_int
from fgclip.errors import UserError
from fgclip.outputs import prepare_output_dir
from fgclip.runtime import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ZERO2 = REPO_ROOT / "lmm_integration" / "zero2_llava.json"  # package data; scripts/zero2_llava.json links to it
FINETUNE_SCRIPT = REPO_ROOT / "scripts" / "finetune_llava.sh"
OWN_ENTRIES = ("scenes", "data", "llm", "results.json", "results.md", "results.png")  # and one folder per label


@dataclass
class MiniatureOptions:
    vision: list[str] = option("vision encoder folders to compare (FG-CLIP, CLIP or tower)")
    output_dir: str = option("output folder (scenes, data, tiny LM, one folder per encoder, results)", aliases=["out"])
    scenes: str | None = option(
        "an existing fgclip.data.synthetic set (default: generate one in OUTPUT_DIR/scenes)", None
    )
    num_images: int = option("synthetic images to generate (20%% held out)", 3000, type=positive_int)
    image_size: int = option("synthetic image side in pixels", 64, type=positive_int)
    seed: int = option("seed of scenes, questions, LM and training", 0)
    llm_hidden: int = option("hidden size of the tiny Llama", 128, type=positive_int)
    llm_layers: int = option("layers of the tiny Llama", 2, type=positive_int)
    steps_a: int = option("stage A optimizer steps", 150, type=positive_int)
    steps_b: int = option("stage B optimizer steps", 900, type=positive_int)
    batch_size: int = option("per-process batch size", 16, type=positive_int)
    lr_a: float = option("stage A learning rate", 1e-3, type=positive_float)
    lr_b: float = option(
        "stage B learning rate (higher than LLaVA's: the tiny LM starts from random)", 1e-3, type=positive_float
    )
    processes: int = option("processes per stage for the deepspeed launcher", 2, type=positive_int)
    deepspeed_config: str = option("DeepSpeed config of both stages", str(DEFAULT_ZERO2))
    max_heldout: int = option("held-out questions to answer", 400, type=positive_int)
    labels: list[str] = option("a name per --vision folder (default: folder names)", default_factory=list, name="label")
    overwrite: bool = option(
        "write into an OUTPUT_DIR holding other files, and train again the stages whose runs in "
        "OUTPUT_DIR used other settings (a re-run with the same settings continues without it)",
        False,
    )


def _run(command: list[str], log: Path, threads: int | None = None) -> None:
    """Run a command as its own process (as a user would), its output going to `log`."""
    print("+ " + " ".join(command), flush=True)
    environment = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO_ROOT)}
    if threads and "OMP_NUM_THREADS" not in os.environ:
        environment["OMP_NUM_THREADS"] = str(threads)  # one core's worth per process: no oversubscription
    with log.open("w") as handle:
        process = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=environment, cwd=REPO_ROOT)
    if process.returncode != 0:
        tail = log.read_text().splitlines()[-15:]
        raise UserError(f"{' '.join(command[:2])} failed (exit {process.returncode}); see {log}:\n" + "\n".join(tail))


def prepare_data(options: MiniatureOptions, out: Path):
    """Scenes, conversations, held-out questions and the tiny LM (shared by every encoder)."""
    from benchmarks.llava_miniature.questions import Vocabulary, write_miniature_data
    from benchmarks.llava_miniature.tiny_lm import build_tiny_llm
    from fgclip.data.schema import Record, iter_record_file

    if options.scenes:
        root = Path(options.scenes)
        train_file, heldout_file = root / "train.jsonl", root / "heldout.jsonl"
        if not train_file.is_file() or not heldout_file.is_file():
            raise UserError(f"{root} is not a synthetic set (needs train.jsonl and heldout.jsonl)")
    else:
        from fgclip.data.synthetic import generate

        scenes = generate(out / "scenes", options.num_images, seed=options.seed, image_size=options.image_size)
        root, train_file, heldout_file = scenes.root, scenes.train, scenes.heldout

    def records(path: Path) -> list[Record]:
        return [item for item in iter_record_file(path) if isinstance(item, Record)]

    data = write_miniature_data(
        records(train_file), records(heldout_file), root, out / "data", Vocabulary.of_set(root), seed=options.seed
    )
    llm = out / "llm"
    if not (llm / "config.json").is_file():
        build_tiny_llm(
            llm, data.texts, hidden_size=options.llm_hidden, num_layers=options.llm_layers, seed=options.seed
        )
    return root, data, llm


def train_one(vision: str, label: str, llm: Path, data, options: MiniatureOptions, out: Path) -> Path:
    """build, then stages A and B through scripts/finetune_llava.sh (deepspeed, ZeRO-2); returns the final model."""
    from lmm_integration.build import BuildOptions, build_llava

    work = out / label
    work.mkdir(parents=True, exist_ok=True)
    built = build_llava(vision, llm, work / "built", BuildOptions(system_prompt="", seed=options.seed))
    settings = {
        "BUILT": built,
        "OUT": work,
        "PRETRAIN_DATA": data.stage_a,
        "FINETUNE_DATA": data.stage_b,
        "NUM_GPUS": options.processes,
        "MASTER_PORT": free_port(),
        "DS_CONFIG": options.deepspeed_config,
        "BATCH_A": options.batch_size,
        "BATCH_B": options.batch_size,
        "LR_A": options.lr_a,
        "LR_B": options.lr_b,
        "MAX_STEPS_A": options.steps_a,
        "MAX_STEPS_B": options.steps_b,
        "MAX_LEN": 512,
        "NUM_WORKERS": 0,
        "BF16": 0,
        "GRAD_CKPT": 0,
        "SEED": options.seed,
        "EXTRA_ARGS": "--logging_steps 25 --warmup_ratio 0.03",
        "OVERWRITE": int(options.overwrite),
    }
    _run(
        ["bash", str(FINETUNE_SCRIPT), *(f"{key}={value}" for key, value in settings.items())],
        work / "finetune.log",
        threads=max(1, (os.cpu_count() or 1) // options.processes),
    )
    return work / "stage_b" / "final"


def evaluate(model_dir: Path, data, root: Path, options: MiniatureOptions, out: Path) -> dict:
    """Answer the held-out questions with the evaluation runner and score them."""
    from benchmarks.llava_miniature.questions import Question, Vocabulary
    from benchmarks.llava_miniature.score import chance_levels, constant_box_hit_rate, score
    from eval.lmm.generation import PromptItem, answer_all
    from fgclip.llava.generation import load_lmm
    from fgclip.llava.settings import GenerationSettings

    questions = [Question(**json.loads(line)) for line in data.heldout.read_text().splitlines()][: options.max_heldout]
    settings = GenerationSettings(batch_size=16, max_new_tokens=24, device="cpu", dtype="float32")
    lmm = load_lmm(model_dir, settings)
    items = [PromptItem(q.question_id, Path(q.image), q.question) for q in questions]
    summary = answer_all(
        lmm, items, out / "answers.jsonl", settings, description=f"held-out {model_dir.parent.parent.name}"
    )
    sizes = {q.image: Image.open(q.image).size for q in questions}
    train_boxes = [json.loads(line) for line in (data.stage_b.parent / "train_boxes.json").read_text().splitlines()]
    vocabulary = Vocabulary.of_set(root)
    return score(
        questions,
        summary.answers,
        vocabulary,
        sizes,
        chance_levels(vocabulary, constant_box_hit_rate(questions, train_boxes)),
    )


def _labels(options: MiniatureOptions) -> list[str]:
    if options.labels:
        if len(options.labels) != len(options.vision):
            raise UserError("give one --label per --vision folder")
        return options.labels
    names = [
        Path(vision).name if Path(vision).name not in ("final", "") else Path(vision).parent.name
        for vision in options.vision
    ]
    return [f"{index}_{name}" if names.count(name) > 1 else name for index, name in enumerate(names)]


def run(options: MiniatureOptions) -> dict:
    from eval.common.reporting import grouped_bar_plot, markdown_table, write_results

    started = time.time()
    for vision in options.vision:
        if not (Path(vision) / "config.json").is_file():
            raise UserError(f"vision folder not found or has no config.json: {vision}")
    labels = _labels(options)
    # a re-run into the same OUT continues (finished stages are kept); other files there need --overwrite
    out = prepare_output_dir(
        options.output_dir,
        inputs=[*options.vision, options.scenes],
        overwrite=options.overwrite,
        owned=lambda entry: entry.name in {*OWN_ENTRIES, *labels},
        what="other files",
    )
    root, data, llm = prepare_data(options, out)
    _write_train_boxes(data)
    results = {}
    for vision, label in zip(options.vision, labels):
        model_dir = train_one(vision, label, llm, data, options, out)
        results[label] = evaluate(model_dir, data, root, options, out / label)
        print(
            f"{label}: held-out accuracy {results[label]['accuracy']:.3f} (chance {results[label]['chance']:.3f}); "
            + ", ".join(f"{k} {v:.3f}" for k, v in results[label]["per_kind"].items()),
            flush=True,
        )
    first = next(iter(results.values()))
    kinds = list(first["per_kind"])
    rows = [[label, r["accuracy"], *(r["per_kind"].get(k, 0.0) for k in kinds)] for label, r in results.items()]
    rows.append(["chance", first["chance"], *(first["chance_per_kind"][k] for k in kinds)])
    table = markdown_table(["encoder", "all", *kinds], rows)
    grouped_bar_plot(
        out / "results.png",
        {label: {"all": r["accuracy"], **r["per_kind"]} for label, r in results.items()}
        | {"chance": {"all": first["chance"], **first["chance_per_kind"]}},
        "LLaVA miniature: held-out accuracy",
        "accuracy",
    )
    return write_results(
        out,
        "lmm_miniature",
        {"encoders": results},
        model=", ".join(options.vision),
        data=str(root),
        counts={
            "heldout_questions": sum(first["questions_per_kind"].values()),
            "scored_questions": sum(first["questions_per_kind"].values()),
        },
        started=started,
        table=table,
        extra={"options": asdict(options)},
    )


def _write_train_boxes(data) -> None:
    """The training answers' boxes (original frame), for the constant-box baseline."""
    boxes = []
    for line in data.stage_b.read_text().splitlines():
        for turn in json.loads(line)["conversations"]:
            if turn["from"] == "gpt" and turn["value"].startswith("["):
                boxes.append(json.loads(turn["value"]))
    (data.stage_b.parent / "train_boxes.json").write_text("".join(json.dumps(box) + "\n" for box in boxes))


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m benchmarks.llava_miniature", description=__doc__)
    parser.add_options(MiniatureOptions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    result = run(options_from(build_parser().parse_args(argv), MiniatureOptions))
    print(
        json.dumps(
            {label: {"accuracy": r["accuracy"], "chance": r["chance"]} for label, r in result["encoders"].items()}
        )
    )
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])
