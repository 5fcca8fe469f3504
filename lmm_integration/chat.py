"""Ask a LLaVA model (built or finetuned here, or any stock LLaVA folder) about one image.

    python -m lmm_integration.chat --model DIR --image IMG --question "What colour is the circle?"
    python -m lmm_integration.chat --model DIR --image IMG          # interactive: one question per line

The image is padded to a square with the processor's mean colour, as in training (LLaVA-1.5 `pad`).
Interactive mode keeps the conversation, so follow-up questions see earlier answers; an empty line,
`exit` or end of input stops it. The model is loaded and run by the project's one LLaVA path
(`fgclip.llava.generation`), the one the LMM evaluations use.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fgclip.cli import CommandParser, entry_point, option, options_from
from fgclip.errors import UserError
from fgclip.llava.settings import ChatSettings

if TYPE_CHECKING:  # loaded in main, after the options are checked: --help needs neither
    from PIL import Image

    from fgclip.llava.generation import LoadedLMM

__all__ = ["ChatSettings", "answer", "load_chat_model", "load_image", "main"]


@dataclass
class ChatInputs:
    model: Path = option("LLaVA folder (lmm_integration.build / train output, or stock)")
    image: Path = option("image file (any format Pillow opens)")
    question: str | None = option("ask this one question and exit (default: interactive)", None)


def load_chat_model(model_dir: str | Path, settings: ChatSettings | None = None) -> LoadedLMM:
    """The model and its processor from a LLaVA folder with a chat template (stock transformers loaders)."""
    from fgclip.llava.generation import load_lmm

    lmm = load_lmm(model_dir, settings or ChatSettings())
    if not lmm.has_chat_template:
        raise UserError(f"{model_dir} has no chat template; build it with lmm_integration.build")
    return lmm


def load_image(path: str | Path) -> Image.Image:
    """The image as RGB; a missing or unreadable file is a one-line `UserError`."""
    from fgclip.llava.generation import read_image

    if not Path(path).is_file():
        raise UserError(f"image not found: {path}")
    image = read_image(path)
    if image is None:
        raise UserError(f"cannot read image {path}")
    return image


def answer(lmm: LoadedLMM, image: Image.Image, messages: list[dict], question: str, settings: ChatSettings) -> str:
    """Append `question` (with the image on the first turn) to `messages`, generate, append the answer."""
    from fgclip.llava.generation import generate
    from lmm_integration.conversation import user_message

    messages.append(user_message(question, with_image=not messages))
    prompt = lmm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    text = generate(lmm, [image], [prompt], settings)[0]
    messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    return text


def build_parser() -> CommandParser:
    parser = CommandParser(prog="python -m lmm_integration.chat", description=__doc__)
    parser.add_options(ChatInputs)
    parser.add_options(ChatSettings, "generation")
    parser.add_argument("--no-pad", dest="pad_to_square", action="store_false", help=argparse.SUPPRESS)  # old spelling
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    inputs, settings = options_from(args, ChatInputs), options_from(args, ChatSettings)
    image = load_image(inputs.image)  # a bad image fails before the model loads
    lmm = load_chat_model(inputs.model, settings)

    import torch

    torch.manual_seed(settings.seed)
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


cli = entry_point(main)  # the console script (pyproject.toml [project.scripts])

if __name__ == "__main__":
    cli()
