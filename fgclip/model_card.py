"""Model cards: the `README.md` (YAML metadata + text) that makes a saved folder ready for the Hugging Face Hub.

Every folder `fgclip.folders.save_with_processors` writes gets one, and so do the exports (`export-vision`,
`export-onnx`), whose card says what was exported from which model: what the model is (towers, sizes, FG-CLIP's
long-text and region parts), how it came to be (trained by this project's trainer: init, data, steps, batch,
recipe, losses, final loss; or converted: from what, by which command), the evaluation results recorded for it,
its licence and how to load it. Evaluation results are added later from the eval commands' `results.json` files:

    python -m fgclip.model_card MODEL_DIR --results runs/eval/fgovd/results.json runs/eval/coco5k/results.json

which keeps them in `MODEL_DIR/eval_results.json` and rewrites the card's evaluation table and `model-index`.
The card is rendered with huggingface_hub's `ModelCard` / `ModelCardData` (the Hub's own metadata schema).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fgclip.cli import CommandParser, entry_point, option, options_from
from fgclip.errors import UserError

CARD_FILE = "README.md"
EVAL_RESULTS_FILE = "eval_results.json"
EVAL_START, EVAL_END = "<!-- evaluation:start -->", "<!-- evaluation:end -->"
PAPER = "Xie et al., FG-CLIP: Fine-Grained Visual and Textual Alignment, ICML 2025"
CONVERSIONS = {
    "from-clip": "initialised from the stock CLIP checkpoint `{source}` with `python -m fgclip.convert from-clip`: "
    "CLIP's weights unchanged, the 248-slot long-text position table stretched from the 77-slot one "
    "(slots below 20 kept) and the long-text projection copied from the text projection. Not trained "
    "further: a starting point for FG-CLIP training, not an FG-CLIP model yet.",
    "from-official": "imported from the official FG-CLIP release `{source}` (qihoo360/fg-clip-*) with "
    "`python -m fgclip.convert from-official`: every weight as released, renamed to this "
    "project's layout (the trained long-text tables, long projection and temperatures included).",
    "export-vision": "the image tower of `{source}` exported with `python -m fgclip.convert export-vision` as a stock "
    "`CLIPVisionModel` folder (weights under the `vision_model.` prefix, which transformers 5 and "
    "the 4.37 that the original LLaVA pins both load) with its image processor: a vision tower for "
    "LLaVA-style models. No text tower, no projection.",
    "export-onnx": "`{source}` exported with `python -m fgclip.convert export-onnx` as ONNX graphs (fp32, dynamic "
    "batch and text length): `vision.onnx` (`pixel_values` -> `image_embeds`, `dense`, "
    "`dense_unnormalized`), `text.onnx` (77-token path) and `text_long.onnx` (248-token path), each "
    "`input_ids`, `attention_mask` -> `text_embeds`; all embeddings L2-normalised. Shapes and lengths "
    "are in `onnx_config.json`.",
}
# What each kind of folder is for the Hub: (library_name, pipeline_tag, extra tags).
ARTIFACTS = {
    "fgclip": ("fgclip", "zero-shot-image-classification", []),
    "export-vision": ("transformers", "image-feature-extraction", ["vision-tower", "llava"]),
    "export-onnx": ("onnx", "zero-shot-image-classification", ["onnx"]),
}


# The trainer's --bf16 setting: on, off, or None (auto: bf16 on a GPU that supports it, else fp32).
PRECISIONS = {True: "bf16", False: "fp32", None: "bf16 on a bf16-capable GPU, else fp32 (automatic)"}


@dataclass
class Provenance:
    """How a folder's weights came to be. `how`: 'trained', 'converted' or 'saved' (history unknown)."""

    how: str = "saved"
    source: str | None = None  # converted from / initialised from
    conversion: str | None = None  # a key of CONVERSIONS
    trainer_state: dict = field(default_factory=dict)  # run facts + config, as checkpoints store them
    final_loss: float | None = None
    last_logged_step: int | None = None

    @classmethod
    def converted(cls, source: str | Path, conversion: str) -> Provenance:
        return cls(how="converted", source=str(source), conversion=conversion)

    @classmethod
    def trained(cls, trainer_state: dict, run_dir: str | Path) -> Provenance:
        """From a checkpoint's trainer state and the run's `metrics.jsonl` (its last logged loss)."""
        init = trainer_state.get("config", {}).get("model", {}).get("init")
        provenance = cls(how="trained", source=init, trainer_state=trainer_state)
        metrics = Path(run_dir) / "metrics.jsonl"
        if metrics.is_file():
            lines = [line for line in metrics.read_text().splitlines() if line.strip()]
            if lines:
                last = json.loads(lines[-1])
                provenance.final_loss, provenance.last_logged_step = last.get("loss"), last.get("step")
        return provenance


