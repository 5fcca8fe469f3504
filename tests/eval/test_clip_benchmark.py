"""`python -m eval.clip_benchmark`: CLIP_benchmark's own CLI with `--model_type fgclip`, on tiny datasets in
CLIP_benchmark's webdataset layout made here; its metrics equal the same computation done with encode_*."""

from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("clip_benchmark")

from eval.clip_benchmark import main, topk_accuracy  # noqa: E402
from fgclip import FGCLIPModel, FGCLIPTokenizer  # noqa: E402
from fgclip.cli import run  # noqa: E402
from fgclip.folders import save_with_processors  # noqa: E402
from fgclip.transforms import image_transform  # noqa: E402
from tests.conftest import tiny_config  # noqa: E402
from tests.hub_copies.clip import make_hub_copy  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["red square", "green circle", "blue triangle", "yellow star", "purple ring", "white cross"]
TEMPLATES = ["a photo of a {c}.", "a drawing of the {c}, small and plain."]


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_shard(path: Path, samples: list[dict[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for index, sample in enumerate(samples):
            for extension, payload in sample.items():
                info = tarfile.TarInfo(f"s{index:05d}.{extension}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    (path.parent / "nshards.txt").write_text("1\n")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    model = FGCLIPModel(tiny_config()).eval()
    with torch.no_grad():  # long-text weights as after training, so that --long gives other numbers
        model.long_text_positions.residual.add_(torch.randn_like(model.long_text_positions.residual))
        model.long_text_projection.weight.add_(torch.randn_like(model.long_text_projection.weight))
    folder = tmp_path_factory.mktemp("fgclip") / "model"
    save_with_processors(model, folder)
    return folder


@pytest.fixture(scope="module")
def classification_set(tmp_path_factory) -> tuple[Path, list[bytes], list[int]]:
    root = tmp_path_factory.mktemp("wds_cls")
    images = [_png(seed) for seed in range(14)]
    labels = [index % len(CLASSES) for index in range(len(images))]
    (root / "classnames.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "zeroshot_classification_templates.txt").write_text("\n".join(TEMPLATES) + "\n")
    samples = [{"png": png, "cls": str(label).encode()} for png, label in zip(images, labels)]
    _write_shard(root / "test" / "0.tar", samples)
    return root, images, labels


def _image_embeddings(model: FGCLIPModel, images: list[bytes]) -> torch.Tensor:
    transform = image_transform(model.image_size)
    pixels = torch.stack([transform(Image.open(io.BytesIO(png))) for png in images])
    with torch.no_grad():
        return model.encode_image(pixels)


def _text_embeddings(model: FGCLIPModel, tokenizer: FGCLIPTokenizer, texts: list[str], long: bool) -> torch.Tensor:
    with torch.no_grad():
        return model.encode_text(**tokenizer(texts, long=long), long=long)


def _expected_classification(model_dir: Path, images: list[bytes], labels: list[int], long: bool) -> dict:
    model, tokenizer = FGCLIPModel.from_pretrained(model_dir).eval(), FGCLIPTokenizer.from_pretrained(model_dir)
    classes = []
    for name in CLASSES:
        mean = _text_embeddings(model, tokenizer, [t.format(c=name) for t in TEMPLATES], long).mean(0)
        classes.append(F.normalize(mean, dim=0))
    scores = _image_embeddings(model, images) @ torch.stack(classes).T
    ranked = scores.argsort(dim=1, descending=True)
    target = torch.tensor(labels)
    recalls = [(ranked[target == c, 0] == c).float().mean().item() for c in range(len(CLASSES))]
    return {
        "acc1": (ranked[:, 0] == target).float().mean().item(),
        "acc5": (ranked[:, :5] == target[:, None]).any(1).float().mean().item(),
        "mean_per_class_recall": float(np.mean(recalls)),
    }


def _eval_argv(pretrained: Path, dataset_root: Path, *extra: str) -> list[str]:
    """`clip_benchmark eval` of an fgclip folder on the tiny webdataset, in this process, quietly: `extra` added."""
    return [
        *("eval", "--model_type", "fgclip", "--pretrained", str(pretrained), "--dataset", "wds/tiny"),
        *("--dataset_root", str(dataset_root), "--num_workers", "0", "--quiet", *extra),
    ]


def _run(tmp_path: Path, dataset_root: Path, model_dir: Path, *extra: str) -> dict:
    output = tmp_path / "result.json"
    code = main(
        _eval_argv(
            model_dir,
            dataset_root,
            *("--model", "fgclip-tiny", "--batch_size", "4", "--no_amp", "--output", str(output)),
            *extra,
        )
    )
    assert code == 0
    return json.loads(output.read_text())


@pytest.fixture(scope="module")
def hub_clip_dir(tmp_path_factory) -> Path:
    """A stock CLIP folder as downloaded (tiny copy of openai/clip-vit-base-patch16: legacy eos id, 224 px)."""
    return make_hub_copy("openai/clip-vit-base-patch16", tmp_path_factory.mktemp("hub") / "clip-vit-base-patch16")


@pytest.mark.parametrize(
    ("folder", "long"),
    [("ours", False), ("ours", True), pytest.param("hub_clip", False, marks=pytest.mark.slow)],
    ids=["short", "long", "stock-clip-folder"],
)
def test_zero_shot_classification_equals_encode_star(tmp_path, request, classification_set, folder, long):
    model_dir = request.getfixturevalue("model_dir" if folder == "ours" else "hub_clip_dir")
    root, images, labels = classification_set
    result = _run(tmp_path, root, model_dir, *(["--long"] if long else []))
    assert result["task"] == "zeroshot_classification" and result["pretrained"] == str(model_dir)
    expected = _expected_classification(model_dir, images, labels, long)
    for name, value in expected.items():
        assert result["metrics"][name] == pytest.approx(value, abs=1e-6), name
    if folder == "ours":  # trained-looking long weights: --long gives other numbers
        assert expected != _expected_classification(model_dir, images, labels, not long)


def test_zero_shot_retrieval_equals_encode_star(tmp_path, model_dir):
    root = tmp_path / "wds_ret"
    images = [_png(100 + seed) for seed in range(6)]
    captions = [[f"picture number {i} with noise", f"another caption of image {i}"] for i in range(len(images))]
    (root).mkdir()
    (root / "dataset_type.txt").write_text("retrieval\n")
    _write_shard(
        root / "test" / "0.tar",
        [{"png": png, "txt": "\n".join(texts).encode()} for png, texts in zip(images, captions)],
    )
    result = _run(tmp_path, root, model_dir, "--task", "zeroshot_retrieval", "--recall_k", "1", "3")
    model, tokenizer = FGCLIPModel.from_pretrained(model_dir).eval(), FGCLIPTokenizer.from_pretrained(model_dir)
    texts = [text for group in captions for text in group]
    owner = torch.tensor([i for i, group in enumerate(captions) for _ in group])
    scores = _text_embeddings(model, tokenizer, texts, False) @ _image_embeddings(model, images).T  # (T, I)
    for k in (1, 3):
        text_to_image = (scores.topk(k, dim=1).indices == owner[:, None]).any(1).float().mean().item()
        top_texts = scores.T.topk(k, dim=1).indices  # (I, k) text rows
        image_to_text = (owner[top_texts] == torch.arange(len(images))[:, None]).any(1).float().mean().item()
        assert result["metrics"][f"image_retrieval_recall@{k}"] == pytest.approx(text_to_image, abs=1e-6)
        assert result["metrics"][f"text_retrieval_recall@{k}"] == pytest.approx(image_to_text, abs=1e-6)


def test_upstream_accuracy_defect_is_real_and_replaced():
    from clip_benchmark.metrics import zeroshot_classification

    logits, target = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3]]), torch.tensor([1, 2])
    assert topk_accuracy(logits, target, topk=(1, 2)) == [0.5, 1.0]
    if np.lib.NumpyVersion(np.__version__) >= "2.4.0" and zeroshot_classification.accuracy is not topk_accuracy:
        with pytest.raises(TypeError):  # the published package, as CLIP_benchmark 1.6.2 ships it
            zeroshot_classification.accuracy(logits, target, topk=(1,))


def test_default_output_template_with_a_folder_and_missing_output_folder(
    tmp_path, model_dir, classification_set, monkeypatch, capsys
):
    root, _, _ = classification_set
    monkeypatch.chdir(tmp_path)
    args = _eval_argv(model_dir, root, "--model", "m", "--no_amp")
    assert main(args) == 0  # the default template holds {pretrained}: a path with slashes
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1 and "model" in written[0].name and "/" not in written[0].name
    assert run(main, [*args, "--output", str(tmp_path / "missing" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_bad_pretrained_is_one_line_exit_2(tmp_path, classification_set, capsys):
    root, _, _ = classification_set
    code = run(main, _eval_argv(tmp_path / "nope", root, "--output", str(tmp_path / "r.json")))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "not a folder" in err and "\n" not in err


def test_missing_requests_is_a_clear_error_and_the_extra_declares_it(monkeypatch, capsys):
    for name in [name for name in sys.modules if name == "clip_benchmark" or name.startswith("clip_benchmark.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "requests", None)  # as on a machine where nothing else installed it
    assert run(main, ["eval", "--model_type", "fgclip"]) == 2
    err = capsys.readouterr().err
    assert "requests" in err and "fgclip[clip-benchmark]" in err
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in ("clip-benchmark", "test"):
        names = {requirement.split(">")[0].split("=")[0].split("<")[0] for requirement in extras[extra]}
        assert {"clip-benchmark", "requests"} <= names, extra


def test_help_names_the_long_option(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "--long" in out and "fgclip" in out and "--dataset_root" in out
