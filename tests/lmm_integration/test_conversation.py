"""The chat template: LLaVA-1.5 layout, answer masks for training, the same prompt at inference."""

import pytest
from tokenizers import AddedToken

from benchmarks.llava_miniature.tiny_lm import train_word_tokenizer
from lmm_integration.conversation import (
    ConversationError,
    chat_template,
    llava_turns_to_messages,
    user_message,
)

TURNS = [
    {"from": "human", "value": "Is there a red cube?\n<image>"},
    {"from": "gpt", "value": "Yes."},
    {"from": "human", "value": "What colour?"},
    {"from": "gpt", "value": "Red."},
]


@pytest.fixture(scope="module")
def tokenizer():
    tokenizer = train_word_tokenizer(["SYSTEM USER ASSISTANT : Is there a red cube ? Yes . What colour Red"])
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.chat_template = chat_template("SYSTEM")
    return tokenizer


def test_renders_the_vicuna_v1_layout_with_the_image_first(tokenizer):
    text = tokenizer.apply_chat_template(llava_turns_to_messages(TURNS, with_image=True), tokenize=False)
    assert text == (
        "<s>SYSTEM USER: <image>\nIs there a red cube? ASSISTANT: Yes.</s>USER: What colour? ASSISTANT: Red.</s>"
    )


def test_generation_prompt_is_the_training_prefix(tokenizer):
    full = tokenizer.apply_chat_template(llava_turns_to_messages(TURNS[:2], True), tokenize=False)
    prompt = tokenizer.apply_chat_template(
        [user_message("Is there a red cube?", True)], tokenize=False, add_generation_prompt=True
    )
    assert full.startswith(prompt) and full[len(prompt) :] == " Yes.</s>"


def test_assistant_mask_covers_answers_and_their_eos_only(tokenizer):
    encoded = tokenizer.apply_chat_template(
        llava_turns_to_messages(TURNS, True), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    answered = [
        token
        for token, keep in zip(tokenizer.convert_ids_to_tokens(encoded["input_ids"]), encoded["assistant_masks"])
        if keep
    ]
    assert answered == ["Yes", ".", "</s>", "Red", ".", "</s>"]


def test_empty_system_prompt_and_text_only_turns(tokenizer):
    messages = llava_turns_to_messages([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "Yes"}], False)
    assert messages[0]["content"] == [{"type": "text", "text": "hi"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, chat_template=chat_template(""))
    assert text == "<s>USER: hi ASSISTANT: Yes</s>"


@pytest.mark.parametrize(
    "turns, reason",
    [
        ([], "non-empty"),
        ([{"from": "robot", "value": "x"}, {"from": "gpt", "value": "y"}], "unknown role"),
        ([{"from": "human", "value": "<image>\nhi"}], "no assistant answer"),
        ([{"from": "human", "value": 3}], "must be"),
    ],
)
def test_malformed_conversations_say_why(turns, reason):
    with pytest.raises(ConversationError, match=reason):
        llava_turns_to_messages(turns, with_image=True)
