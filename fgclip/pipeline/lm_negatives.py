"""LM-written hard negatives: any transformers causal LM and a prompt (the paper used Llama-3.1-70B).

The LM's answer is split into lines, cleaned of list numbering and quotes, and validated with the same
rules as the rule-based generator (`fgclip.pipeline.negatives.validate_negatives`); what fails is
replaced by rule-based negatives in the step that calls this.
"""

from __future__ import annotations

import re

import torch

from fgclip.pipeline.config import ModelLoading, NegativeConfig
from fgclip.pipeline.runtime import batches, load_pretrained

_LIST_MARK = re.compile(r"^\s*(?:\(?\d+[.):]|[-*\u2022])\s*")
# "1. a red cup 2. a blue cup" on one line: split before each number that starts an item.
_INLINE_ITEM = re.compile(r"\s+(?=\(?\d+[.):]\s)")


def parse_lm_output(text: str) -> list[str]:
    """Candidate phrases of an LM answer: one per line (or per inline list item), without numbering,
    bullets or quotes."""
    phrases = []
    for line in text.splitlines():
        for item in _INLINE_ITEM.split(line):
            phrase = _LIST_MARK.sub("", item).strip().strip("\"'`").strip()
            if phrase:
                phrases.append(phrase)
    return phrases


class LMNegativeWriter:
    """Batched greedy generation of negatives for many (expression, noun) pairs."""

    def __init__(self, config: NegativeConfig, device: str, loading: ModelLoading | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.config, self.device = config, device
        self.tokenizer, self.model, self.dtype = load_pretrained(
            "the negatives LM", config.model, AutoTokenizer, AutoModelForCausalLM, device, loading
        )
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    def prompt_text(self, expression: str, noun: str) -> str:
        text = self.config.prompt.format(expression=expression, noun=noun, count=self.config.count)
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": text}]
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text + "\n"

    @torch.inference_mode()
    def write(self, items: list[tuple[str, str]]) -> list[str]:
        """The raw answer for each (expression, noun), in order."""
        answers: list[str] = []
        for batch in batches(items, self.config.batch_size):
            prompts = [self.prompt_text(expression, noun) for expression, noun in batch]
            # A chat template already writes the BOS token; a plain prompt needs the tokenizer's.
            templated = bool(getattr(self.tokenizer, "chat_template", None))
            inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not templated)
            inputs = inputs.to(self.model.device)
            output = self.model.generate(
                **inputs,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
            answers += self.tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return answers
