"""POPE question building on a tiny hand-made COCO file: the three strategies pick the expected objects."""

import json

import pytest

from eval.lmm.pope_questions import (
    _adversarial,
    build_pope_questions,
    object_statistics,
    question_text,
    read_coco_objects,
    read_pope_questions,
    write_question_files,
)
from fgclip.errors import UserError
from tests.official_records import coco_pope_lines

CATEGORIES = ["person", "car", "dog", "cat", "bus", "apple", "umbrella", "kite"]
IMAGES = {  # image id -> (file, objects); image 4 has only two classes, image 6 none
    1: ("a.jpg", ["person", "car", "dog", "dog"]),
    2: ("b.jpg", ["person", "car", "bus"]),
    3: ("c.jpg", ["person", "dog", "cat"]),
    4: ("d.jpg", ["person", "car"]),
    5: ("e.jpg", ["apple", "umbrella", "kite"]),
    6: ("f.jpg", []),
}
# images per class: person 4, car 3, dog 2, the rest 1
# -> popular order person, car, dog, apple, bus, cat, kite, umbrella


def write_coco(path):
    ids = {name: index + 1 for index, name in enumerate(CATEGORIES)}
    annotations = []
    for image_id, (_, objects) in IMAGES.items():
        for name in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": ids[name],
                    "bbox": [1, 1, 5, 5],
                    "area": 25,
                    "iscrowd": 0,
                }
            )
    coco = {
        "images": [{"id": i, "file_name": f, "width": 64, "height": 48} for i, (f, _) in IMAGES.items()],
        "annotations": annotations,
        "categories": [{"id": ids[n], "name": n} for n in CATEGORIES],
    }
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture
def images(tmp_path):
    return read_coco_objects(write_coco(tmp_path / "instances.json"))


def test_reads_distinct_objects_per_image(images):
    by_file = {image.file_name: image.objects for image in images}
    assert by_file["a.jpg"] == ["car", "dog", "person"]
    assert by_file["f.jpg"] == []
    frequency, co_occurrence = object_statistics(images)
    assert frequency["person"] == 4 and frequency["car"] == 3 and frequency["dog"] == 2 and frequency["kite"] == 1
    assert co_occurrence["person"]["car"] == 3 and co_occurrence["dog"]["cat"] == 1


EXPECTED_NEGATIVES = {
    "popular": {
        "a.jpg": ["apple", "bus", "cat"],
        "b.jpg": ["dog", "apple", "cat"],
        "c.jpg": ["car", "apple", "bus"],
        "e.jpg": ["person", "car", "dog"],
    },
    # per positive: the absent class seen with it most often; the most popular free absent class otherwise
    "adversarial": {
        "a.jpg": {"bus", "cat", "apple"},
        "b.jpg": {"dog", "apple", "cat"},
        "c.jpg": {"car", "apple", "bus"},
        "e.jpg": {"person", "car", "dog"},
    },
}


def by_image(questions):
    grouped = {}
    for question in questions:
        grouped.setdefault(question["image"], []).append(question)
    return grouped


def test_three_strategies_give_the_expected_objects(images):
    splits = build_pope_questions(images, num_images=10, per_image=3, seed=0)
    assert set(splits) == {"random", "popular", "adversarial"}
    for strategy, questions in splits.items():
        assert [q["question_id"] for q in questions] == list(range(24))  # 4 eligible images x 6
        grouped = by_image(questions)
        assert set(grouped) == {"a.jpg", "b.jpg", "c.jpg", "e.jpg"}  # d.jpg has 2 classes, f.jpg none
        for image in images:
            if image.file_name not in grouped:
                continue
            rows = grouped[image.file_name]
            assert [q["label"] for q in rows] == ["yes"] * 3 + ["no"] * 3
            positives, negatives = [q["object"] for q in rows[:3]], [q["object"] for q in rows[3:]]
            assert sorted(positives) == image.objects
            assert len(set(negatives)) == 3 and not set(negatives) & set(image.objects)
            if strategy == "popular":
                assert negatives == EXPECTED_NEGATIVES["popular"][image.file_name]
            elif strategy == "adversarial":
                assert set(negatives) == EXPECTED_NEGATIVES["adversarial"][image.file_name]
    # the splits share images and positives, as the public files do
    firsts = [[(q["image"], q["object"]) for q in questions if q["label"] == "yes"] for questions in splits.values()]
    assert firsts[0] == firsts[1] == firsts[2]


