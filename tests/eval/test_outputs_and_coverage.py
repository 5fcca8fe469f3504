"""What every evaluation promises about its output and its counts (issue 15): --out is checked before any
work, results.json says `complete` only when every given item was scored, --strict makes a skip exit 2,
duplicated records are scored once and truncated captions are counted, eval.report keeps every run."""

from __future__ import annotations

import json

import pytest

from eval import attributes, box_cls, dense_vis, fashion, fgovd, localization, pope, report, retrieval, zeroshot
from eval.common.reporting import write_results
from fgclip.cli import run
from tests.eval.conftest import common_args, make_image, write_jsonl


def inputs_for_every_eval(tmp_path):
    """(module, argv without --out) for every evaluation, each on a tiny input written here."""
    make_image(tmp_path / "img.png", seed=1)
    make_image(tmp_path / "classes" / "cat" / "0.png", seed=2)
    records = write_jsonl(
        tmp_path / "records.jsonl",
        [
            {
                "image": "img.png",
                "regions": [
                    {
                        "bbox": [0.1, 0.1, 0.6, 0.6],
                        "caption": "a red cube",
                        "hard_negatives": ["a blue cube", "a green cube", "a red ball"],
                    }
                ],
            }
        ],
    )
    (tmp_path / "instances.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "img.png", "width": 48, "height": 40}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 20], "iscrowd": 0}],
                "categories": [{"id": 1, "name": "cube"}],
            }
        )
    )
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"image": "img.png", "caption": "a cube"}])
    products = write_jsonl(tmp_path / "products.jsonl", [{"image": "img.png", "text": "jeans", "product_id": "1"}])
    questions = write_jsonl(
        tmp_path / "coco_pope_random.json",
        [{"question_id": 1, "image": "img.png", "text": "Is there a cube in the image?", "label": "yes"}],
    )
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"question_id": 1, "text": "Yes"}])
    refs = write_jsonl(
        tmp_path / "refs.jsonl",
        [{"id": "a", "image": "img.png", "expression": "the cube", "bbox": [0.1, 0.1, 0.5, 0.5]}],
    )
    run = tmp_path / "run"
    write_results(run, "fgovd", {"top1": 0.5}, model="m", data="d", counts={}, started=0.0, table="")
    # loading this model would fail: the --out check comes first
    model = ["--model", str(tmp_path / "no_model_here"), "--no-cache"]
    return [
        (fgovd, ["--data", str(records), *model]),
        (box_cls, ["--data", str(tmp_path / "instances.json"), *model]),
        (retrieval, ["--data", str(pairs), *model]),
        (zeroshot, ["--data", str(tmp_path / "classes"), *model]),
        (fashion, ["--task", "fashiongen", "--data", str(products), *model]),
        (dense_vis, ["--image", str(tmp_path / "img.png"), "--text", "a cube", "--model", model[1]]),
        (report, [str(run)]),
        (pope, ["--questions", str(questions), "--answers", str(answers)]),
        (attributes, ["--data", str(records), "--answers", str(answers)]),
        (localization, ["--data", str(refs), "--answers", str(answers)]),
    ]


def run_command(module, argv):
    return run(module.main, argv)


def test_out_naming_a_file_is_refused_first_in_every_eval(tmp_path, capsys):
    taken = tmp_path / "taken.txt"
    taken.write_text("precious")
    for module, argv in inputs_for_every_eval(tmp_path):
        assert run_command(module, [*argv, "--out", str(taken)]) == 2, module.__name__
        err = capsys.readouterr().err.strip()
        # the message names the option by its one spelling, whichever alias was typed
        assert err in (
            f"error: --{name} {taken} is a file; give a folder (it is created when missing)"
            for name in ("out", "output_dir")
        ), module.__name__
    assert taken.read_text() == "precious"


