"""Tiny randomly initialised model folders for the model-backed pipeline steps, built from configs
(no download): a LLaVA captioner, an OWLv2 and a Grounding DINO detector, and a Llama causal LM.

They produce nonsense, but they go through the same loading (`from_pretrained` on a folder), prompting,
batching and decoding code as full-size models. The word-level vocabulary is made of caption words so
that spaCy finds noun chunks in what the tiny captioner writes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.eval_lmm.tiny_llava import save_llava_folder, word_level_tokenizer

CAPTION_WORDS = (
    "a the dog cat sofa table chair car tree cup shirt hat red blue green brown white black small large "
    "wooden metal striped two three on with and in of . , describe image detail this phrase rewrite noun "
    "keep write one per line different changing only its attributes colour material size count texture "
    "pattern or state nothing else into phrases that object by exactly as it is USER: ASSISTANT: "
    "1. 2. 3. 4. 5. 6. 7. 8. 9. 10."
).split()

CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image> {% else %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %} {% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def word_tokenizer(extra_special: tuple[str, ...] = ()):
    """A word-level fast tokenizer over CAPTION_WORDS ("USER:", "1." are words: only whitespace splits)."""
    return word_level_tokenizer(CAPTION_WORDS, split_punctuation=False, extra_special=extra_special)


def tiny_llama_config(tokenizer, max_position_embeddings: int):
    """A 2-layer Llama whose vocabulary and special-token ids are the tokenizer's."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SMALL,
    )


def build_tiny_llava(folder: Path, chat_template: bool = True, seed: int = 0) -> Path:
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    tokenizer = word_tokenizer(("<image>",))
    vision = CLIPVisionConfig(**SMALL, image_size=32, patch_size=8)
    text = tiny_llama_config(tokenizer, max_position_embeddings=256)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layer=-2,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    return save_llava_folder(folder, model, tokenizer, 32, 8, CHAT_TEMPLATE if chat_template else None)


def build_tiny_owlv2(folder: Path, seed: int = 0) -> Path:
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    from fgclip.tokenizer import build_clip_tokenizer

    config = Owlv2Config(
        text_config=dict(**SMALL, max_position_embeddings=16),
        vision_config=dict(**SMALL, image_size=32, patch_size=8),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = Owlv2ForObjectDetection(config).eval()
    processor = Owlv2Processor(
        image_processor=Owlv2ImageProcessor(size={"height": 32, "width": 32}), tokenizer=build_clip_tokenizer(16)
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_grounding_dino(folder: Path, seed: int = 0) -> Path:
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(w.lower() for w in [".", *CAPTION_WORDS])]
    tokenizer = BertTokenizerFast(vocab={word: index for index, word in enumerate(words)})
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 1, 1],
            window_size=2,
            image_size=64,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=20,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        use_timm_backbone=False,
        backbone=None,
        use_pretrained_backbone=False,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96}), tokenizer=tokenizer
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llama(folder: Path, chat_template: bool = True, seed: int = 0) -> Path:
    from transformers import LlamaForCausalLM

    tokenizer = word_tokenizer()
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = tiny_llama_config(tokenizer, max_position_embeddings=512)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
