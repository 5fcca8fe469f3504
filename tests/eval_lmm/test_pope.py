"""`python -m eval.pope`: scoring hand-made answers files, running a tiny LLaVA, resuming, building questions."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eval import pope
from fgclip.cli import run
from tests.eval_lmm.conftest import generation_options, make_images
from tests.eval_lmm.test_pope_questions import write_coco

REPO = Path(__file__).resolve().parents[2]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def questions(split, labels, image_names=("0.png",)):
    return [
        {
            "question_id": i,
            "image": image_names[i % len(image_names)],
            "text": f"Is there a dog{i} in the image?",
            "label": label,
        }
        for i, label in enumerate(labels)
    ]


def test_scores_answer_files_per_split_and_averaged(tmp_path):
    labels = ["yes", "yes", "no", "no"]
    files = [
        write_jsonl(tmp_path / f"coco_pope_{s}.json", questions(s, labels))
        for s in ("random", "popular", "adversarial")
    ]
    answers = [
        write_jsonl(
            tmp_path / "a_random.jsonl",
            [
                {"question_id": 0, "text": "Yes, there is a dog."},
                {"question_id": 1, "text": "Yes"},
                {"question_id": 2, "text": "There is no dog in the image."},
                {"question_id": 3, "text": "No, there is not."},
            ],
        ),
        write_jsonl(
            tmp_path / "a_popular.jsonl",
            [
                {"question_id": 0, "text": "Yes"},
                {"question_id": 1, "text": ""},  # empty -> yes
                {"question_id": 2, "text": "Yes, a dog, a cat"},  # FP
                {"question_id": 3, "text": "No"},
            ],
        ),
        # adversarial: question 3 unanswered -> scored wrong (FP); q1 answered no -> FN
        write_jsonl(
            tmp_path / "a_adversarial.jsonl",
            [
                {"question_id": 0, "answer": "Yes"},
                {"question_id": 1, "answer": "no"},
                {"question_id": 2, "answer": "No."},
            ],
        ),
    ]
    out = tmp_path / "out"
    result = pope.main(["--questions", *map(str, files), "--answers", *map(str, answers), "--out", str(out)])
    splits, confusion = result["splits"], result["details"]["confusion"]
    assert splits["random"]["accuracy"] == 1.0 and splits["random"]["f1"] == 1.0
    assert splits["popular"]["accuracy"] == 0.75 and splits["popular"]["precision"] == pytest.approx(2 / 3)
    assert splits["popular"]["yes_ratio"] == 0.75 and confusion["popular"]["num_empty"] == 1
    adversarial = confusion["adversarial"]
    assert (adversarial["tp"], adversarial["fn"], adversarial["tn"], adversarial["fp"]) == (1, 1, 1, 1)
    assert splits["adversarial"]["num_missing"] == 1 and splits["adversarial"]["yes_ratio"] == 0.25
    assert result["accuracy"] == pytest.approx((1 + 0.75 + 0.5) / 3)
    assert result["f1"] == pytest.approx((1 + 0.8 + 0.5) / 3)
    assert result["num_questions"] == 12 and result["num_missing"] == 1
    saved = json.loads((out / "results.json").read_text())
    assert saved["benchmark"] == "pope" and saved["counts"]["missing_answers"] == 1
    assert "| adversarial |" in (out / "results.md").read_text() and (out / "pope.png").stat().st_size > 0


def test_merged_llava_file_is_split_by_category(tmp_path):
    rows = []
    for offset, split in enumerate(("adversarial", "popular", "random")):
        for i, label in enumerate(["yes", "no"]):
            rows.append(
                {
                    "question_id": offset * 10 + i,
                    "image": "a.jpg",
                    "label": label,
                    "category": split,
                    "text": "Is there a dog in the image?\nAnswer the question using a single word or phrase.",
                }
            )
    merged = write_jsonl(tmp_path / "llava_pope_test.jsonl", rows)
    answers = write_jsonl(
        tmp_path / "answers.jsonl",
        [{"question_id": r["question_id"], "text": "Yes"} for r in rows] + [{"question_id": 999, "text": "Yes"}],
    )
    result = pope.main(["--questions", str(merged), "--answers", str(answers), "--out", str(tmp_path / "out")])
    assert set(result["splits"]) == {"adversarial", "popular", "random"}
    assert result["accuracy"] == 0.5 and result["yes_ratio"] == 1.0 and result["recall"] == 1.0
    assert result["counts"]["answers_without_question"] == 1


def test_usage_and_data_errors_exit_2(tmp_path, capsys):
    files = [write_jsonl(tmp_path / f"pope_{s}.json", questions(s, ["yes", "no"])) for s in ("random", "popular")]
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"question_id": 0, "text": "Yes"}])
    cases = [
        ["--questions", str(tmp_path / "none.json"), "--answers", str(answers)],
        ["--questions", str(files[0]), "--answers", str(tmp_path / "none.jsonl")],
        ["--questions", *map(str, files), "--answers", str(answers)],  # ids repeat across splits
        ["--questions", str(files[0])],  # neither --answers nor --model
        ["--questions", str(files[0]), "--model", str(tmp_path)],  # no --images
        ["--build-questions"],  # no --instances
    ]
    for argv in cases:
        assert run(pope.main, [*argv, "--out", str(tmp_path / "out")]) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith("error: ")


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pope.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--questions",
        "--answers",
        "--model",
        "--images",
        "--build_questions",
        "--batch_size",
        "--pad_to_square",
        "--no_pad_to_square",
        "--prompt_format",
        "--limit",
        "--output_dir",
    ):
        assert option in text


def test_build_questions_command(tmp_path, capsys):
    instances = write_coco(tmp_path / "instances.json")
    out = tmp_path / "pope_files"
    pope.main(["--build-questions", "--instances", str(instances), "--out", str(out), "--num-images", "3"])
    assert "wrote 3 files of 18 questions (3 images)" in capsys.readouterr().out
    popular = [json.loads(line) for line in (out / "pope_popular.jsonl").read_text().splitlines()]
    assert len(popular) == 18 and popular[0]["text"].startswith("Is there")


def test_runs_a_tiny_llava_end_to_end_and_resumes(tiny_llava, tmp_path):
    names = [f"{i}.png" for i in range(3)]
    make_images(tmp_path / "images", names)
    files = [
        write_jsonl(tmp_path / f"coco_pope_{s}.json", questions(s, ["yes", "no", "yes", "no"], names))
        for s in ("random", "adversarial")
    ]
    out = tmp_path / "out"
    argv = ["--questions", *map(str, files), "--images", str(tmp_path / "images")]
    argv += generation_options(tiny_llava, out, 4, "--batch-size", "3")
    first = pope.main(argv)
    assert first["num_questions"] == 8 and first["num_missing"] == 0
    assert first["counts"]["generated_now"] == 8 and first["details"]["generation"]["batch_size"] == 3
    rows = [json.loads(line) for line in (out / "answers" / "random.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["prompt"].endswith("\nAnswer the question using a single word or phrase.")
    again = pope.main(argv)  # everything answered: nothing is generated, same scores
    assert again["counts"]["generated_now"] == 0 and again["counts"]["resumed_from_answers_file"] == 8
    assert again["splits"] == first["splits"]
    # the written answers score the same through --answers
    rescored = pope.main(
        [
            "--questions",
            *map(str, files),
            "--answers",
            str(out / "answers" / "random.jsonl"),
            str(out / "answers" / "adversarial.jsonl"),
            "--out",
            str(tmp_path / "rescored"),
        ]
    )
    assert rescored["splits"] == first["splits"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_answers(tiny_llava, tmp_path):
    names = [f"{i}.png" for i in range(4)]
    make_images(tmp_path / "images", names)
    labels = ["yes", "no"] * 8
    split = write_jsonl(tmp_path / "pope_random.json", questions("random", labels, names))
    common = [
        "--questions",
        str(split),
        "--model",
        str(tiny_llava),
        "--images",
        str(tmp_path / "images"),
        "--max-new-tokens",
        "8",
    ]
    killed_out = tmp_path / "killed"
    answers = killed_out / "answers" / "random.jsonl"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # one question per batch, so the file grows line by line and the kill lands part-way
    process = subprocess.Popen(
        [sys.executable, "-m", "eval.pope", *common, "--batch-size", "1", "--out", str(killed_out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if answers.exists() and answers.read_text().count("\n") >= 3:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    written = answers.read_text().count("\n")
    assert 3 <= written < len(labels), "the run should have been killed part-way"
    # resumed and clean runs batch differently; float32 answers do not depend on batching (test_generation)
    resumed = pope.main([*common, "--batch-size", "4", "--out", str(killed_out)])
    assert resumed["counts"]["resumed_from_answers_file"] == written
    clean = pope.main([*common, "--batch-size", "4", "--out", str(tmp_path / "clean")])

    def read(path):
        return {json.loads(line)["question_id"]: json.loads(line)["text"] for line in path.read_text().splitlines()}

    assert read(answers) == read(tmp_path / "clean" / "answers" / "random.jsonl")
    assert resumed["splits"] == clean["splits"]


def test_two_models_compare_side_by_side_in_eval_report(tmp_path):
    from eval import report

    split = write_jsonl(tmp_path / "coco_pope_random.json", questions("random", ["yes", "no", "yes", "no"]))
    for name, texts in (("model_a", ["Yes", "No", "Yes", "No"]), ("model_b", ["Yes", "Yes", "Yes", "Yes"])):
        answers = write_jsonl(tmp_path / f"{name}.jsonl", [{"question_id": i, "text": t} for i, t in enumerate(texts)])
        pope.main(
            ["--questions", str(split), "--answers", str(answers), "--out", str(tmp_path / "runs" / name / "pope")]
        )
    summary = report.main(
        [str(tmp_path / "runs" / "model_a"), str(tmp_path / "runs" / "model_b"), "--out", str(tmp_path / "report")]
    )
    (group,) = summary.values()
    assert {"accuracy", "f1", "yes_ratio", "splits/random/f1"} <= set(group["metrics"])
    assert not any(key.startswith("details") for key in group["metrics"])
    assert group["runs"]["model_a"]["accuracy"] == 1.0 and group["runs"]["model_b"]["accuracy"] == 0.5
