"""Ask a LLaVA model (built or finetuned here, or any stock LLaVA folder) about one image.

    python -m lmm_integration.chat --model DIR --image IMG --question "What colour is the circle?"
    python -m lmm_integration.chat --model DIR --image IMG          # interactive: one question per line

The image is padded to a square with the processor's mean colour, as in training (LLaVA-1.5 `pad`).
Interactive mode keeps the conversation, so follow-up questions see earlier answers; an empty line,
`exit` or end of input stops it. Loading and generation are `fgclip.lmm.generation`'s, as in the LMM evaluations.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.cli import CommandParser, option, options_from, run
from fgclip.errors import UserError
from fgclip.lmm.settings import DecodingSettings, GenerationSettings
from lmm_integration.conversation import user_message

if TYPE_CHECKING:
    from PIL import Image

    from fgclip.lmm.generation import LoadedLMM

CHAT_MAX_NEW_TOKENS = 128  # a chat answer is a sentence or two, not the evaluations' single word


@dataclass
class ChatInputs:
    model: Path = option("LLaVA folder (lmm_integration.build / train output, or stock)")
    image: Path = option("image file (any format Pillow opens)")
    question: str | None = option("ask this one question and exit (default: interactive)", None)


def load_chat_model(model_dir: str | Path, settings: DecodingSettings | None = None) -> LoadedLMM:
    """A LLaVA folder with a chat template, loaded by the one LLaVA loader (`fgclip.lmm.generation.load_lmm`)."""
    import lmm_integration.dense_tower  # noqa: F401  (registers the tower type of --vision_features dense folders)
    from fgclip.lmm.generation import load_lmm

    lmm = load_lmm(model_dir, _generation_settings(settings or DecodingSettings()))
    if not getattr(lmm.processor, "chat_template", None):
        raise UserError(f"{model_dir} has no chat template; build it with lmm_integration.build")
    return lmm


def load_image(path: str | Path) -> Image.Image:
    """The image as RGB, or a one-line `UserError` when it is missing or unreadable."""
    from fgclip.lmm.generation import load_image as read_rgb

    if not Path(path).is_file():
        raise UserError(f"image not found: {path}")
    image = read_rgb(Path(path))
    if image is None:
        raise UserError(f"cannot read image {path}")
    return image


def _generation_settings(settings: DecodingSettings) -> GenerationSettings:
    # one conversation: one prompt per generate() call, always through the folder's chat template
    return GenerationSettings(**vars(settings), batch_size=1, prompt_format="chat-template")


def answer(lmm: LoadedLMM, image: Image.Image, messages: list[dict], question: str,
           settings: DecodingSettings) -> str:
    """Append `question` (with the image on the first turn) to `messages`, generate, append the answer."""
    from fgclip.lmm.generation import encode_prompts, generate_from_inputs

    messages.append(user_message(question, with_image=len(messages) == 0))
    text = lmm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = encode_prompts(lmm, [image], [text], settings.pad_to_square)
    reply = generate_from_inputs(lmm, inputs, _generation_settings(settings))[0]
    messages.append({"role": "assistant", "content": [{"type": "text", "text": reply}]})
    return reply


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m lmm_integration.chat", description=__doc__)
    parser.add_options(ChatInputs)
    parser.add_options(DecodingSettings, "generation")
    parser.set_defaults(max_new_tokens=CHAT_MAX_NEW_TOKENS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs, settings = options_from(args, ChatInputs), options_from(args, DecodingSettings)
    image = load_image(inputs.image)  # fail on a bad image before loading the model
    lmm = load_chat_model(inputs.model, settings)
    messages: list[dict] = []
    if inputs.question:
        print(answer(lmm, image, messages, inputs.question, settings))
        return 0
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("question> " if interactive else "").strip()
        except EOFError:
            break
        if not question or question.lower() == "exit":
            break
        print(answer(lmm, image, messages, question, settings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
