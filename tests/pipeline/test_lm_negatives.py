"""LM-written negatives: parsing, validation with rule-based fallback, on tiny Llama folders.

A random tiny LM writes nonsense, which must fail validation and fall back to the rules. To exercise
the path where the LM's answer is used, a tiny LM is first trained (a few hundred steps on CPU) to give
one fixed answer to the exact prompt the writer builds, then run through the step as it is.
"""

from __future__ import annotations

from collections import Counter

import torch

from fgclip.data.schema import Record, Region
from fgclip.pipeline.config import NegativeConfig
from fgclip.pipeline.lm_negatives import LMNegativeWriter, parse_lm_output
from fgclip.pipeline.negatives import RuleNegativeGenerator, contains_word, object_noun
from fgclip.pipeline.negatives_step import NegativeStep


def _records() -> list[Record]:
    return [
        Record(
            image="a.png",
            long_caption="x",
            short_caption="x",
            regions=[
                Region(bbox=[0.1, 0.1, 0.5, 0.5], caption="a small brown dog"),
                Region(bbox=[0.5, 0.5, 0.9, 0.9], caption="two white cats"),
            ],
        ),
        Record(
            image="b.png",
            long_caption="x",
            short_caption="x",
            regions=[
                Region(bbox=[0.1, 0.1, 0.5, 0.5], caption="a red car", hard_negatives=["a blue car"]),
            ],
        ),
    ]


def test_parse_lm_output():
    answer = 'Here you go:\n1. a large brown dog\n2) "a small white dog"\n- a small black dog\n\n* two dogs'
    assert parse_lm_output(answer) == [
        "Here you go:",
        "a large brown dog",
        "a small white dog",
        "a small black dog",
        "two dogs",
    ]
    assert parse_lm_output("1. a red cup 2. a blue cup 10. a cup with 2 handles") == [
        "a red cup",
        "a blue cup",
        "a cup with 2 handles",
    ]


def test_default_prompt_names_expression_noun_and_count():
    text = NegativeConfig().prompt.format(expression="a red cup", noun="cup", count=10)
    assert '"a red cup"' in text and '"cup"' in text and "10 different phrases" in text


def test_rule_based_step_fills_ten_and_keeps_existing():
    counts = Counter()
    records = NegativeStep(NegativeConfig())(_records(), counts)
    dog, cats = records[0].regions
    assert dog.hard_negatives == RuleNegativeGenerator(10, 0).generate("a small brown dog")[0]
    assert len(cats.hard_negatives) == 10
    assert records[1].regions[0].hard_negatives == ["a blue car"]  # already had negatives
    assert counts["regions"] == 2 and counts["negatives"] == 20 and counts["regions_already_with_negatives"] == 1
    again = NegativeStep(NegativeConfig(overwrite=True))(_records(), Counter())
    assert len(again[1].regions[0].hard_negatives) == 10


def test_random_lm_output_fails_validation_and_rules_fill_in(tiny_llama_dir):
    config = NegativeConfig(model=str(tiny_llama_dir), max_new_tokens=12, batch_size=2)
    counts = Counter()
    records = NegativeStep(config)(_records(), counts)
    for region in records[0].regions:
        # Whatever the nonsense LM wrote, what is kept passes validation: ten, noun kept, distinct.
        noun = object_noun(region.caption)
        assert len(region.hard_negatives) == 10 and len(set(region.hard_negatives)) == 10
        assert all(contains_word(n, noun) for n in region.hard_negatives)
    assert counts["regions_lm_filled_by_rules"] == 2 and counts["regions"] == 2


def _memorise(writer: LMNegativeWriter, prompt: str, answer: str, steps: int = 300) -> None:
    """Train the writer's tiny LM until greedy decoding of `prompt` gives `answer`."""
    tokenizer, model = writer.tokenizer, writer.model
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert tokenizer.unk_token_id not in answer_ids  # (the prompt may hold unknown words)
    input_ids = torch.tensor([prompt_ids + answer_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids])
    torch.manual_seed(0)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if loss.item() < 0.01:
            break
    model.eval()


def test_lm_answer_is_validated_and_completed_by_rules(tiny_llama_dir):
    # A short prompt keeps the memorising fast; the default prompt is tested for its placeholders below.
    config = NegativeConfig(model=str(tiny_llama_dir), max_new_tokens=60, prompt="rewrite {expression} keep {noun}")
    writer = LMNegativeWriter(config, "cpu")
    answer = (
        "1. a large brown dog 2. a small white dog 3. a small black dog 4. a small red dog "
        "5. a small blue dog 6. a small green dog 7. a large white dog 8. a large black dog "
        "9. a small brown cat 10. a small brown dog"
    )
    prompt = writer.prompt_text("a small brown dog", "dog")
    assert prompt == "USER: rewrite a small brown dog keep dog ASSISTANT:"  # through the chat template
    _memorise(writer, prompt, answer)
    assert parse_lm_output(writer.write([("a small brown dog", "dog")])[0]) == parse_lm_output(answer)

    step = NegativeStep(config)
    step.writer = writer  # the trained copy of the model the step would load
    record = Record(image="a.png", regions=[Region(bbox=[0.1, 0.1, 0.5, 0.5], caption="a small brown dog")])
    counts = Counter()
    (out,) = step([record], counts)
    negatives = out.regions[0].hard_negatives
    lm_valid = parse_lm_output(answer)[:8]  # the cat changes the noun, the last one is the positive
    assert negatives[:8] == lm_valid and len(negatives) == 10
    assert len(set(negatives)) == 10 and "a small brown dog" not in negatives
    assert counts["negatives_from_lm"] == 8 and counts["negatives_from_rules"] == 2
    assert counts["lm_rejected_object_noun_changed"] == 1 and counts["lm_rejected_same_as_positive"] == 1
    assert counts["regions_lm_filled_by_rules"] == 1
