"""The shared LLaVA runner on tiny LLaVA folders built in the test: loading, prompting, batching, resuming."""

import json

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from eval.lmm.generation import PromptItem, answer_all, compare_batched_to_sequential
from fgclip.errors import UserError
from fgclip.llava.generation import generate_answers, load_lmm, prepare_inputs
from fgclip.llava.generation import read_image as load_image
from fgclip.llava.prompting import format_prompt
from fgclip.llava.settings import GenerationSettings
from tests.eval_lmm.conftest import make_images

QUESTIONS = [
    "Is there a dog in the image?",
    "Is there a small brown dog with a red collar in the image?",
    "dog",
    "Which description matches an object in the image?\nA. a red car\nB. a blue car",
    "Please provide the bounding box coordinate of the region this sentence describes: the white cat",
]


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = make_images(folder, [f"{i}.png" for i in range(len(QUESTIONS))])
    return [PromptItem(i, path, question) for i, (path, question) in enumerate(zip(paths, QUESTIONS))]


SETTINGS = GenerationSettings(batch_size=3, max_new_tokens=6, device="cpu")  # CPU float32 even where a GPU is


def test_loads_a_stock_llava_folder(tiny_llava):
    lmm = load_lmm(tiny_llava, SETTINGS)
    assert lmm.device.type == "cpu" and lmm.dtype == torch.float32
    assert lmm.processor.tokenizer.padding_side == "left"
    assert lmm.pad_color == (123, 117, 104)  # the CLIP normalisation mean as bytes (LLaVA pads with it)


def test_prompt_formats(tiny_llava, tiny_llava_no_template):
    with_template = load_lmm(tiny_llava, SETTINGS).processor
    plain = load_lmm(tiny_llava_no_template, SETTINGS).processor
    assert format_prompt(with_template, "Is it red?") == "USER: <image>\nIs it red? ASSISTANT:"
    assert format_prompt(plain, "Is it red?") == "USER: <image>\nIs it red? ASSISTANT:"
    with pytest.raises(ValueError, match="no chat template"):
        format_prompt(plain, "Is it red?", "chat-template")


def test_batched_answers_equal_one_at_a_time(tiny_llava, items):
    """Left padding must not change greedy answers: different image sizes and prompt lengths in one batch."""
    lmm = load_lmm(tiny_llava, SETTINGS)
    inputs = prepare_inputs(lmm, [load_image(i.image) for i in items[:3]], [i.prompt for i in items[:3]], SETTINGS)
    assert (inputs["attention_mask"][:, 0] == 0).any() and (inputs["attention_mask"][:, -1] == 1).all()  # left padded
    report = compare_batched_to_sequential(lmm, items, SETTINGS)
    assert report.num_items == len(items)
    assert report.identical, report.mismatches
    answers = generate_answers(lmm, [load_image(items[0].image)], [items[0].prompt], SETTINGS)
    assert isinstance(answers[0], str) and answers[0] and "<image>" not in answers[0]


def test_a_template_with_its_own_bos_gets_no_second_one(tiny_llava, items, tmp_path):
    lmm = load_lmm(tiny_llava, SETTINGS)
    lmm.processor.chat_template = "{{ bos_token }}" + lmm.processor.chat_template
    inputs = prepare_inputs(lmm, [load_image(items[0].image)], [items[0].prompt], SETTINGS)
    bos = lmm.processor.tokenizer.bos_token_id
    assert inputs["input_ids"][0].tolist().count(bos) == 1


def test_resumes_from_a_partial_answers_file(tiny_llava, items, tmp_path):
    lmm = load_lmm(tiny_llava, SETTINGS)
    full = answer_all(lmm, items, tmp_path / "full.jsonl", SETTINGS)
    assert full.num_generated == len(items) and len(full.answers) == len(items)
    lines = (tmp_path / "full.jsonl").read_text().splitlines()
    partial = tmp_path / "partial.jsonl"
    partial.write_text("\n".join(lines[:2]) + "\n" + lines[2][:15])  # two answers and a torn third line
    resumed = answer_all(lmm, items, partial, SETTINGS)
    assert resumed.num_resumed == 2 and resumed.num_generated == len(items) - 2
    assert resumed.answers == full.answers
    rows = [json.loads(line) for line in partial.read_text().splitlines()]
    assert sorted(row["question_id"] for row in rows) == list(range(len(items)))
    again = answer_all(lmm, items, partial, SETTINGS)  # nothing left to do
    assert again.num_generated == 0 and again.answers == full.answers


def test_missing_images_are_counted_not_fatal(tiny_llava, items, tmp_path):
    lmm = load_lmm(tiny_llava, SETTINGS)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    mixed = [items[0], PromptItem("gone", tmp_path / "nope.png", "q"), PromptItem("bad", broken, "q")]
    summary = answer_all(lmm, mixed, tmp_path / "a.jsonl", SETTINGS)
    assert summary.num_missing_image == 1 and summary.num_unreadable_image == 1
    assert set(summary.answers) == {"0"}
    with pytest.raises(UserError, match="none of the 1 images"):
        answer_all(lmm, [PromptItem("x", tmp_path / "nope.png", "q")], tmp_path / "b.jsonl", SETTINGS)
    with pytest.raises(UserError, match="repeat"):
        answer_all(lmm, [items[0], items[0]], tmp_path / "c.jsonl", SETTINGS)


def test_not_a_llava_folder(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        load_lmm(tmp_path, SETTINGS)
    CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        )
    ).save_pretrained(tmp_path / "clip")
    with pytest.raises(UserError, match="needs? a LLaVA folder|need a LLaVA folder"):
        load_lmm(tmp_path / "clip", SETTINGS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_defaults_to_bfloat16_and_generates(tiny_llava, items, tmp_path):
    lmm = load_lmm(tiny_llava, GenerationSettings())
    assert lmm.device.type == "cuda" and lmm.dtype == torch.bfloat16
    assert next(lmm.model.parameters()).dtype == torch.bfloat16
    summary = answer_all(lmm, items, tmp_path / "a.jsonl", GenerationSettings(batch_size=2, max_new_tokens=4))
    assert len(summary.answers) == len(items)


def test_cuda_request_without_cuda_is_a_clear_error(tiny_llava):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(UserError, match="CUDA is not available"):
        load_lmm(tiny_llava, GenerationSettings(device="cuda"))


def test_unknown_device_is_a_clear_error(tiny_llava):
    with pytest.raises(UserError, match="not a device"):
        load_lmm(tiny_llava, GenerationSettings(device="gpu0"))
