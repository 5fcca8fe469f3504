"""A tiny Llama-architecture language model with a word-level tokenizer, for the CPU miniature and tests.

The tokenizer is trained with the `tokenizers` library on the texts the model will see (questions,
answers, the chat frame), so a few thousand words cover the whole synthetic vocabulary. The model is
randomly initialised: the miniature teaches it everything in stages A and B.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"


def train_word_tokenizer(texts: Iterable[str], min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """Word-level tokenizer over `texts`: words, decimal numbers and single punctuation marks are tokens.

    A box coordinate such as "0.25" is one token (101 of them cover two-decimal boxes), so decoded answers
    read "[ 0.25 , 0.50 , ... ]", which the project's box parser reads. The decoder joins tokens with spaces.
    """
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(r"\d+\.\d+|\w+|[^\w\s]"), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    trainer = trainers.WordLevelTrainer(special_tokens=[UNK, BOS, EOS, PAD], min_frequency=min_frequency)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=2048,
    )


def tiny_llama_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    heads: int = 4,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> LlamaConfig:
    special = {}
    if tokenizer is not None:
        special = dict(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        **special,
    )


def build_tiny_llm(
    directory: str | Path, texts: Iterable[str], hidden_size: int = 128, num_layers: int = 2, seed: int = 0
) -> Path:
    """Train the tokenizer on `texts`, make a random tiny Llama, save both to `directory`."""
    directory = Path(directory)
    tokenizer = train_word_tokenizer(texts)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(tiny_llama_config(len(tokenizer), hidden_size, num_layers, tokenizer=tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory
