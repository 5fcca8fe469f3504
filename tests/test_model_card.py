"""Hub-ready folders: the model card of converted and trained folders, evaluation results recorded into it,
AutoProcessor / CLIPProcessor loading, and transformers' own loading without load-report warnings."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image
from transformers import (
    AutoModel,
    AutoProcessor,
    CLIPImageProcessor,
    CLIPProcessor,
    CLIPTokenizer,
)

from fgclip import FGCLIPModel
from fgclip.cli import run
from fgclip.convert import main as convert_main
from fgclip.data.synthetic import generate
from fgclip.folders import save_with_processors
from fgclip.model_card import EVAL_RESULTS_FILE
from fgclip.model_card import main as card_main
from fgclip.train.loop import train
from tests.conftest import save_tiny_fgclip
from tests.hub_copies.clip import make_hub_copy
from tests.train.conftest import read_metrics, small_config


@contextlib.contextmanager
def transformers_warnings():
    """Records of transformers' logger at WARNING and above (it does not propagate to the root logger, so
    pytest's caplog misses its load report)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _card(folder: Path) -> ModelCard:
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "fgclip" and card.data.pipeline_tag == "zero-shot-image-classification"
    return card


def test_converted_from_clip_card_says_what_and_how(tmp_path):
    source = make_hub_copy("openai/clip-vit-base-patch16", tmp_path / "clip-vit-base-patch16")
    # The Hub copy has no card (tests/hub_copies does not reproduce them); give it one with a licence.
    (source / "README.md").write_text("---\nlicense: mit\ntags:\n- vision\n---\n\n# CLIP\n")
    assert run(convert_main, ["from-clip", str(source), str(tmp_path / "init")]) == 0
    card = _card(tmp_path / "init")
    assert card.data.license == "mit"  # inherited from the source's own card
    text = card.text
    assert "fgclip.convert from-clip" in text and str(source) in text and "stretched" in text
    assert "| text lengths | 77 tokens (short path), 248 tokens" in text and "14 x 14 patch" in text
    assert "No evaluation recorded yet" in text and "AutoModel.from_pretrained" in text


def test_official_import_card_and_unknown_licence(tmp_path):
    make_hub_copy("qihoo360/fg-clip-base", tmp_path / "fg-clip-base")
    assert run(convert_main, ["from-official", str(tmp_path / "fg-clip-base"), str(tmp_path / "ours")]) == 0
    card = _card(tmp_path / "ours")
    assert card.data.license == "unknown"
    assert "official FG-CLIP release" in card.text and "fg-clip-base" in card.text and "Apache-2.0" in card.text


