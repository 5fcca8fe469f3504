"""The LMM runs on a folder made by `lmm_integration.build` (FG-CLIP tower + tiny Llama, LLaVA-1.5 template
with its own BOS): the stock loaders read it, prompts get exactly one BOS, and the commands score it."""

import pytest

from eval import localization
from fgclip.llava.generation import load_lmm, prepare_inputs
from fgclip.llava.generation import read_image as load_image
from fgclip.llava.prompting import SHORT_ANSWER, format_prompt
from fgclip.llava.settings import GenerationSettings
from tests.conftest import save_tiny_fgclip
from tests.eval_lmm.conftest import make_images, run_lmm_evaluations

# what the tiny LM's word vocabulary is trained on: the question asked here, the evaluations' own prompt parts,
# the answers and a box
WORDS = [
    "Is there a dog in the image ?",
    SHORT_ANSWER,
    "Yes No",
    localization.PROMPT.format(expression="the dog"),
    "[0.12, 0.30, 0.55, 0.91]",
]


@pytest.fixture(scope="module")
def built_llava(tmp_path_factory):
    from benchmarks.llava_miniature.tiny_lm import build_tiny_llm
    from lmm_integration.build import BuildOptions, build_llava

    root = tmp_path_factory.mktemp("built")
    save_tiny_fgclip(root / "fgclip")
    build_tiny_llm(root / "llm", WORDS, hidden_size=32, num_layers=1)
    return build_llava(root / "fgclip", root / "llm", root / "llava", BuildOptions())


def test_prompts_through_the_built_template_get_one_bos(built_llava, tmp_path):
    (image,) = make_images(tmp_path, ["0.png"])
    lmm = load_lmm(built_llava, GenerationSettings(device="cpu"))
    inputs = prepare_inputs(
        lmm, [load_image(image)], ["Is there a dog in the image ?"], GenerationSettings(device="cpu")
    )
    tokenizer = lmm.processor.tokenizer
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(tokenizer.bos_token_id) == 1 and ids[0] == tokenizer.bos_token_id
    text = format_prompt(lmm.processor, "Is there a dog in the image ?")
    assert text.startswith(tokenizer.bos_token) and "USER: <image>\nIs there a dog in the image ? ASSISTANT:" in text


def test_pope_and_localization_run_on_the_built_folder(built_llava, tmp_path):
    run_lmm_evaluations(built_llava, tmp_path)
