"""How questions become LLaVA prompts, and the instruction suffixes LLaVA-1.5 evaluates with.

A folder whose processor has a chat template is prompted through it (`apply_chat_template` with one user
turn: the image, then the question). Otherwise the built-in LLaVA-1.5 single-turn format is used:
`USER: <image>\\n{question} ASSISTANT:` (the llava-hf form of the vicuna_v1 conversation, without its
system sentence).
"""

from __future__ import annotations

PROMPT_FORMATS = ("auto", "chat-template", "llava15")
LLAVA15_TEMPLATE = "USER: {image_token}\n{question} ASSISTANT:"

# LLaVA-1.5's evaluation instructions (its POPE/GQA and MMBench-style prompts)
SHORT_ANSWER = "Answer the question using a single word or phrase."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."


def with_suffix(question: str, suffix: str) -> str:
    """`question` then the instruction on its own line, as in LLaVA-1.5's evaluation files."""
    return f"{question.rstrip()}\n{suffix}"


def format_prompt(processor, question: str, prompt_format: str = "auto") -> str:
    """The full text prompt (with one image token) for `question`.

    prompt_format: 'auto' (the folder's chat template when it has one, else LLaVA-1.5), 'chat-template'
    (required; ValueError when the folder has none) or 'llava15' (always the built-in format).
    """
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"prompt_format must be one of {PROMPT_FORMATS}, got {prompt_format!r}")
    has_template = bool(getattr(processor, "chat_template", None))
    if prompt_format == "chat-template" and not has_template:
        raise ValueError("the model folder's processor has no chat template (use --prompt_format llava15)")
    if has_template and prompt_format != "llava15":
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    image_token = getattr(processor, "image_token", None) or "<image>"
    return LLAVA15_TEMPLATE.format(image_token=image_token, question=question)
