"""Referring expressions from captions with the real spaCy English pipeline the 'pipeline' extra installs."""

from __future__ import annotations

from collections import Counter

import pytest

from fgclip.data.schema import Record
from fgclip.errors import UserError
from fgclip.pipeline.config import ExpressionConfig
from fgclip.pipeline.expressions import EXPRESSIONS_FIELD, ExpressionExtractor, load_spacy
from tests.pipeline.conftest import LONG_CAPTION


@pytest.fixture(scope="module")
def extractor() -> ExpressionExtractor:
    return ExpressionExtractor(ExpressionConfig())


def test_noun_chunks_with_modifiers(extractor):
    (found,) = extractor.extract([LONG_CAPTION])
    captions = [e.caption for e in found]
    assert captions[:3] == ["a small brown dog", "a red collar", "a striped wooden sofa"]
    assert "two white cats" in captions and "a blue rug" in captions
    by_caption = {e.caption: e for e in found}
    assert by_caption["a small brown dog"].noun == "dog"
    assert by_caption["two white cats"].noun == "cats"
    # The long form is the noun's whole phrase; no long form when the chunk is the whole phrase.
    assert by_caption["a small brown dog"].long_caption.startswith("a small brown dog with a red collar")
    assert by_caption["a tall glass vase"].long_caption is None


def test_pronouns_and_picture_words_are_not_objects(extractor):
    (found,) = extractor.extract(["The image shows it in the background. In the foreground, a man reads a book."])
    assert [e.caption for e in found] == ["a man", "a book"]


def test_conjuncts_are_separate_expressions(extractor):
    (found,) = extractor.extract(["There are two white cats and a tall glass vase filled with yellow flowers."])
    by_caption = {e.caption: e for e in found}
    assert "and" not in (by_caption["two white cats"].long_caption or "")
    assert by_caption["a tall glass vase"].long_caption == "a tall glass vase filled with yellow flowers"


def test_sentence_initial_capital_is_lowered_but_duplicates_dropped(extractor):
    (found,) = extractor.extract(["A red car is parked. A red car is near a tree. Paris is far."])
    assert [e.caption for e in found] == ["a red car", "a tree", "Paris"]


def test_limits(extractor):
    many = ", ".join(f"a {c} ball" for c in ["red", "blue", "green", "white", "black", "pink"]) + "."
    limited = ExpressionExtractor.__new__(ExpressionExtractor)
    limited.config, limited.nlp = ExpressionConfig(max_expressions=3), extractor.nlp
    assert len(limited.extract([many])[0]) == 3


def test_step_fills_the_expressions_field_and_counts(extractor):
    records = [
        Record(image="a.png", long_caption=LONG_CAPTION),
        Record(image="b.png"),
        Record(image="c.png", long_caption="It is."),
    ]
    counts = Counter()
    out = extractor(records, counts)
    assert len(out) == 3
    assert out[0].extra[EXPRESSIONS_FIELD][0] == {
        "caption": "a small brown dog",
        "noun": "dog",
        "long_caption": out[0].extra[EXPRESSIONS_FIELD][0]["long_caption"],
    }
    assert EXPRESSIONS_FIELD not in out[1].extra
    assert out[2].extra[EXPRESSIONS_FIELD] == []
    assert counts["records_without_long_caption"] == 1 and counts["records_without_expressions"] == 1


def test_missing_spacy_pipeline_is_a_clear_error():
    with pytest.raises(UserError, match="cannot load the spaCy pipeline"):
        load_spacy("no_such_spacy_pipeline_xyz")
