"""The chat command: one question, an interactive session, and clear errors."""

import io
import sys

from PIL import Image

from lmm_integration.chat import ChatSettings, answer, load_chat_model, load_image, main


def test_one_question_prints_an_answer(llava_dir, tmp_path, capsys):
    Image.new("RGB", (50, 30), (200, 0, 0)).save(tmp_path / "red.png")
    assert main(["--model", str(llava_dir), "--image", str(tmp_path / "red.png"), "--question", "Is there a red square ?",
                 "--max-new-tokens", "3"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed and len(printed.split()) <= 3


def test_follow_up_questions_see_the_conversation(llava_dir, tmp_path):
    Image.new("RGB", (30, 50), (0, 0, 200)).save(tmp_path / "blue.png")
    model, processor = load_chat_model(llava_dir)
    image = load_image(tmp_path / "blue.png", processor)
    assert image.size == (50, 50)  # padded to a square
    messages: list[dict] = []
    settings = ChatSettings(max_new_tokens=2)
    first = answer(model, processor, image, messages, "Is there a red square ?", settings)
    answer(model, processor, image, messages, "What colour is the picture ?", settings)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1]["content"][0]["text"] == first
    prompt = processor.apply_chat_template(messages[:3], add_generation_prompt=True, tokenize=False)
    assert prompt.count("<image>") == 1 and prompt.count("ASSISTANT:") == 2


def test_interactive_reads_questions_until_an_empty_line(llava_dir, tmp_path, monkeypatch, capsys):
    Image.new("RGB", (32, 32), (0, 200, 0)).save(tmp_path / "green.png")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Is there a red square ?\nWhat colour is the picture ?\n\nignored\n"))
    assert main(["--model", str(llava_dir), "--image", str(tmp_path / "green.png"), "--max-new-tokens", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_bad_input_exits_2(llava_dir, tmp_path, capsys):
    assert main(["--model", str(llava_dir), "--image", str(tmp_path / "none.png"), "--question", "hi"]) == 2
    (tmp_path / "broken.png").write_bytes(b"no")
    assert main(["--model", str(llava_dir), "--image", str(tmp_path / "broken.png"), "--question", "hi"]) == 2
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    assert main(["--model", str(tmp_path), "--image", str(tmp_path / "ok.png"), "--question", "hi"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert "image not found" in errors[0] and "cannot read image" in errors[1] and "model folder not found" in errors[2]

