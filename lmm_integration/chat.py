"""Ask a LLaVA model (built or finetuned here, or any stock LLaVA folder) about one image.

    python -m lmm_integration.chat --model DIR --image IMG --question "What colour is the circle?"
    python -m lmm_integration.chat --model DIR --image IMG          # interactive: one question per line

The image is padded to a square with the processor's mean colour, as in training (LLaVA-1.5 `pad`).
Interactive mode keeps the conversation, so follow-up questions see earlier answers; an empty line,
`exit` or end of input stops it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

import lmm_integration  # noqa: F401  (registers the dense tower type for --vision-features dense folders)
from fgclip.llava.boxes import expand_to_square, mean_background
from fgclip.errors import UserError
from fgclip.images import to_rgb
from lmm_integration.conversation import user_message



@dataclass
class ChatSettings:
    max_new_tokens: int = 128
    temperature: float = 0.0  # 0: greedy
    pad_to_square: bool = True
    device: str = "auto"


def load_chat_model(model_dir: str | Path, device: str = "auto"):
    """(model, processor) from a LLaVA folder, with stock transformers loaders."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"model folder not found or has no config.json: {model_dir}")
    target = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    try:
        model = LlavaForConditionalGeneration.from_pretrained(str(model_dir), dtype=dtype).to(target).eval()
        processor = AutoProcessor.from_pretrained(str(model_dir))
    except (OSError, ValueError) as error:
        raise UserError(f"cannot load {model_dir}: {str(error).splitlines()[0]}") from error
    if not getattr(processor, "chat_template", None):
        raise UserError(f"{model_dir} has no chat template; build it with lmm_integration.build")
    return model, processor


def load_image(path: str | Path, processor, pad_to_square: bool = True) -> Image.Image:
    """The image as RGB, padded to a square with the processor's mean colour when asked."""
    try:
        with Image.open(path) as image:
            image = to_rgb(image)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"cannot read image {path}: {error}") from error
    if pad_to_square:
        image = expand_to_square(image, mean_background(getattr(processor.image_processor, "image_mean", None) or (0.5,) * 3))
    return image


@torch.no_grad()
def answer(model, processor, image: Image.Image, messages: list[dict], question: str, settings: ChatSettings) -> str:
    """Append `question` (with the image on the first turn) to `messages`, generate, append the answer."""
    messages.append(user_message(question, with_image=not messages))
    if len(messages) == 1:
        messages[0]["content"][0]["image"] = image
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    ).to(model.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    sampling = settings.temperature > 0
    output = model.generate(
        **inputs, max_new_tokens=settings.max_new_tokens, do_sample=sampling,
        temperature=settings.temperature if sampling else None, top_p=None, top_k=None,
        pad_token_id=processor.tokenizer.pad_token_id,
    )
    text = processor.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lmm_integration.chat", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="LLaVA folder (lmm_integration.build / train output, or stock)")
    parser.add_argument("--image", required=True, help="image file (any format Pillow opens)")
    parser.add_argument("--question", help="ask this one question and exit (default: interactive)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest answer in tokens")
    parser.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy")
    parser.add_argument("--no-pad", action="store_true", help="squash the image instead of padding it to a square")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = ChatSettings(args.max_new_tokens, args.temperature, not args.no_pad, args.device)
    try:
        if not Path(args.image).is_file():
            raise UserError(f"image not found: {args.image}")
        load_image(args.image, None, pad_to_square=False)  # fail on a bad image before loading the model
        model, processor = load_chat_model(args.model, settings.device)
        image = load_image(args.image, processor, settings.pad_to_square)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    messages: list[dict] = []
    if args.question:
        print(answer(model, processor, image, messages, args.question, settings))
        return 0
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("question> " if interactive else "").strip()
        except EOFError:
            break
        if not question or question.lower() == "exit":
            break
        print(answer(model, processor, image, messages, question, settings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