def _source_license(source: str | None) -> str | None:
    """The licence a source folder's own card declares, if it has one."""
    if source is None or not (Path(source) / CARD_FILE).is_file():
        return None
    from huggingface_hub import ModelCard

    return ModelCard.load(Path(source) / CARD_FILE, ignore_metadata_errors=True).data.license


def _license(provenance: Provenance) -> tuple[str, str]:
    """(YAML licence id, a sentence for the card)."""
    if provenance.how == "trained" and provenance.source == "tiny":
        return "apache-2.0", "Apache-2.0, like fgclip: trained from scratch, no third-party weights."
    inherited = _source_license(provenance.source)
    if inherited and inherited != "unknown":
        return inherited, f"`{inherited}`, as declared by the card of `{provenance.source}` these weights derive from."
    if provenance.source:
        return "unknown", (
            f"Not recorded: the weights derive from `{provenance.source}`, whose licence applies "
            "(OpenAI CLIP: MIT; official FG-CLIP releases: Apache-2.0). fgclip's code is Apache-2.0."
        )
    return "unknown", "Not recorded: this folder does not say where its weights come from."


LEADS = {
    "fgclip": "A fine-grained CLIP dual encoder (FG-CLIP; {paper}) in fgclip's format: transformers' CLIP towers "
    "plus FG-CLIP's long-text and region parts.",
    "export-vision": "The image tower of a fine-grained CLIP dual encoder (FG-CLIP; {paper}) as a stock transformers "
    "`CLIPVisionModel`. The model it was taken from:",
    "export-onnx": "A fine-grained CLIP dual encoder (FG-CLIP; {paper}) as ONNX graphs for onnxruntime and other "
    "ONNX engines. The model:",
}


def _describe_model(model, artifact: str = "fgclip") -> str:
    config, text, vision = model.config, model.config.text_config, model.config.vision_config
    parameters = sum(p.numel() for p in model.parameters())
    return (
        LEADS[artifact].format(paper=PAPER) + "\n\n"
        f"| part | value |\n|---|---|\n"
        f"| image tower | ViT, {vision.image_size} px, {vision.patch_size}-px patches, {vision.num_hidden_layers} "
        f"layers, width {vision.hidden_size} |\n"
        f"| text tower | {text.num_hidden_layers} layers, width {text.hidden_size}, vocabulary {text.vocab_size} |\n"
        f"| text lengths | {config.short_max_position_embeddings} tokens (short path), "
        f"{config.long_max_position_embeddings} tokens (long path, own projection) |\n"
        f"| embedding | {config.projection_dim} dimensions, L2-normalised |\n"
        f"| dense grid | {model.grid_size} x {model.grid_size} patch embeddings (value-path last block); region "
        f"embeddings by RoIAlign 1x1 |\n"
        f"| parameters | {parameters / 1e6:.2f} M |\n"
    )


