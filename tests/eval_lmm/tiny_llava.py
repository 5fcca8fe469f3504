"""A tiny random LLaVA folder built from configs (no download): CLIP tower, Llama LM, word-level tokenizer.

It answers nonsense, but it exercises the real loading, prompting, batching and decoding paths that a
full-size LLaVA folder goes through.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = (
    "yes no not there is are a an the in of image ? . , : [ ] ( ) 0 1 2 3 4 5 6 7 8 9 "
    "dog cat car red blue green brown black white wooden metal small large two three "
    "answer question using single word or phrase with option letter from given choices directly "
    "please provide bounding box coordinate region this sentence describes which description matches object "
    "A B C D user assistant"
).split()

# the llava-hf chat template shape: "USER: <image>\n<text> ASSISTANT:"
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n{% else %}{{ part['text'] }}"
    "{% endif %}{% endfor %} {% else %}ASSISTANT: {{ message['content'][0]['text'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def word_level_tokenizer(words, split_punctuation: bool, extra_special: tuple[str, ...] = ()):
    """A word-level fast tokenizer over `words` (after <unk> <pad> <s> </s>), built offline; its decoder joins
    words with spaces. `split_punctuation`: "dog?" is two words (else only whitespace splits)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {word: index for index, word in enumerate(["<unk>", "<pad>", "<s>", "</s>", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace() if split_punctuation else pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece()  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    if extra_special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_special)})
    return tokenizer


def build_tiny_llava(
    folder: Path,
    chat_template: bool = True,
    seed: int = 0,
    image_size: int = 32,
    patch: int = 8,
    vision_width: int = 32,
    vision_layers: int = 2,
    text_width: int = 32,
    text_layers: int = 2,
) -> Path:
    """Write a LLaVA folder that `LlavaForConditionalGeneration`/`AutoProcessor.from_pretrained` load.

    The defaults make a tiny model for CPU tests; larger widths give a LLaVA-shaped model for timing
    (e.g. image_size 336, patch 14: 576 image tokens as in LLaVA-1.5).
    """
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    # the image token must be special so that its expanded run splits into single tokens
    tokenizer = word_level_tokenizer(WORDS, split_punctuation=True, extra_special=("<image>",))
    vision = CLIPVisionConfig(
        hidden_size=vision_width,
        intermediate_size=2 * vision_width,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=text_width,
        intermediate_size=2 * text_width,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    return save_llava_folder(folder, model, tokenizer, image_size, patch, CHAT_TEMPLATE if chat_template else None)


def save_llava_folder(folder: Path, model, tokenizer, image_size: int, patch: int, chat_template: str | None) -> Path:
    """Save `model` with the processor llava-hf folders ship: square `image_size` images without a centre crop,
    the CLS token counted among the image tokens, `chat_template` (None: none)."""
    from transformers import CLIPImageProcessor, LlavaProcessor

    image_processor = CLIPImageProcessor(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=False,
    )
    processor = LlavaProcessor(
        image_processor,
        tokenizer,
        patch_size=patch,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