def test_out_holding_other_files_needs_overwrite_in_every_eval(tmp_path, capsys):
    for module, argv in inputs_for_every_eval(tmp_path):
        folder = tmp_path / f"out_{module.__name__}"
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
        assert run_command(module, [*argv, "--out", str(folder)]) == 2, module.__name__
        err = capsys.readouterr().err.strip()
        assert "already holds files" in err and "(notes.txt)" in err and "pass --overwrite" in err, module.__name__
        assert (folder / "notes.txt").read_text() == "mine"


def test_own_results_are_rewritten_another_evals_are_not(tiny_model_dir, tmp_path, capsys):
    make_image(tmp_path / "img.png", seed=1)
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"image": "img.png", "caption": "a cube"}, {"image": "img.png", "caption": "a red cube"}],
    )
    out = tmp_path / "out"
    argv = ["--data", str(pairs), *common_args(tiny_model_dir, out)]
    first = retrieval.main(argv)
    assert retrieval.main(argv)["i2t_r1"] == first["i2t_r1"]  # its own earlier results: written again
    records = write_jsonl(
        tmp_path / "records.jsonl",
        [
            {
                "image": "img.png",
                "regions": [{"bbox": [0.1, 0.1, 0.6, 0.6], "caption": "a red cube", "hard_negatives": ["a blue cube"]}],
            }
        ],
    )
    fgovd_argv = ["--data", str(records), *common_args(tiny_model_dir, out)]
    assert run(fgovd.main, fgovd_argv) == 2  # retrieval's results.json and plot are not fgovd's to replace
    err = capsys.readouterr().err
    assert "already holds files this evaluation did not write (recall_curve.png, results.json" in err
    assert fgovd.main([*fgovd_argv, "--overwrite"])["benchmark"] == "fgovd"
    into_model = [
        "--data",
        str(records),
        "--model",
        str(tiny_model_dir),
        "--no-cache",
        "--out",
        str(tiny_model_dir),
        "--overwrite",
    ]
    assert run(fgovd.main, into_model) == 2  # an input is never an output, --overwrite or not
    assert "is the input" in capsys.readouterr().err


def test_a_cache_folder_that_is_a_file_is_one_line(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """issue 15: FGCLIP_EVAL_CACHE pointing to a file ended in a traceback after the encoding."""
    make_image(tmp_path / "img.png", seed=1)
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"image": "img.png", "caption": "a cube"}])
    blocker = tmp_path / "cache_file"
    blocker.write_text("")
    monkeypatch.setenv("FGCLIP_EVAL_CACHE", str(blocker))
    argv = ["--data", str(pairs), "--model", str(tiny_model_dir), "--num-workers", "0", "--out", str(tmp_path / "o")]
    assert run(retrieval.main, argv) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: $FGCLIP_EVAL_CACHE {blocker} is a file; the embedding cache needs a folder (or pass --no_cache)"
    )
    assert run(retrieval.main, [*argv, "--cache-dir", str(blocker)]) == 2  # the old spelling names the option's one
    assert capsys.readouterr().err.startswith(f"error: --cache_dir {blocker} is a file")
    monkeypatch.setenv("FGCLIP_EVAL_CACHE", str(tmp_path / "cache"))
    assert run(retrieval.main, argv) == 0 and (tmp_path / "cache").is_dir()


