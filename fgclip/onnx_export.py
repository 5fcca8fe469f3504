"""FG-CLIP as ONNX graphs for onnxruntime and other ONNX engines (the graphs of `python -m fgclip.convert
export-onnx`, which writes the folder with them).

Three graphs, each exported with torch's dynamo exporter, fp32, with dynamic batch and text-length axes:

* `vision.onnx`: `pixel_values` float32 `(B, 3, S, S)` -> `image_embeds` `(B, D)`, `dense` `(B, H, W, D)`
  (both L2-normalised, as `encode_image` / `encode_dense`) and `dense_unnormalized` `(B, H, W, D)`, the grid
  that RoIAlign pools into region embeddings (`encode_regions`; the README shows it in numpy);
* `text.onnx`: `input_ids`, `attention_mask` int64 `(N, L)`, `L <= 77` -> `text_embeds` `(N, D)`, the 77-slot path;
* `text_long.onnx`: the same for the 248-slot path and the long projection, `L <= 248`.

The folder also carries the model's tokenizer, its image processor config (square resize, CLIP normalisation),
a model card and `onnx_config.json` (names, shapes, lengths, the EOS id), so that it is all a deployment needs.
Texts must be right-padded (CLIP tokenizers pad on the right) and hold the EOS token: pooling is at the first EOS.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fgclip.errors import UserError

VISION_FILE, TEXT_FILE, TEXT_LONG_FILE, CONFIG_FILE = "vision.onnx", "text.onnx", "text_long.onnx", "onnx_config.json"
INSTALL_HINT = "pip install 'fgclip[onnx]'"
# Above this many bytes of weights a graph keeps them in a `<name>.data` file beside it (protobuf's 2 GiB limit).
SINGLE_FILE_LIMIT = 1_800_000_000


class VisionGraph(nn.Module):
    """One pass of the image tower: the global embedding and the dense grid share the trunk."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        trunk = self.model._vision_trunk(pixel_values)
        dense = self.model._dense_from_trunk(trunk)
        return F.normalize(self.model._global_from_trunk(trunk), dim=-1), F.normalize(dense, dim=-1), dense


class TextGraph(nn.Module):
    """`encode_text` on the short or long path."""

    def __init__(self, model, long: bool):
        super().__init__()
        self.model = model
        self.long = long

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids, attention_mask, long=self.long)


@dataclass
class OnnxExportInfo:
    """What `onnx_config.json` records: enough to feed the graphs without reading this code."""

    image_size: int
    grid_size: int
    embedding_dim: int
    short_max_length: int
    long_max_length: int
    eos_token_id: int
    opset: int
    vision: dict
    text: dict
    text_long: dict


def require_packages() -> None:
    """`UserError` naming what to install when the exporter's packages are missing."""
    missing = []
    for name in ("onnx", "onnxscript"):
        try:
            __import__(name)
        except ModuleNotFoundError:
            missing.append(name)
    if missing:
        raise UserError(f"the ONNX export needs {', '.join(missing)}: {INSTALL_HINT}")


def _export(
    module: nn.Module,
    example: tuple,
    path: Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict,
    opset: int | None,
) -> int:
    weight_bytes = sum(p.numel() * p.element_size() for p in module.parameters())
    with warnings.catch_warnings():
        # Dim names shared by two inputs are reported as "not used"; they are, through the shared constraint.
        warnings.filterwarnings("ignore", message=r".*axis name: .* will not be used.*")
        program = torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            opset_version=opset,
            external_data=weight_bytes > SINGLE_FILE_LIMIT,
            verbose=False,
        )
    return program.model.opset_imports[""]


def _example_texts(model, tokenizer, long: bool) -> dict[str, torch.Tensor]:
    # Two rows of different lengths, so no axis is specialised to the example (and padding is traced).
    encoded = tokenizer(["a photo of a cat", "a red umbrella"], long=long)
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


def export_onnx(model, tokenizer, directory: str | Path, opset: int | None = None) -> OnnxExportInfo:
    """Write `vision.onnx`, `text.onnx`, `text_long.onnx`, `onnx_config.json` and the tokenizer and image
    processor into `directory` (which must exist). `model` is an `FGCLIPModel`, `tokenizer` an `FGCLIPTokenizer`."""
    from fgclip.image_processing import image_processor

    require_packages()
    directory = Path(directory)
    model = model.float().eval()
    size, grid, dim = model.image_size, model.grid_size, model.config.projection_dim
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        opset = _export(
            VisionGraph(model).eval(),
            (torch.zeros(2, 3, size, size),),
            directory / VISION_FILE,
            ["pixel_values"],
            ["image_embeds", "dense", "dense_unnormalized"],
            {"pixel_values": {0: batch}},
            opset,
        )
        for long, name in ((False, TEXT_FILE), (True, TEXT_LONG_FILE)):
            length = torch.export.Dim("long_length" if long else "length", min=2, max=model.text_max_length(long))
            example = _example_texts(model, tokenizer, long)
            _export(
                TextGraph(model, long).eval(),
                (example["input_ids"], example["attention_mask"]),
                directory / name,
                ["input_ids", "attention_mask"],
                ["text_embeds"],
                {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
                opset,
            )
    text_io = {
        "inputs": {"input_ids": "int64 (N, L)", "attention_mask": "int64 (N, L), right-padded"},
        "outputs": {"text_embeds": f"float32 (N, {dim}), L2-normalised"},
    }
    info = OnnxExportInfo(
        image_size=size,
        grid_size=grid,
        embedding_dim=dim,
        short_max_length=model.text_max_length(False),
        long_max_length=model.text_max_length(True),
        eos_token_id=model.eos_token_id,
        opset=opset,
        vision={
            "file": VISION_FILE,
            "inputs": {"pixel_values": f"float32 (B, 3, {size}, {size})"},
            "outputs": {
                "image_embeds": f"float32 (B, {dim}), L2-normalised",
                "dense": f"float32 (B, {grid}, {grid}, {dim}), L2-normalised per cell",
                "dense_unnormalized": f"float32 (B, {grid}, {grid}, {dim}), the grid RoIAlign pools",
            },
        },
        text={"file": TEXT_FILE, **text_io, "max_length": model.text_max_length(False)},
        text_long={"file": TEXT_LONG_FILE, **text_io, "max_length": model.text_max_length(True)},
    )
    (directory / CONFIG_FILE).write_text(json.dumps(asdict(info), indent=2) + "\n")
    tokenizer.save_pretrained(directory)
    image_processor(size).save_pretrained(str(directory))
    return info


def is_export_output(entry: Path) -> bool:
    """Whether a top-level entry of an output folder is something `export_onnx` writes."""
    return entry.name.endswith((".onnx", ".onnx.data")) or entry.name in {
        CONFIG_FILE,
        "README.md",
        "preprocessor_config.json",
        "tokenizer_config.json",
        "tokenizer.json",
        "special_tokens_map.json",
        "vocab.json",
        "merges.txt",
        "chat_template.jinja",
    }