def _settings_table(provenance: Provenance, rows: list[tuple[str, str]], intro: str) -> str:
    """`intro`, then the table of the run's settings: `rows`, closed by the last logged loss."""
    rows = [
        *rows,
        (
            "last logged loss",
            f"{provenance.final_loss:.4f} (step {provenance.last_logged_step})"
            if provenance.final_loss is not None
            else "not logged",
        ),
    ]
    return f"{intro}\n\n| setting | value |\n|---|---|\n" + "".join(f"| {name} | {value} |\n" for name, value in rows)


def _describe_training(provenance: Provenance) -> str:
    state = provenance.trainer_state
    config = state.get("config", {})
    optim, data, loss = config.get("optim", {}), config.get("data", {}), config.get("loss", {})
    stage = state.get("stage", config.get("stage"))
    world, batch, accum = (
        state.get("world_size", 1),
        state.get("batch_size", config.get("batch_size")),
        state.get("grad_accum", config.get("grad_accum", 1)),
    )
    global_batch = batch * world * accum if batch else None
    # Stage 1 trains the global losses only (fgclip.train.config.stage_loss_weights).
    weights = {"long caption": loss.get("long"), "short caption": loss.get("short")}
    if stage == 2:
        weights.update({"regional": loss.get("region"), "hard negatives": loss.get("hard")})
    losses = ", ".join(f"{name} x{value}" for name, value in weights.items() if value)
    init = provenance.source
    objective = "global contrastive, long + short captions" if stage == 1 else "global + regional + hard-negative"
    paths = ", ".join(f"`{path}`" for path in data.get("paths", []))
    rows = [
        ("stage", f"{stage} ({objective})"),
        ("init", "a tiny model built from scratch (`--init tiny`)" if init == "tiny" else f"`{init}`"),
        ("data", f"{paths} ({state.get('num_samples', '?')} samples)"),
        ("steps", f"{state.get('step')} optimizer steps (planned {state.get('total_steps')})"),
        ("batch", f"{batch} per device x {world} processes x {accum} accumulation = {global_batch}"),
        (
            "optimizer",
            f"AdamW, lr {optim.get('lr')}, weight decay {optim.get('weight_decay')}, betas "
            f"{optim.get('betas')}, {optim.get('warmup_steps')} warm-up steps, cosine decay to "
            f"{optim.get('min_lr_ratio')} x lr, gradient clip {optim.get('grad_clip')}",
        ),
        ("losses", f"InfoNCE: {losses}"),
        ("precision / engine", f"{PRECISIONS[config.get('bf16')]} / {state.get('engine')}"),
        ("seed", str(state.get("seed", config.get("seed")))),
    ]
    return _settings_table(
        provenance,
        rows,
        "Trained with fgclip's two-stage FG-CLIP trainer (`scripts/pretrain_fgclip.py`); the full configuration "
        "is in the run folder's `train_config.json`.",
    )


def _describe_fashion_finetuning(provenance: Provenance) -> str:
    """The origin of a Fashion-FINE folder (`scripts/finetune_fashion.py`, run facts as its checkpoints store them)."""
    state = provenance.trainer_state
    config = state.get("config", {})
    optim, loss, model = config.get("optim", {}), config.get("loss", {}), config.get("model", {})
    world, batch, accum = state.get("world_size", 1), state.get("batch_size"), state.get("grad_accum", 1)
    validation = ", ".join(f"`{p}`" for p in config.get("val", [])) or (
        f"{config.get('val_fraction', 0):.1%} of the training data held out" if config.get("val_fraction") else "none"
    )
    rows = [
        ("task", f"{config.get('task')} (Fashion-FINE)"),
        ("init", f"`{provenance.source}`"),
        ("data", f"{', '.join(f'`{p}`' for p in config.get('data', []))} ({state.get('num_samples', '?')} samples)"),
        ("validation (model selection)", validation),
        ("steps", f"{state.get('step')} optimizer steps (planned {state.get('total_steps')})"),
        ("batch", f"{batch} per device x {world} processes x {accum} accumulation"),
        (
            "optimizer",
            f"AdamW, lr {optim.get('lr')}, weight decay {optim.get('weight_decay')}, cosine decay to "
            f"{optim.get('min_lr_ratio')} x lr",
        ),
        (
            "losses",
            f"contrastive x{loss.get('contrastive_weight')} (focal gamma {loss.get('focal_gamma')}, alpha "
            f"{loss.get('focal_alpha')}), matching x{loss.get('matching_weight')}",
        ),
        ("local pooling", "off (global only)" if model.get("local_pooling") is False else "on"),
        ("precision / engine", f"{PRECISIONS[config.get('bf16')]} / {state.get('engine')}"),
        ("seed", str(config.get("seed"))),
    ]
    return _settings_table(
        provenance,
        rows,
        "Finetuned with fgclip's Fashion-FINE finetuning (`scripts/finetune_fashion.py`): global + local "
        "embeddings, an image-text matching head and a text-guided composition on the towers; the full "
        "configuration is in the run folder's `finetune_config.json`.",
    )