def test_fgovd_17_regions_3_bad_is_14_of_17_and_strict_exits_2(tiny_model_dir, tmp_path, capsys):
    """The issue's case: one bad box dropped a record's regions and results.json said 'all 14 regions scored'."""
    make_image(tmp_path / "img.png", seed=3)
    regions = [
        {
            "bbox": [0.04 * i, 0.04 * i, 0.04 * i + 0.3, 0.04 * i + 0.3],
            "caption": f"object {i}",
            "hard_negatives": [f"thing {i}", f"item {i}"],
        }
        for i in range(17)
    ]
    for bad in (2, 8, 15):
        regions[bad]["bbox"] = [0.5, 0.5, 0.4, 0.9]  # x1 > x2
    data = write_jsonl(
        tmp_path / "set.jsonl",
        [{"image": "img.png", "regions": regions[:9]}, {"image": "img.png", "regions": regions[9:]}],
    )
    out = tmp_path / "out"
    argv = ["--data", str(data), *common_args(tiny_model_dir, out)]
    result = fgovd.main(argv)
    assert result["num_regions"] == 14 and result["complete"] is False
    assert result["note"] == "scored 14 of 17 regions; skipped: bad_box 3"
    assert result["coverage"] == {
        "unit": "regions",
        "given": 17,
        "scored": 14,
        "skipped": {"bad_box": 3},
        "not_read_limit": 0,
        "duplicates_scored_once": 0,
        "truncated_texts": {},
    }
    assert "on 14 of 17 regions" in capsys.readouterr().out
    assert run(fgovd.main, [*argv, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1] == f"error: --strict: scored 14 of 17 regions; skipped: bad_box 3 (partial results in "
        f"{out.resolve() / 'results.json'})"
    )
    assert json.loads((out / "results.json").read_text())["complete"] is False  # written before the exit
    clean = write_jsonl(tmp_path / "clean.jsonl", [{"image": "img.png", "regions": regions[:2]}])
    strict = fgovd.main(["--data", str(clean), "--strict", *common_args(tiny_model_dir, tmp_path / "clean")])
    assert strict["complete"] is True and strict["note"] == "all 2 regions scored"


def test_retrieval_counts_every_given_item(tiny_model_dir, tmp_path):
    """issue 15: 6 items given, a malformed line and a caption-less item: 'all 4 images scored' was reported."""
    for i in range(4):
        make_image(tmp_path / f"{i}.png", seed=20 + i)
    data = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"image": f"{i}.png", "caption": f"thing {i}"} for i in range(4)] + [{"image": "5.png", "caption": ""}],
    )
    data.write_text(data.read_text() + "{broken line\n")
    result = retrieval.main(["--data", str(data), *common_args(tiny_model_dir, tmp_path / "out")])
    assert result["num_images"] == 4 and result["complete"] is False
    assert result["note"] == "scored 4 of 6 images; skipped: malformed 1, no_caption 1"


def test_duplicated_records_do_not_change_retrieval(tiny_model_dir, tmp_path):
    """issue 15: the same data with every line twice moved I->T R@5 from 0.83 to 0.50; now scored once."""
    for i in range(6):
        make_image(tmp_path / f"{i}.png", seed=10 + i)
    lines = [{"image": f"{i}.png", "caption": f"photo number {i} of a thing"} for i in range(6)]
    once = write_jsonl(tmp_path / "once.jsonl", lines)
    twice = write_jsonl(tmp_path / "twice.jsonl", lines + lines)
    first = retrieval.main(["--data", str(once), *common_args(tiny_model_dir, tmp_path / "a")])
    second = retrieval.main(["--data", str(twice), *common_args(tiny_model_dir, tmp_path / "b")])
    keys = [k for k in first if k.startswith(("i2t_r", "t2i_r"))]
    assert {k: second[k] for k in keys} == {k: first[k] for k in keys}
    assert second["num_captions"] == 6 and second["counts"]["duplicate_records"] == 6
    assert second["complete"] is True and second["note"] == "all 6 images scored; 6 duplicates scored once"


def test_truncated_captions_are_counted_on_both_paths(tiny_model_dir, tmp_path):
    make_image(tmp_path / "0.png", seed=1)
    make_image(tmp_path / "1.png", seed=2)
    long = "word " * 100  # 102 tokens with BOS and EOS: over 77, under 248
    longer = "word " * 300
    data = write_jsonl(
        tmp_path / "pairs.jsonl", [{"image": "0.png", "caption": long}, {"image": "1.png", "caption": longer}]
    )
    short = retrieval.main(["--data", str(data), *common_args(tiny_model_dir, tmp_path / "s")])
    assert short["coverage"]["truncated_texts"] == {"77": 2}
    assert short["note"] == "all 2 images scored; 2 texts longer than 77 tokens truncated" and short["complete"]
    long_path = retrieval.main(["--data", str(data), "--long", *common_args(tiny_model_dir, tmp_path / "l")])
    assert long_path["coverage"]["truncated_texts"] == {"248": 1}


