"""The CPU miniature: questions from synthetic scenes, scoring against chance, the tiny tokenizer, and the
whole path (build -> stage A -> stage B with ZeRO-2 on 2 processes -> held-out answers) end to end."""

import json
import random

import pytest

from benchmarks.llava_miniature.questions import (
    Question,
    SceneObject,
    Vocabulary,
    parse_object,
    scene_questions,
    unique_reference,
    write_miniature_data,
)
from benchmarks.llava_miniature.run import main
from benchmarks.llava_miniature.score import chance_levels, constant_box_hit_rate, is_correct, score
from benchmarks.llava_miniature.tiny_lm import train_word_tokenizer
from fgclip.cli import run
from fgclip.data.schema import Record, iter_record_file
from fgclip.llava.boxes import format_box
from tests.lmm_integration.conftest import save_fgclip

VOCABULARY = Vocabulary(("red", "blue", "green"), ("small", "large"), ("solid", "striped"), ("circle", "square"))


@pytest.fixture(scope="module")
def fgclip_dir(tmp_path_factory):
    return save_fgclip(tmp_path_factory.mktemp("fgclip"))


def _obj(size, colour, texture, shape, box=(0.1, 0.1, 0.4, 0.4)):
    return SceneObject(size, colour, texture, shape, box)


def test_expressions_parse_into_attributes():
    assert parse_object("a large red striped circle", [0, 0, 0.5, 0.5], VOCABULARY) == _obj(
        "large", "red", "striped", "circle", (0, 0, 0.5, 0.5)
    )
    assert parse_object("a red circle", [0, 0, 1, 1], VOCABULARY) is None  # no size or texture word


def test_references_are_the_shortest_unique_description_without_the_asked_attribute():
    a, b = _obj("large", "red", "solid", "circle"), _obj("small", "blue", "solid", "circle")
    c = _obj("small", "red", "striped", "square")
    scene = [a, b, c]
    assert unique_reference(c, scene) == "square"
    assert unique_reference(a, scene) == "large circle"
    assert unique_reference(a, scene, hide="size") == "red circle"
    assert (
        unique_reference(
            _obj("large", "red", "solid", "circle"), [a, _obj("large", "red", "solid", "circle", (0.5, 0.5, 0.9, 0.9))]
        )
        is None
    )


def test_scene_questions_have_correct_answers_and_a_hard_no():
    scene = [_obj("large", "red", "solid", "circle", (0.1, 0.2, 0.5, 0.6)), _obj("small", "blue", "striped", "square")]
    asked = scene_questions(scene, random.Random(0), VOCABULARY, (64, 64))
    kinds = [kind for kind, *_ in asked]
    assert kinds == ["colour", "texture", "size", "yes_no", "yes_no", "where"]
    for kind, _question, answer, obj in asked:
        if kind in ("colour", "texture", "size"):
            assert answer == getattr(obj, kind)
        if kind == "where":
            assert answer == format_box(obj.bbox)  # square image: the padded frame is the image frame
    yes, no = [(q, a) for k, q, a, _ in asked if k == "yes_no"]
    assert yes[1] == "Yes" and no[1] == "No"
    assert no[0].split()[3:5] != ["red", "circle"] and no[0].split()[4] in ("circle", "square")


def test_identical_objects_get_no_attribute_or_where_question():
    twin = _obj("large", "red", "solid", "circle")
    asked = scene_questions(
        [twin, _obj("large", "red", "solid", "circle", (0.5, 0.5, 0.9, 0.9))], random.Random(0), VOCABULARY, (64, 64)
    )
    assert [kind for kind, *_ in asked] == ["yes_no", "yes_no"]