def _describe_origin(provenance: Provenance) -> str:
    if provenance.how == "trained" and str(provenance.trainer_state.get("stage", "")).startswith("fashion-"):
        return _describe_fashion_finetuning(provenance)
    if provenance.how == "trained":
        return _describe_training(provenance)
    if provenance.how == "converted":
        return "Converted, " + CONVERSIONS[provenance.conversion].format(source=provenance.source)
    return "Saved with fgclip (`fgclip.folders.save_with_processors`); where its weights come from was not recorded."


def _evaluation_section(results: dict) -> str:
    if not results:
        body = (
            "No evaluation recorded yet. Add results with `python -m fgclip.model_card MODEL_DIR --results "
            "runs/eval/NAME/results.json`."
        )
    else:
        lines = ["| benchmark | data | metric | value |", "|---|---|---|---|"]
        for entry in results.values():
            for metric, value in entry["metrics"].items():
                lines.append(f"| {entry['benchmark']} | `{entry['data']}` | {metric} | {value:.4f} |")
        body = "\n".join(lines)
    return f"{EVAL_START}\n{body}\n{EVAL_END}"


def _card_data(model_name: str, license_id: str, results: dict, artifact: str = "fgclip"):
    from huggingface_hub import EvalResult, ModelCardData

    library, pipeline, extra_tags = ARTIFACTS[artifact]
    evals = [
        EvalResult(
            task_type="zero-shot-image-classification",
            dataset_type=entry["benchmark"],
            dataset_name=f"{entry['benchmark']} ({entry['data']})",
            metric_type=metric,
            metric_value=round(value, 6),
        )
        for entry in results.values()
        for metric, value in entry["metrics"].items()
    ]
    return ModelCardData(
        license=license_id,
        library_name=library,
        pipeline_tag=pipeline,
        tags=["fgclip", "fg-clip", "clip", "fine-grained", "vision-language", *extra_tags],
        model_name=model_name,
        eval_results=evals or None,
    )


