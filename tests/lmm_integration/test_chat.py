"""The chat command: one question, an interactive session, and clear errors."""

import io
import sys

from PIL import Image

from fgclip.cli import run
from fgclip.llava.generation import model_inputs
from lmm_integration.chat import ChatSettings, answer, load_chat_model, load_image, main


def test_one_question_prints_an_answer(llava_dir, tmp_path, capsys):
    Image.new("RGB", (50, 30), (200, 0, 0)).save(tmp_path / "red.png")
    assert (
        run(
            main,
            [
                "--model",
                str(llava_dir),
                "--image",
                str(tmp_path / "red.png"),
                "--question",
                "Is there a red square ?",
                "--max_new_tokens",
                "3",
            ],
        )
        == 0
    )
    printed = capsys.readouterr().out.strip()
    assert printed and len(printed.split()) <= 3


def test_follow_up_questions_see_the_conversation(llava_dir, tmp_path):
    Image.new("RGB", (30, 50), (0, 0, 200)).save(tmp_path / "blue.png")
    settings = ChatSettings(max_new_tokens=2, device="cpu")
    lmm = load_chat_model(llava_dir, settings)
    processor = lmm.processor
    image = load_image(tmp_path / "blue.png")
    # padded to a square with the mean colour, as in training: the left border is the mean (0 once normalised)
    pixels = model_inputs(lmm, [image], ["<image>"], settings)["pixel_values"]
    assert pixels.shape[-1] == pixels.shape[-2] and pixels[0, :, :, 0].abs().max() < 0.05
    assert model_inputs(lmm, [image], ["<image>"], ChatSettings(pad_to_square=False))["pixel_values"][0, 2, 0, 0] > 1
    messages: list[dict] = []
    first = answer(lmm, image, messages, "Is there a red square ?", settings)
    answer(lmm, image, messages, "What colour is the picture ?", settings)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["text"] == first
    prompt = processor.apply_chat_template(messages[:3], add_generation_prompt=True, tokenize=False)
    assert prompt.count("<image>") == 1 and prompt.count("ASSISTANT:") == 2


def test_interactive_reads_questions_until_an_empty_line(llava_dir, tmp_path, monkeypatch, capsys):
    Image.new("RGB", (32, 32), (0, 200, 0)).save(tmp_path / "green.png")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Is there a red square ?\nWhat colour is the picture ?\n\nignored\n"))
    assert run(main, ["--model", str(llava_dir), "--image", str(tmp_path / "green.png"), "--max-new-tokens", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_bad_input_exits_2(llava_dir, tmp_path, capsys):
    assert run(main, ["--model", str(llava_dir), "--image", str(tmp_path / "none.png"), "--question", "hi"]) == 2
    (tmp_path / "broken.png").write_bytes(b"no")
    assert run(main, ["--model", str(llava_dir), "--image", str(tmp_path / "broken.png"), "--question", "hi"]) == 2
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    assert run(main, ["--model", str(tmp_path), "--image", str(tmp_path / "ok.png"), "--question", "hi"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert "image not found" in errors[0] and "cannot read image" in errors[1] and "model folder not found" in errors[2]