@pytest.fixture(scope="module")
def trained_final(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("card_run")
    generate(root / "data", 20, seed=3, image_size=32, heldout_fraction=0.2, progress=False)
    save_tiny_fgclip(root / "init")
    config = small_config(root / "data" / "train.jsonl", root / "init", root / "run", stage=2, max_steps=3, log_every=1)
    return train(config).final_dir, root


def test_trained_final_card_records_init_data_steps_recipe_losses(trained_final):
    final, root = trained_final
    card = _card(final)
    assert card.data.model_name == "run-final"
    text = card.text
    assert "| stage | 2 (global + regional + hard-negative) |" in text
    assert f"| init | `{root / 'init'}` |" in text
    assert str(root / "data" / "train.jsonl") in text
    assert "| steps | 3 optimizer steps (planned 3) |" in text
    assert "| batch | 4 per device x 1 processes x 1 accumulation = 4 |" in text
    assert "AdamW, lr 0.001, weight decay 0.01" in text and "2 warm-up steps" in text
    assert re.search(
        r"\| losses \| InfoNCE: long caption x[\d.]+, short caption x[\d.]+, regional x[\d.]+, "
        r"hard negatives x[\d.]+ \|",
        text,
    )
    last = read_metrics(root / "run")[-1]
    assert f"| last logged loss | {last['loss']:.4f} (step 3) |" in text
    assert "| seed | 11 |" in text
    # The init folder's card records no licence ("unknown"), so none is claimed; the card says where to look.
    assert card.data.license == "unknown" and f"derive from `{root / 'init'}`, whose licence applies" in text


def test_recorded_evaluation_goes_into_table_and_model_index(trained_final, tmp_path, capsys):
    final, _ = trained_final
    results = tmp_path / "results.json"
    results.write_text(
        json.dumps(
            {
                "benchmark": "fgovd",
                "top1": 0.4375,
                "num_regions": 16,
                "complete": True,
                "model": str(final),
                "data": ["heldout.jsonl"],
                "counts": {"regions": 16},
                "seconds": 1.5,
                "date": "2026-11-24 10:00:00",
            }
        )
    )
    assert run(card_main, [str(final), "--results", str(results)]) == 0
    card = _card(final)
    assert "| fgovd | `heldout.jsonl` | top1 | 0.4375 |" in card.text and "No evaluation recorded" not in card.text
    (result,) = card.data.eval_results
    assert (result.metric_type, result.metric_value, result.dataset_type) == ("top1", 0.4375, "fgovd")
    assert "| stage | 2" in card.text  # the rest of the card is kept
    assert json.loads((final / EVAL_RESULTS_FILE).read_text())["fgovd|heldout.jsonl"]["metrics"] == {"top1": 0.4375}
    (tmp_path / "bad.json").write_text("[]")
    assert run(card_main, [str(final), "--results", str(tmp_path / "bad.json")]) == 2
    assert "not an fgclip evaluation results.json" in capsys.readouterr().err


def test_processors_and_transformers_loading_without_warnings(trained_final, tmp_path, monkeypatch):
    final, _ = trained_final
    assert json.loads((final / "tokenizer_config.json").read_text())["processor_class"] == "CLIPProcessor"
    for loader in (AutoProcessor, CLIPProcessor):
        processor = loader.from_pretrained(final)
        assert isinstance(processor, CLIPProcessor)
        assert isinstance(processor.tokenizer, CLIPTokenizer)
        assert isinstance(processor.image_processor, CLIPImageProcessor)
        assert processor.image_processor.size == {"height": 32, "width": 32}
        assert processor.tokenizer("a cat")["input_ids"] == [49406, 320, 2368, 49407]
    with warnings.catch_warnings(record=True) as caught, transformers_warnings() as logged:
        warnings.simplefilter("always")
        model = AutoModel.from_pretrained(final)
    assert isinstance(model, FGCLIPModel)
    assert not logged, [record.getMessage() for record in logged]
    assert not [w for w in caught if "transformers" in str(w.filename)], [str(w.message) for w in caught]
    # The card's own loading snippet runs as written.
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    snippet = re.search(r"```python\n(.*?)```", ModelCard.load(final / "README.md").text, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(snippet, "model card", "exec"), namespace)
    assert namespace["image_embeds"].shape == (1, 16) and namespace["text_embeds"].shape == (1, 16)


def test_load_report_is_seen_by_the_check_above(trained_final, tmp_path):
    """The control: a folder with a missing and an unexpected weight does produce the warnings checked above."""
    from safetensors.torch import load_file, save_file

    final, _ = trained_final
    broken = tmp_path / "broken"
    save_with_processors(FGCLIPModel.from_pretrained(final), broken)
    state = load_file(str(broken / "model.safetensors"))
    state["extra.weight"] = state.pop("logit_scale_hard")
    save_file(state, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with transformers_warnings() as logged:
        AutoModel.from_pretrained(broken)
    report = "\n".join(record.getMessage() for record in logged)
    assert "logit_scale_hard" in report and "extra.weight" in report


def test_exports_carry_cards_with_the_source_results(tmp_path):
    source = tmp_path / "fgclip-tiny"
    save_tiny_fgclip(source)
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"benchmark": "retrieval", "i2t_r1": 0.25, "data": "coco.json", "seconds": 2.0}))
    assert run(card_main, [str(source), "--results", str(results)]) == 0
    assert run(convert_main, ["export-vision", str(source), str(tmp_path / "tower")]) == 0
    card = ModelCard.load(tmp_path / "tower" / "README.md")
    assert card.data.library_name == "transformers" and "vision-tower" in card.data.tags
    assert "fgclip.convert export-vision" in card.text and "CLIPVisionModel.from_pretrained" in card.text
    assert f"Recorded for `{source}`" in card.text and "| retrieval | `coco.json` | i2t_r1 | 0.2500 |" in card.text