def _load_section(name: str, artifact: str, fashion_fine: bool = False) -> str:
    if fashion_fine:  # a Fashion-FINE folder (scripts/finetune_fashion.py): its own class and retrieval embeddings
        return (
            "```python\n"
            "from fgclip import FashionFINEModel  # also registers Fashion-FINE with transformers' Auto classes\n"
            "from PIL import Image\n"
            "from transformers import AutoModel, AutoProcessor\n\n"
            f'model = AutoModel.from_pretrained("{name}")  # an fgclip FashionFINEModel\n'
            f'processor = AutoProcessor.from_pretrained("{name}")  # CLIPProcessor: tokenizer + image processor\n'
            'image = Image.open("photo.jpg")\n'
            'inputs = processor(text=["a red striped shirt"], images=image, return_tensors="pt", padding=True)\n'
            'image_embeds = model.encode_image_fused(inputs["pixel_values"])  # (B, D) global + local, L2-normalised\n'
            'text_embeds = model.encode_text_fused(inputs["input_ids"], inputs["attention_mask"])\n'
            "```\n\nThe towers' global embeddings: `model.encode_image`, `model.encode_text`; text-guided queries: "
            "`model.compose(reference_pixels, input_ids, attention_mask)`; `python -m eval.fashion` on this folder "
            "uses its trained pooling."
        )
    if artifact == "export-vision":
        return (
            "```python\nfrom transformers import CLIPImageProcessor, CLIPVisionModel  # no fgclip needed\n\n"
            f'tower = CLIPVisionModel.from_pretrained("{name}")\n'
            f'processor = CLIPImageProcessor.from_pretrained("{name}")  # square resize, CLIP normalisation\n'
            "```\n\nFor LLaVA: `python -m lmm_integration.build --vision THIS_FOLDER --llm LLM_DIR --out DIR`, or "
            "`--vision_tower` of the original LLaVA code."
        )
    if artifact == "export-onnx":
        return (
            "```python\nimport onnxruntime as ort\nfrom transformers import CLIPImageProcessor, CLIPTokenizer\n\n"
            f'vision = ort.InferenceSession("{name}/vision.onnx")\n'
            f'text = ort.InferenceSession("{name}/text.onnx")\n'
            f'processor = CLIPImageProcessor.from_pretrained("{name}")\n'
            f'tokenizer = CLIPTokenizer.from_pretrained("{name}")\n'
            "```\n\nRegion embeddings: RoIAlign 1x1 of `dense_unnormalized` (numpy example in fgclip's README)."
        )
    return (
        "```python\n"
        "from fgclip import FGCLIPModel  # also registers FG-CLIP with transformers' Auto classes\n"
        "from PIL import Image\n"
        "from transformers import AutoModel, AutoProcessor\n\n"
        f'model = AutoModel.from_pretrained("{name}")  # an fgclip.FGCLIPModel\n'
        f'processor = AutoProcessor.from_pretrained("{name}")  # CLIPProcessor: tokenizer + image processor\n'
        'image = Image.open("photo.jpg")\n'
        'inputs = processor(text=["a red umbrella"], images=image, return_tensors="pt", padding=True)\n'
        'image_embeds = model.encode_image(inputs["pixel_values"])  # (B, D), L2-normalised\n'
        "# the 77-token path; long=True for the 248-token one (tokenize with max_length=248)\n"
        'text_embeds = model.encode_text(inputs["input_ids"], inputs["attention_mask"])\n'
        "```\n\n(Or the Hub id this folder is pushed to.) Dense and region features: `model.encode_dense(pixels)`, "
        "`model.encode_regions(pixels, boxes)`. ONNX: `python -m fgclip.convert export-onnx` on this folder."
    )


def _read_results(directory: Path) -> dict:
    path = directory / EVAL_RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _artifact(provenance: Provenance) -> str:
    return provenance.conversion if provenance.conversion in ("export-vision", "export-onnx") else "fgclip"


def render_model_card(model, directory: str | Path, provenance: Provenance | None = None) -> str:
    """The card's text for `model` saved (or exported) in `directory`. Results: the folder's own
    `eval_results.json`; an export shows those recorded for its source (the same weights)."""
    from huggingface_hub import ModelCard

    directory = Path(directory)
    # a trainer writes `final/` as `final.partial/` and renames it into place (fgclip.train.runner.export_folder)
    directory = directory.with_name(directory.name.removesuffix(".partial"))
    provenance = provenance or Provenance()
    artifact = _artifact(provenance)
    license_id, license_text = _license(provenance)
    exported = artifact != "fgclip" and provenance.source is not None
    results = _read_results(Path(provenance.source) if exported else directory)
    name = (
        directory.resolve().name if directory.resolve().name != "final" else f"{directory.resolve().parent.name}-final"
    )
    evaluation = _evaluation_section(results)
    if exported and results:
        evaluation = f"Recorded for `{provenance.source}`, whose weights these are:\n\n{evaluation}"
    text = "\n\n".join(
        [
            f"# {name}",
            _describe_model(model, artifact),
            "## How it was made",
            _describe_origin(provenance),
            "## Evaluation",
            evaluation,
            "## License",
            license_text,
            "## How to load",
            _load_section(str(directory), artifact, model.config.model_type == "fashion_fine"),
        ]
    )
    return str(ModelCard(f"---\n{_card_data(name, license_id, results, artifact).to_yaml()}\n---\n\n{text}\n"))


