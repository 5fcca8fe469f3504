"""FG-CLIP inside LLaVA with the folders users download (tests/hub_copies/llava.py): a Vicuna v1.5 folder as
`--llm`, a tower swap into llava-hf/llava-1.5-7b-hf, the LMM evaluations on both, and scripts/finetune_llava.sh
on the swap (on the Vicuna build it runs in tests/lmm_integration/test_readme_llava.py, the README's commands)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor, AutoTokenizer, LlavaForConditionalGeneration

from lmm_integration.build import main as build
from lmm_integration.data import IGNORE_INDEX, ConversationDataset
from tests.eval_lmm.conftest import run_lmm_evaluations
from tests.hub_copies.clip import make_hub_copy
from tests.hub_copies.llava import (
    IMAGE_TOKEN_INDEX,
    LLAVA_VOCAB_SIZE,
    PAD_TOKEN_INDEX,
    make_llava_hub_copy,
)
from tests.lmm_integration.conftest import free_port, write_colour_set

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> dict[str, Path]:
    """The folders a user has after downloading: Vicuna, llava-hf's LLaVA-1.5 and the official fg-clip-large (336 px,
    patch 14: llava-hf's projector fits its tower, as the real ones do)."""
    root = tmp_path_factory.mktemp("downloads")
    return {
        "vicuna": make_llava_hub_copy("lmsys/vicuna-7b-v1.5", root / "vicuna-7b-v1.5"),
        "llava_hf": make_llava_hub_copy("llava-hf/llava-1.5-7b-hf", root / "llava-1.5-7b-hf"),
        "fgclip": make_hub_copy("qihoo360/fg-clip-large", root / "fg-clip-large"),
    }


@pytest.fixture(scope="module")
def built(downloads, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "built"
    assert build(["--vision", str(downloads["fgclip"]), "--llm", str(downloads["vicuna"]), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def swapped(downloads, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "swapped"
    assert (
        build(["--vision", str(downloads["fgclip"]), "--from-llava", str(downloads["llava_hf"]), "--out", str(out)])
        == 0
    )
    return out


def test_the_vicuna_copy_is_the_folder_users_have(downloads):
    folder = downloads["vicuna"]
    assert {p.name for p in folder.iterdir()} == {
        "config.json",
        "generation_config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
        "pytorch_model.bin.index.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "tokenizer_config.json",
        ".cache",
    }
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == 32000 and tokenizer.pad_token is None and "<image>" not in tokenizer.get_vocab()
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer("Is there a dog?")["input_ids"][0] == 1
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["temperature"] == 0.9 and "do_sample" not in generation  # what transformers refuses to save


def test_the_llava_hf_copy_loads_as_the_hub_folder_does(downloads):
    folder = downloads["llava_hf"]
    model, info = LlavaForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]  # the 4.36 weight names are mapped
    config = model.config
    assert (config.image_token_index, config.vision_feature_layer, config.text_config.vocab_size) == (32000, -2, 32064)
    processor = AutoProcessor.from_pretrained(folder)
    assert processor.tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [IMAGE_TOKEN_INDEX, PAD_TOKEN_INDEX]
    assert processor.image_processor.do_center_crop and processor.image_processor.size["shortest_edge"] == 336


def test_build_with_the_vicuna_folder(built, downloads):
    note = json.loads((built / "lmm_build.json").read_text())
    assert note["complete"] and note["image_token_id"] == 32000 and note["pad_token_id"] == 32001
    assert note["generation_config_dropped"] == ["temperature=0.9", "top_p=0.6"]
    model = LlavaForConditionalGeneration.from_pretrained(built)
    processor = AutoProcessor.from_pretrained(built)
    assert model.config.image_token_index == 32000 and model.config.image_seq_length == 576
    assert model.get_input_embeddings().weight.shape[0] == len(processor.tokenizer) == 32002
    assert model.generation_config.temperature is None and model.generation_config.pad_token_id == 32001
    # a training conversation: one BOS, 576 image tokens, labels on the answer and its EOS only
    data = write_colour_set(built.parent / "colours", count=2)
    dataset = ConversationDataset(data, processor, 576, show_progress=False)
    example = dataset.examples[0]
    assert example.input_ids.count(1) == 1 and example.input_ids[0] == 1
    assert example.input_ids.count(IMAGE_TOKEN_INDEX) == 576
    answer = [token for token in example.labels if token != IGNORE_INDEX]
    assert processor.tokenizer.decode(answer) == "It is red</s>"
    assert processor.tokenizer.pad_token_id == 32001  # batches pad with the added <pad>, not <unk> (Vicuna's config: 0)


def test_tower_swap_into_llava_hf_keeps_lm_and_projector(swapped, downloads):
    note = json.loads((swapped / "lmm_build.json").read_text())
    assert note["projector"].startswith("kept") and note["image_tokens_per_image"] == 576
    assert note["chat_template"].startswith("replaced") and "no BOS" in note["chat_template"]
    old = LlavaForConditionalGeneration.from_pretrained(downloads["llava_hf"])
    new = LlavaForConditionalGeneration.from_pretrained(swapped)
    torch.testing.assert_close(
        new.model.multi_modal_projector.linear_1.weight, old.model.multi_modal_projector.linear_1.weight
    )
    torch.testing.assert_close(new.lm_head.weight, old.lm_head.weight)
    assert new.config.image_token_index == 32000 and new.config.text_config.vocab_size == LLAVA_VOCAB_SIZE
    processor = AutoProcessor.from_pretrained(swapped)
    assert not processor.image_processor.do_center_crop  # FG-CLIP's square resize replaces CLIP's crop
    inputs = processor.apply_chat_template(
        [
            {
                "role": "user",
                "content": [
                    {"type": "image", "image": Image.new("RGB", (48, 36), (10, 120, 200))},
                    {"type": "text", "text": "Is there a dog?"},
                ],
            }
        ],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
    )
    assert (inputs["input_ids"] == 1).sum() == 1 and (inputs["input_ids"] == 32000).sum() == 576
    assert new.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] > inputs["input_ids"].shape[1]


@pytest.mark.parametrize("which", ["built", "swapped"])
def test_lmm_evaluations_run_on_the_results(which, request, tmp_path):
    run_lmm_evaluations(request.getfixturevalue(which), tmp_path)


def _finetune(*settings: str, log: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    with log.open("w") as handle:
        return subprocess.run(
            [
                "bash",
                str(REPO / "scripts" / "finetune_llava.sh"),
                "BF16=0",
                "GRAD_CKPT=0",
                "NUM_WORKERS=0",
                "EXTRA_ARGS=--logging-steps 1",
                *settings,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
            timeout=600,
            check=False,
        )


@pytest.mark.slow
def test_finetune_script_trains_stage_b_on_the_llava_hf_swap(swapped, tmp_path):
    data = write_colour_set(tmp_path / "colours", count=4)
    out = tmp_path / "run"
    result = _finetune(
        f"BUILT={swapped}",
        f"OUT={out}",
        "STAGES=B",
        f"FINETUNE_DATA={data}",
        "NUM_GPUS=1",
        "MAX_STEPS_B=1",
        "BATCH_B=1",
        f"MASTER_PORT={free_port()}",
        log=tmp_path / "log",
    )
    assert result.returncode == 0, (tmp_path / "log").read_text()[-3000:]
    info = json.loads((out / "stage_b" / "run_info.json").read_text())
    assert info["world_size"] == 1 and info["deepspeed_zero_stage"] == 2 and info["steps"] == 1
    assert AutoProcessor.from_pretrained(out / "stage_b" / "final").tokenizer.pad_token_id == 32001
