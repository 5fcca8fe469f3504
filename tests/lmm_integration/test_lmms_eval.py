"""lmms-eval's `llava_hf` model on folders `lmm_integration.build` and the finetune stages wrote: its answers
equal stock transformers' greedy `generate` on the same prompts and images. lmms-eval runs in its own cached
virtual environment, so that its pins (protobuf < 7, ...) never touch the project's; the README's command
(with a local task instead of a Hub data set) is the one run here."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration

from tests.lmm_integration.conftest import COLOURS, QUESTION, stage_argv
from tests.overlay_venv import overlay_venv

LMMS_EVAL = "lmms-eval[video-legacy]==0.7.3"  # video-legacy: decord, which its llava_hf module imports
MAX_NEW_TOKENS = 6
TASK = "fgclip_colours"
TASK_YAML = textwrap.dedent("""
    task: {task}
    dataset_path: json
    dataset_kwargs:
      data_files:
        test: {questions}
    test_split: test
    output_type: generate_until
    doc_to_visual: !function utils.doc_to_visual
    doc_to_text: !function utils.doc_to_text
    doc_to_target: answer
    generation_kwargs:
      max_new_tokens: {max_new_tokens}
      temperature: 0
      do_sample: false
    process_results: !function utils.process_results
    metric_list:
      - metric: exact_match
        aggregation: mean
        higher_is_better: true
""")
TASK_UTILS = textwrap.dedent("""
    from PIL import Image


    def doc_to_visual(doc):
        return [Image.open(doc["image"]).convert("RGB")]


    def doc_to_text(doc, lmms_eval_specific_kwargs=None):
        return doc["question"]


    def process_results(doc, results):
        return {"exact_match": float(results[0].strip() == doc["answer"])}
""")


def _lmms_eval_python() -> str:
    """A virtual environment with lmms-eval over this interpreter's packages, built once and cached."""
    venv = Path(os.environ.get("FGCLIP_LMMS_EVAL_VENV", Path.home() / ".cache" / "fgclip" / "lmms-eval-venv"))
    python = overlay_venv(venv, LMMS_EVAL, timeout=1200)
    return str(python)


def _questions(folder: Path) -> Path:
    """One colour image (not square) per colour, the question the tiny LLaVA's vocabulary knows."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for index, (name, rgb) in enumerate(COLOURS.items()):
        image = folder / f"{index}.png"
        Image.new("RGB", (40 + 6 * index, 28), rgb).save(image)
        lines.append(json.dumps({"id": index, "image": str(image), "question": QUESTION, "answer": f"It is {name}"}))
    path = folder / "questions.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _stock_answers(llava_dir: Path, questions: Path) -> list[str]:
    """Stock transformers: the processor's chat template on the user turn lmms-eval builds (image, then text),
    greedy `generate` with the tokenizer's EOS as pad and stop token."""
    model = LlavaForConditionalGeneration.from_pretrained(llava_dir).eval()
    processor = AutoProcessor.from_pretrained(llava_dir)
    eos = processor.tokenizer.eos_token_id
    answers = []
    for line in questions.read_text().splitlines():
        doc = json.loads(line)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": doc["question"]}]}]
        prompt = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(images=[Image.open(doc["image"]).convert("RGB")], text=prompt, return_tensors="pt")
        with torch.no_grad():
            output = model.generate(
                **inputs, do_sample=False, max_new_tokens=MAX_NEW_TOKENS, pad_token_id=eos, eos_token_id=eos
            )
        answers.append(processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))
    return answers


def test_lmms_eval_default_device_map_is_refused_by_transformers(llava_dir):
    """Why the README passes device_map=cpu|cuda: llava_hf's default device_map="" fails in transformers 5."""
    with pytest.raises(ValueError, match="device_map"):
        LlavaForConditionalGeneration.from_pretrained(llava_dir, device_map="")


@pytest.fixture(scope="module")
def finetuned_dir(llava_dir, colour_data, tmp_path_factory) -> Path:
    """Stage B (LM + projector) for two steps, as scripts/finetune_llava.sh runs it, in one process."""
    from lmm_integration.train import main as train_main

    out = tmp_path_factory.mktemp("stage_b")
    assert train_main(stage_argv("B", llava_dir, colour_data, out)) == 0
    return out / "final"


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("folder", ["built", "finetuned"])
def test_lmms_eval_llava_hf_answers_equal_stock_transformers(folder, request, tmp_path):
    llava_dir = request.getfixturevalue("llava_dir" if folder == "built" else "finetuned_dir")
    python = _lmms_eval_python()
    questions = _questions(tmp_path / "data")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / f"{TASK}.yaml").write_text(TASK_YAML.format(task=TASK, questions=questions, max_new_tokens=MAX_NEW_TOKENS))
    (tasks / "utils.py").write_text(TASK_UTILS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # lmms-eval sees the folder, not fgclip
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    command = [
        python,
        "-m",
        "lmms_eval",
        "--model",
        "llava_hf",
        "--model_args",
        f"pretrained={llava_dir},device_map=cpu,device=cpu",
        "--tasks",
        TASK,
        "--include_path",
        str(tasks),
        "--batch_size",
        "1",
        "--log_samples",
        "--output_path",
        str(tmp_path / "out"),
    ]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    # lmms-eval 0.7.3 exits 0 even when the model fails to load, so success is read from its sample log.
    samples = sorted((tmp_path / "out").rglob(f"*_samples_{TASK}.jsonl"))
    assert run.returncode == 0 and samples, (run.stdout + run.stderr)[-3000:]
    rows = sorted((json.loads(line) for line in samples[0].read_text().splitlines()), key=lambda row: row["doc_id"])
    got = [
        row["filtered_resps"] if isinstance(row["filtered_resps"], str) else row["filtered_resps"][0] for row in rows
    ]
    expected = _stock_answers(llava_dir, questions)
    assert got == expected
    assert all(got) and len(set(got)) > 1  # real, image-dependent answers, not an error turned into ""