def test_adversarial_order_follows_the_positives(images):
    _, co_occurrence = object_statistics(images)
    popular = ["person", "car", "dog", "apple", "bus", "cat", "kite", "umbrella"]
    absent = ["apple", "bus", "cat", "kite", "umbrella"]
    # person -> bus (car, dog present); car -> bus taken, dog present -> popular fallback apple; dog -> cat
    assert _adversarial(["person", "car", "dog"], absent, co_occurrence, popular) == ["bus", "apple", "cat"]
    assert _adversarial(["dog", "person", "car"], absent, co_occurrence, popular) == ["cat", "bus", "apple"]


def test_building_is_seeded(images):
    first = build_pope_questions(images, num_images=2, seed=3)
    again = build_pope_questions(images, num_images=2, seed=3)
    assert first == again
    assert len(first["random"]) == 12


def test_articles_follow_pope():
    assert question_text("apple") == "Is there an apple in the image?"
    assert question_text("umbrella") == "Is there an umbrella in the image?"
    assert question_text("dining table") == "Is there a dining table in the image?"


def test_files_round_trip_through_the_reader(images, tmp_path):
    paths = write_question_files(build_pope_questions(images, num_images=4), tmp_path / "pope")
    assert [p.name for p in paths] == ["pope_random.jsonl", "pope_popular.jsonl", "pope_adversarial.jsonl"]
    questions = read_pope_questions(paths[1])
    assert len(questions) == 24 and {q.label for q in questions} == {"yes", "no"}


def test_public_coco_pope_file_as_shipped(tmp_path):
    """RUCAIBox/POPE output/coco/coco_pope_adversarial.json: JSON lines under a .json name, int ids from 1,
    COCO_val2014 file names, yes/no labels; a line repeated exactly is read once and counted."""
    lines = coco_pope_lines(("snowboard", "yes"), ("person", "yes"), ("car", "no"))
    path = tmp_path / "coco_pope_adversarial.json"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines + lines[2:]))
    counts = {}
    questions = read_pope_questions(path, counts)
    assert [(q.question_id, q.image, q.label, q.category) for q in questions] == [
        (1, "COCO_val2014_000000310196.jpg", "yes", None),
        (2, "COCO_val2014_000000310196.jpg", "yes", None),
        (3, "COCO_val2014_000000310196.jpg", "no", None),
    ]
    assert questions[0].text == "Is there a snowboard in the image?" and counts == {"duplicate_questions": 1}


def test_no_eligible_image_is_an_error(images):
    with pytest.raises(UserError, match="at least 4"):
        build_pope_questions(images, per_image=4)


def test_bad_question_files_fail_clearly(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"question_id": 1, "image": "a.jpg", "text": "Is there a dog?", "label": "maybe"}\n')
    with pytest.raises(UserError, match="bad.json:1: label"):
        read_pope_questions(bad)
    bad.write_text('{"question_id": 1, "image": "a.jpg", "text": "?", "label": "yes"}\nnot json\n')
    with pytest.raises(UserError, match="bad.json:2: not valid JSON"):
        read_pope_questions(bad)
    bad.write_text(
        '{"question_id": 1, "image": "a.jpg", "text": "?", "label": "yes"}\n'
        '{"question_id": 1, "image": "b.jpg", "text": "?", "label": "yes"}\n'
    )
    with pytest.raises(UserError, match="repeats with another question"):
        read_pope_questions(bad)
    bad.write_bytes(b'{"question_id": 1, "image": "a.jpg", "text": "Is there a caf\xe9?", "label": "yes"}\n')
    with pytest.raises(UserError, match="bad.json is not UTF-8 text"):
        read_pope_questions(bad)
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([{"question_id": 1, "image": "a.jpg", "text": "?", "label": "No"}]))
    assert read_pope_questions(listed)[0].label == "no"


def test_not_a_coco_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="not a COCO instances file"):
        read_coco_objects(path)