def test_scoring_per_kind_and_chance():
    questions = [
        Question("1", "a.png", "colour", "What colour is the circle?", "red"),
        Question("2", "a.png", "yes_no", "Is there a blue circle in the image?", "No"),
        Question("3", "a.png", "where", "Where is the circle?", "[0.10, 0.10, 0.50, 0.50]", [0.1, 0.1, 0.5, 0.5]),
        Question("4", "a.png", "size", "Is the circle small or large?", "large"),
    ]
    answers = {"1": "red", "2": "No .", "3": "[ 0.12 , 0.10 , 0.50 , 0.52 ]", "4": "small or large"}
    result = score(questions, answers, VOCABULARY, {"a.png": (64, 64)}, chance_levels(VOCABULARY, 0.25))
    assert result["per_kind"] == {"colour": 1.0, "size": 0.0, "yes_no": 1.0, "where": 1.0}
    assert result["accuracy"] == 0.75 and result["chance"] == pytest.approx((1 / 3 + 0.5 + 0.5 + 0.25) / 4)
    assert result["attribute_accuracy"] == 0.5 and result["localisation_acc50"] == 1.0  # colour right, size wrong
    assert (result["pope"]["tn"], result["pope"]["num_questions"], result["pope"]["f1"]) == (
        1,
        1,
        0.0,
    )  # no "yes" label
    assert not is_correct(questions[0], "red or blue", VOCABULARY, (64, 64)) and not is_correct(
        questions[0], None, VOCABULARY, (64, 64)
    )
    assert constant_box_hit_rate(questions, [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5]]) == 1.0


def test_tiny_tokenizer_keeps_box_numbers_whole():
    tokenizer = train_word_tokenizer(["Where is the red circle ? [0.12, 0.30, 0.55, 0.91]"])
    ids = tokenizer("Where is the red circle ? [0.12, 0.30, 0.55, 0.91]", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids and "0.12" in tokenizer.convert_ids_to_tokens(ids)


def test_miniature_data_files(tmp_path):
    from fgclip.data.synthetic import generate

    scenes = generate(tmp_path / "scenes", 10, seed=1, image_size=64, progress=False)

    def read(path):
        return [record for record in iter_record_file(path) if isinstance(record, Record)]

    data = write_miniature_data(
        read(scenes.train), read(scenes.heldout), scenes.root, tmp_path / "data", Vocabulary.of_set(scenes.root)
    )
    stage_b = [json.loads(line) for line in data.stage_b.read_text().splitlines()]
    assert len(stage_b) == scenes.num_train and all(
        c["conversations"][0]["value"].startswith("<image>\n") for c in stage_b
    )
    heldout = [json.loads(line) for line in data.heldout.read_text().splitlines()]
    assert {q["kind"] for q in heldout} >= {"yes_no", "where"} and all(q["image"].endswith(".png") for q in heldout)
    assert len(data.stage_a.read_text().splitlines()) == scenes.num_train


def test_out_is_checked_before_any_work(fgclip_dir, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"...")
    assert run(main, ["--vision", str(fgclip_dir), "--out", str(photos)]) == 2
    assert "holiday.jpg" in capsys.readouterr().err and sorted(p.name for p in photos.iterdir()) == ["holiday.jpg"]
    assert run(main, ["--vision", str(fgclip_dir), "--out", str(fgclip_dir)]) == 2
    assert "is the input" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_whole_path_through_the_finetune_script_with_zero2_on_two_processes(tmp_path):
    encoder = save_fgclip(tmp_path / "encoder", image_size=64)
    out = tmp_path / "mini"
    assert (
        run(
            main,
            [
                "--vision",
                str(encoder),
                "--label",
                "tiny",
                "--out",
                str(out),
                "--num-images",
                "30",
                "--steps-a",
                "2",
                "--steps-b",
                "3",
                "--batch-size",
                "4",
                "--max-heldout",
                "12",
            ],
        )
        == 0
    )
    info = json.loads((out / "tiny" / "stage_b" / "run_info.json").read_text())
    assert info["world_size"] == 2 and info["deepspeed_zero_stage"] == 2 and info["global_batch_size"] == 8
    assert json.loads((out / "tiny" / "stage_a" / "run_info.json").read_text())["deepspeed_zero_stage"] == 2
    result = json.loads((out / "results.json").read_text())
    tiny = result["encoders"]["tiny"]
    assert 0.0 <= tiny["accuracy"] <= 1.0 and set(tiny["per_kind"]) <= {"colour", "texture", "size", "yes_no", "where"}
    assert result["counts"]["heldout_questions"] == 12 and (out / "results.png").is_file()
    assert len((out / "tiny" / "answers.jsonl").read_text().splitlines()) == 12
    assert run(main, ["--vision", str(tmp_path / "missing"), "--out", str(out)]) == 2
