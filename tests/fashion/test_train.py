"""The finetuning command: usage errors, retrieval and text-guided runs with validation-based selection,
global-only, resume to the same weights, bad items counted (and too many stopping the run), and DeepSpeed
ZeRO-2 with two processes."""

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from transformers import AutoModel

from eval import fashion
from fgclip import FashionFINEModel
from fgclip.cli import run
from fgclip.fashion.cli import main

REPO = Path(__file__).resolve().parents[2]
CATEGORIES = ("dress", "shirt", "toptee")


def retrieval_args(products: Path, init: Path, out: Path, *extra) -> list[str]:
    return [
        "--task",
        "retrieval",
        "--data",
        str(products / "fashiongen" / "train.jsonl"),
        "--init",
        str(init),
        "--output_dir",
        str(out),
        "--batch_size",
        "4",
        "--lr",
        "1e-3",
        "--warmup_steps",
        "1",
        "--log_every",
        "2",
        "--num_workers",
        "0",
        "--no_progress",
        *extra,
    ]


def validated_every(products: Path, steps: int) -> list[str]:
    """The options that validate on the products' val split every `steps` steps."""
    return ["--val", str(products / "fashiongen" / "val.jsonl"), "--eval_every", str(steps)]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_help_and_usage_errors_are_one_line_exit_2(products, tiny_towers_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0 and "--val_fraction" in capsys.readouterr().out
    cases = [
        (
            retrieval_args(products, tiny_towers_dir, tmp_path / "a", "--val", "x.jsonl", "--val_fraction", "0.1"),
            "give --val or --val_fraction",
        ),
        (
            [
                "--task",
                "tgir",
                "--matching_weight",
                "1",
                *retrieval_args(products, tiny_towers_dir, tmp_path / "b")[2:],
            ],
            "--matching_weight applies to --task retrieval",
        ),
        (retrieval_args(products, tmp_path / "no_model", tmp_path / "c"), "no such folder"),
        (
            [
                "--task",
                "retrieval",
                "--data",
                str(products / "manifest.json"),
                "--init",
                str(tiny_towers_dir),
                "--output_dir",
                str(tmp_path / "e"),
                "--max_steps",
                "1",
            ],
            "expected a JSON list",
        ),
        (retrieval_args(products, tiny_towers_dir, products, "--max_steps", "1"), "already holds"),
    ]
    for argv, message in cases:
        assert run(main, argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    for argv, message in (
        (["--data", "x"], "the following arguments are required"),
        (
            retrieval_args(products, tiny_towers_dir, tmp_path / "d", "--batch_size", "0"),
            "--batch_size: must be a positive integer",
        ),
    ):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and message in err and len(err.splitlines()) == 1, (argv, err)


def test_retrieval_run_selects_on_validation_and_writes_loadable_folders(products, tiny_towers_dir, tmp_path):
    out = tmp_path / "run"
    settings = ["--max_steps", "8", *validated_every(products, 4), "--report_to", "tensorboard"]
    assert main(retrieval_args(products, tiny_towers_dir, out, *settings)) == 0
    metrics = read_jsonl(out / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [2, 4, 6, 8]
    assert {"loss", "loss_contrastive", "loss_matching", "lr", "bad_records", "seen_records"} <= set(metrics[0])
    validation = read_jsonl(out / "validation.jsonl")
    assert [v["step"] for v in validation] == [4, 8] and {"i2t_r1", "t2i_r10", "score"} <= set(validation[0])
    best = json.loads((out / "best.json").read_text())
    assert best["score"] == max(v["score"] for v in validation)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    for folder in ("best", "final"):
        model = AutoModel.from_pretrained(out / folder)
        assert type(model) is FashionFINEModel and model.config.local_pooling
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["validation"] == "--val files" and summary["bad_records"] == 0
    assert summary["skipped_at_read"]["rows"] > 0


def test_global_only_with_a_held_out_share_of_the_training_products(products, tiny_towers_dir, tmp_path):
    out = tmp_path / "global"
    settings = ["--no_local_pooling", "--val_fraction", "0.25", "--max_steps", "2", "--matching_weight", "0"]
    assert main(retrieval_args(products, tiny_towers_dir, out, *settings)) == 0
    model = FashionFINEModel.from_pretrained(out / "final")
    assert not model.config.local_pooling and model.local_pooling is None
    with safe_open(str(out / "final" / "model.safetensors"), framework="pt") as weights:
        assert not any(name.startswith("local_pooling") for name in weights.keys())
    assert json.loads((out / "summary.json").read_text())["validation"] == "25.0% of the training data held out"
    assert "loss_matching" not in read_jsonl(out / "metrics.jsonl")[0]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(folder / "model.safetensors"), framework="pt") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}


def test_a_resumed_run_reaches_the_same_weights(products, tiny_towers_dir, tmp_path):
    common = ["--max_steps", "6", "--save_every", "3", *validated_every(products, 3)]
    assert main(retrieval_args(products, tiny_towers_dir, tmp_path / "whole", *common)) == 0
    assert main(retrieval_args(products, tiny_towers_dir, tmp_path / "cut", *common, "--stop_at_step", "4")) == 0
    assert not (tmp_path / "cut" / "final").exists()
    assert main(retrieval_args(products, tiny_towers_dir, tmp_path / "cut", *common, "--resume", "latest")) == 0
    assert [m["step"] for m in read_jsonl(tmp_path / "cut" / "metrics.jsonl")] == [2, 4, 6]
    for folder in ("final", "best"):
        whole, resumed = _weights(tmp_path / "whole" / folder), _weights(tmp_path / "cut" / folder)
        for name, value in whole.items():
            torch.testing.assert_close(resumed[name], value, rtol=0, atol=0, msg=f"{folder}: {name}")


def test_text_guided_run_trains_the_composition_that_eval_uses(products, tiny_towers_dir, tmp_path):
    out = tmp_path / "tgir"
    captions = [str(products / "captions" / f"cap.{c}.train.json") for c in CATEGORIES]
    assert (
        main(
            [
                "--task",
                "tgir",
                "--data",
                *captions,
                "--init",
                str(tiny_towers_dir),
                "--output_dir",
                str(out),
                "--val",
                *[str(products / "captions" / f"cap.{c}.val.json") for c in CATEGORIES],
                "--batch_size",
                "4",
                "--max_steps",
                "4",
                "--eval_every",
                "2",
                "--lr",
                "1e-3",
                "--num_workers",
                "0",
                "--log_every",
                "2",
                "--no_progress",
            ]
        )
        == 0
    )
    assert "loss_composition" in read_jsonl(out / "metrics.jsonl")[0]
    validation = read_jsonl(out / "validation.jsonl")[0]
    assert "score" in validation and any(key.endswith("_r10") for key in validation)
    model = FashionFINEModel.from_pretrained(out / "final")
    assert model.config.query_composition == "fusion"
    untouched = FashionFINEModel.from_pretrained(tiny_towers_dir)  # the matching head is not trained by tgir
    torch.testing.assert_close(model.matching_head.bias, untouched.matching_head.bias)
    assert model.fusion.layers[0].multihead_attn.out_proj.weight.abs().sum() > 0  # trained from zero
    result = fashion.main(
        [
            "--task",
            "fashioniq",
            "--model",
            str(out / "final"),
            "--images",
            str(products / "images"),
            "--data",
            *[str(p) for p in (products / "captions").glob("cap.*.train.json") if json.loads(p.read_text())],
            "--out",
            str(tmp_path / "eval"),
            "--no-cache",
            "--num-workers",
            "0",
        ]
    )
    assert result["embeddings"] == ["fusion"] and result["fusion"]["composition"] == "fusion"
    assert 0.0 <= result["fusion_avg_r10"] <= 1.0


def test_bad_items_are_counted_and_too_many_stop_the_run(products, tiny_towers_dir, tmp_path, capsys):
    lines = (products / "fashiongen" / "train.jsonl").read_text().splitlines()
    items = [json.loads(line) for line in lines]
    for item in items:  # the copy lives elsewhere: absolute image paths
        item["image"] = str((products / "fashiongen" / item["image"]).resolve())
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    broken_products = {item["product_id"] for item in items[:6]}  # 3 products, 2 images each
    for item in items:  # every image of those products is undecodable: found while training
        if item["product_id"] in broken_products:
            item["image"] = str(broken)
    items[-1]["image"] = str(products / "images" / "never_downloaded.png")  # missing: skipped while reading
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items))
    argv = retrieval_args(products, tiny_towers_dir, tmp_path / "run", "--epochs", "1")  # every product but one
    argv[argv.index("--data") + 1] = str(data)
    assert main(argv + ["--max_bad_fraction", "0.5"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["skipped_at_read"]["skipped_missing_image"] == 1
    assert summary["bad_records"] >= 4 and "cannot read image" in summary["bad_examples"][0]
    capsys.readouterr()
    assert (
        main(
            [*argv[: argv.index("--output_dir") + 1], str(tmp_path / "strict"), *argv[argv.index("--output_dir") + 2 :]]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot be used" in err and "missing_image 1" in err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deepspeed_two_processes_stop_and_resume(products, tiny_towers_dir, tmp_path):
    found = shutil.which("deepspeed")
    launcher = [found] if found else [sys.executable, "-m", "deepspeed.launcher.runner"]
    command = launcher + [
        "--num_gpus",
        "2",
        "--master_port",
        str(_free_port()),
        str(REPO / "scripts" / "finetune_fashion.py"),
    ]
    out = tmp_path / "ds"
    settings = ["--max_steps", "6", "--save_every", "3", "--log_every", "1", *validated_every(products, 3)]
    argv = retrieval_args(products, tiny_towers_dir, out, *settings)

    def run(*extra):
        result = subprocess.run(
            command + argv + list(extra), check=False, cwd=REPO, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
        return result

    run("--stop_at_step", "3")
    checkpoint = out / "checkpoints" / "step-00000003"
    assert sorted(p.name for p in checkpoint.glob("zero_pp_rank_*_optim_states.pt")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    resumed = run("--resume", "latest")
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert [m["step"] for m in read_jsonl(out / "metrics.jsonl")] == list(range(1, 7))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["engine"] == "deepspeed" and summary["world_size"] == 2 and summary["steps"] == 6
    assert [v["step"] for v in read_jsonl(out / "validation.jsonl")] == [3, 6]
    assert type(AutoModel.from_pretrained(out / "final")) is FashionFINEModel
    assert (out / "best" / "model.safetensors").is_file()


def test_an_unreadable_image_file_in_a_triplet_is_counted(products, tiny_towers_dir, tmp_path):
    root = tmp_path / "iq"
    shutil.copytree(products / "images", root / "images")
    shutil.copytree(products / "captions", root / "captions")
    triplets = json.loads((root / "captions" / "cap.toptee.train.json").read_text())
    Image.new("RGB", (8, 8)).save(root / "images" / "tiny.png")
    (root / "images" / "tiny.png").write_bytes(b"garbage")
    triplets[0]["target"] = "tiny"
    (root / "captions" / "cap.toptee.train.json").write_text(json.dumps(triplets))
    out = tmp_path / "run"
    assert (
        main(
            [
                "--task",
                "tgir",
                "--data",
                str(root / "captions" / "cap.toptee.train.json"),
                "--init",
                str(tiny_towers_dir),
                "--output_dir",
                str(out),
                "--batch_size",
                "4",
                "--epochs",
                "1",
                "--num_workers",
                "0",
                "--max_bad_fraction",
                "0.5",
                "--no_progress",
            ]
        )
        == 0
    )
    assert json.loads((out / "summary.json").read_text())["bad_records"] == 1


def test_finetuning_starts_from_an_official_fgclip_release_as_downloaded(products, tmp_path):
    from tests.hub_copies.clip import make_hub_copy

    release = make_hub_copy("qihoo360/fg-clip-base", tmp_path / "fg-clip-base")
    out = tmp_path / "run"
    assert main(retrieval_args(products, release, out, "--max_steps", "1")) == 0
    model = FashionFINEModel.from_pretrained(out / "final")
    assert model.config.vision_config.image_size == 224 and model.eos_token_id == 49407
    card = (out / "final" / "README.md").read_text()
    assert "Fashion-FINE finetuning" in card and str(release) in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0]  # the card's loading example, run as written
    Image.new("RGB", (40, 60), (200, 30, 30)).save(tmp_path / "photo.jpg")
    scope: dict = {}
    exec(compile(snippet.replace('"photo.jpg"', repr(str(tmp_path / "photo.jpg"))), "model card", "exec"), scope)
    assert scope["image_embeds"].shape == (1, 24) and scope["text_embeds"].shape == (1, 24)


def test_recipes_are_fashion_fines(tmp_path):
    from fgclip.fashion.cli import build_parser, config_from_args

    def config(*argv):
        return config_from_args(
            build_parser().parse_args(["--data", "d.h5", "--init", "m", "--output_dir", "o", *argv])
        )

    retrieval = config("--task", "retrieval")
    optim = retrieval.optim(1)
    assert (optim.lr, optim.weight_decay, retrieval.batch_size, retrieval.epochs) == (1e-5, 0.02, 64, 30)
    assert retrieval.optim(7).lr * retrieval.optim(7).min_lr_ratio == pytest.approx(1e-6)
    assert retrieval.optim(7).warmup_steps == 7  # one epoch
    assert (retrieval.loss.focal_gamma, retrieval.loss.focal_alpha, retrieval.loss.matching_weight) == (2.0, 0.25, 1.0)
    tgir = config("--task", "tgir")
    assert (tgir.optim(1).lr, tgir.optim(1).weight_decay, tgir.batch_size, tgir.epochs) == (3e-5, 0.3, 16, 10)
    assert tgir.optim(1).lr * tgir.optim(1).min_lr_ratio == pytest.approx(1e-7)
    assert (tgir.loss.focal_gamma, tgir.loss.focal_alpha, tgir.loss.matching_weight) == (0.0, 1.0, 0.0)
    assert config("--task", "retrieval", "--lr", "2e-5", "--no_local_pooling").local_pooling is False
    assert config("--task", "retrieval", "--no-local-pooling").local_pooling is False  # the kebab spelling
    assert config("--task", "tgir", "--out", "elsewhere").output_dir == "elsewhere"  # the old spelling