def write_model_card(model, directory: str | Path, provenance: Provenance | None = None) -> Path:
    """Write `directory/README.md` and name `CLIPProcessor` in the tokenizer config, so that `AutoProcessor`
    loads the folder's tokenizer and image processor together even without `import fgclip`."""
    directory = Path(directory)
    tokenizer_config = directory / "tokenizer_config.json"
    if tokenizer_config.is_file():
        values = json.loads(tokenizer_config.read_text())
        values["processor_class"] = "CLIPProcessor"
        tokenizer_config.write_text(json.dumps(values, indent=2) + "\n")
    path = directory / CARD_FILE
    path.write_text(render_model_card(model, directory, provenance))
    return path


def _results_entry(path: Path) -> tuple[str, dict]:
    try:
        result = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"--results {path}: not a readable JSON file ({error})") from error
    if not isinstance(result, dict) or "benchmark" not in result:
        raise UserError(f"--results {path}: not an fgclip evaluation results.json (no 'benchmark')")
    metrics = {name: float(value) for name, value in result.items() if isinstance(value, float) and name != "seconds"}
    if not metrics:
        raise UserError(f"--results {path}: holds no metric values")
    data = result.get("data", "")
    data = ", ".join(data) if isinstance(data, list) else str(data)
    return f"{result['benchmark']}|{data}", {
        "benchmark": result["benchmark"],
        "data": data,
        "metrics": metrics,
        "date": result.get("date"),
        "complete": result.get("complete"),
    }


def record_evaluation(directory: str | Path, results_files: Sequence[str | Path]) -> dict:
    """Add eval commands' results to `directory/eval_results.json` and rewrite the card's evaluation table
    and `model-index` (the rest of the card is kept as it is). Returns all recorded results."""
    from huggingface_hub import ModelCard

    directory = Path(directory)
    card_path = directory / CARD_FILE
    if not card_path.is_file():
        raise UserError(f"{directory} has no {CARD_FILE}: save it with fgclip (or run a conversion) first")
    results = _read_results(directory)
    results.update(_results_entry(Path(path)) for path in results_files)
    (directory / EVAL_RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    card = ModelCard.load(card_path, ignore_metadata_errors=True)
    start, end = card.text.find(EVAL_START), card.text.find(EVAL_END)
    if start < 0 or end < 0:
        raise UserError(f"{card_path} has no evaluation section written by fgclip")
    text = card.text[:start] + _evaluation_section(results) + card.text[end + len(EVAL_END) :]
    libraries = {library: name for name, (library, _, _) in ARTIFACTS.items()}
    artifact = libraries.get(card.data.library_name, "fgclip")
    data = _card_data(card.data.model_name or directory.name, card.data.license or "unknown", results, artifact)
    card_path.write_text(str(ModelCard(f"---\n{data.to_yaml()}\n---\n{text}")))
    return results


@dataclass
class RecordOptions:
    model: Path = option("a model folder with a card (training's final/, a converted folder)", positional=True)
    results: list[Path] = option("results.json files written by the eval commands (eval.fgovd, eval.retrieval, ...)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = CommandParser(prog="python -m fgclip.model_card", description=__doc__)
    parser.add_options(RecordOptions)
    options = options_from(parser.parse_args(argv), RecordOptions)
    results = record_evaluation(options.model, options.results)
    print(f"{len(results)} evaluation result(s) recorded in {options.model / CARD_FILE}")
    return 0


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
