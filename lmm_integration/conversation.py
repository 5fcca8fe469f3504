"""The one conversation format: LLaVA-1.5's Vicuna-v1 layout as a Jinja chat template.

    "<s><system> USER: <image>\\n<question> ASSISTANT: <answer></s>USER: <question> ASSISTANT:"

The template is saved with the tokenizer and the processor of every built model, so training (labels come
from its `{% generation %}` blocks through `return_assistant_tokens_mask`) and inference
(`processor.apply_chat_template(..., add_generation_prompt=True)`) render exactly the same text.
The BOS token is part of the template, so tokenize the rendered text without adding special tokens
(`apply_chat_template(..., tokenize=True)` of the tokenizer or the processor does that by itself).
This module also turns LLaVA's `{"from": "human"|"gpt", "value": ...}` turns into chat messages.
"""

from __future__ import annotations

import json

IMAGE_TOKEN = "<image>"
DEFAULT_SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLE_NAMES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

_TEMPLATE = """
{%- if bos_token is defined and bos_token -%}{{- bos_token -}}{%- endif -%}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] if messages[0]['content'] is string else messages[0]['content'][0]['text'] -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set system = DEFAULT_SYSTEM -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- if system -%}{{- system + ' ' -}}{%- endif -%}
{%- for message in loop_messages -%}
{%- if message['role'] == 'user' -%}
{{- 'USER: ' -}}
{%- if message['content'] is string -%}
{{- message['content'] -}}
{%- else -%}
{%- for item in message['content'] -%}{%- if item['type'] == 'image' -%}{{- IMAGE + '\\n' -}}{%- endif -%}{%- endfor -%}
{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{{- ' ' -}}
{%- elif message['role'] == 'assistant' -%}
{{- 'ASSISTANT: ' -}}
{%- generation -%}
{%- if message['content'] is string -%}{{- message['content'] -}}{%- else -%}
{%- for item in message['content'] -%}{%- if item['type'] == 'text' -%}{{- item['text'] -}}{%- endif -%}{%- endfor -%}
{%- endif -%}
{{- eos_token -}}
{%- endgeneration -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}
"""


def chat_template(system_prompt: str = DEFAULT_SYSTEM_PROMPT) -> str:
    """The Jinja chat template with `system_prompt` as the default system message ('' for none)."""
    header = "{%- set DEFAULT_SYSTEM = " + json.dumps(system_prompt) + " -%}"
    header += "{%- set IMAGE = " + json.dumps(IMAGE_TOKEN) + " -%}"
    return header + _TEMPLATE.strip()


class ConversationError(ValueError):
    """A LLaVA conversation that cannot be turned into chat messages; the message says why."""


def llava_turns_to_messages(turns: list[dict], with_image: bool) -> list[dict]:
    """LLaVA `conversations` -> chat messages (content lists, as the HF processors use).

    As in LLaVA-1.5, the `<image>` placeholder is taken out of the text and the image is put first in the
    turn that held it. Raises `ConversationError` for unknown roles, empty turns, or no assistant answer.
    """
    if not isinstance(turns, list) or not turns:
        raise ConversationError("conversations must be a non-empty list")
    messages: list[dict] = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ConversationError(f"turn {index} must be {{'from': ..., 'value': <string>}}")
        role = ROLE_NAMES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise ConversationError(f"turn {index} has unknown role {turn.get('from')!r}")
        text = turn["value"]
        if role == "system":
            messages.append({"role": "system", "content": text})
            continue
        content: list[dict] = []
        if with_image and IMAGE_TOKEN in text:
            content.append({"type": "image"})
            text = text.replace(IMAGE_TOKEN, "").strip()
        content.append({"type": "text", "text": text})
        messages.append({"role": role, "content": content})
    if not any(message["role"] == "assistant" for message in messages):
        raise ConversationError("the conversation has no assistant answer")
    return messages


def user_message(question: str, with_image: bool) -> dict:
    """One user turn for inference, with the image first when `with_image`."""
    content = [{"type": "image"}] if with_image else []
    content.append({"type": "text", "text": question})
    return {"role": "user", "content": content}