def test_report_keeps_runs_whose_folders_share_a_name(tmp_path):
    """issue 15: runs/clip/eval and runs/fg/eval were both labelled 'eval' and one was dropped (exit 0)."""
    for model, top1 in (("clip", 0.2), ("fg", 0.6)):
        write_results(
            tmp_path / model / "eval" / "fgovd",
            "fgovd",
            {"top1": top1},
            model=f"{model}/final",
            data="d.jsonl",
            counts={},
            started=0.0,
            table="",
        )
        write_results(
            tmp_path / model / "eval" / "fgovd_again",
            "fgovd",
            {"top1": top1 / 2},
            model=f"{model}/final",
            data="d.jsonl",
            counts={},
            started=0.0,
            table="",
        )
    runs = [str(tmp_path / "clip" / "eval"), str(tmp_path / "fg" / "eval")]
    summary = report.main([*runs, "--out", str(tmp_path / "r")])
    runs = summary["fgovd (d.jsonl)"]["runs"]
    assert {label: values["top1"] for label, values in runs.items()} == {
        "clip/eval/fgovd": 0.2,
        "clip/eval/fgovd_again": 0.1,
        "fg/eval/fgovd": 0.6,
        "fg/eval/fgovd_again": 0.3,
    }
    assert report.distinct_labels([tmp_path / "a", tmp_path / "a"]) == ["a", "a (2)"]
    with pytest.raises(Exception, match="--names repeats a label"):
        report.main([str(tmp_path / "clip"), str(tmp_path / "fg"), "--names", "x", "x", "--out", str(tmp_path / "r")])


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "is empty"),
        ("\n  \n", "is empty"),
        (json.dumps([{"question_id": 1, "text": "Yes"}]), "holds a JSON list; answers files are JSON lines"),
        ('not json\n{"id": 1}\n', "holds no usable answer: 2 lines"),
    ],
)
def test_pope_answers_that_cannot_be_read_are_errors_not_zero(tmp_path, capsys, content, message):
    questions = write_jsonl(
        tmp_path / "coco_pope_random.json",
        [
            {
                "question_id": 1,
                "image": "COCO_val2014_000000310196.jpg",
                "text": "Is there a snowboard in the image?",
                "label": "yes",
            }
        ],
    )
    answers = tmp_path / "answers.json"
    answers.write_text(content)
    argv = ["--questions", str(questions), "--answers", str(answers), "--out", str(tmp_path / "o")]
    assert run(pope.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: answers file {answers} ") and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "results.json").exists()


def test_pope_unanswered_questions_make_it_incomplete(tmp_path, capsys):
    questions = write_jsonl(
        tmp_path / "coco_pope_popular.json",
        [
            {
                "question_id": i,
                "image": "COCO_val2014_000000310196.jpg",
                "text": f"Is there a thing {i} in the image?",
                "label": "yes" if i % 2 else "no",
            }
            for i in range(1, 5)
        ],
    )
    answers = write_jsonl(
        tmp_path / "answers.jsonl", [{"question_id": 1, "text": "Yes"}, {"question_id": 2, "text": "No"}]
    )
    argv = ["--questions", str(questions), "--answers", str(answers), "--out", str(tmp_path / "o")]
    result = pope.main(argv)
    assert result["complete"] is False and result["num_missing"] == 2
    assert result["note"] == "scored 2 of 4 questions; skipped: no_answer_scored_as_wrong 2"
    assert run(pope.main, [*argv, "--strict"]) == 2
    assert "error: --strict: scored 2 of 4 questions" in capsys.readouterr().err
    other = write_jsonl(tmp_path / "other.jsonl", [{"question_id": 99, "text": "Yes"}])
    assert run(pope.main, ["--questions", str(questions), "--answers", str(other), "--out", argv[-1]]) == 2
    assert "no questions could be scored out of 4" in capsys.readouterr().err
