"""fgclip.attributes: the lexicons and object nouns that the data engine and the evaluations share."""

from __future__ import annotations

import subprocess
import sys

from fgclip import attributes


def test_words_categories_and_nouns():
    assert attributes.words("A small-ish Dog's 2 red toys.") == ["a", "small-ish", "dog's", "2", "red", "toys"]
    assert [
        attributes.attribute_category(w) for w in ("Crimson", "wooden", "tiny", "three", "striped", "wet", "dog")
    ] == ["colour", "material", "size", "count", "pattern", "state", None]
    assert attributes.object_noun("a pair of red shoes") == "shoes"
    assert attributes.object_noun("a small brown dog with a red collar") == "dog"
    assert attributes.synonyms("grey") == {"gray", "grey"}


def test_the_data_engine_uses_these_very_objects():
    from fgclip.pipeline import lexicons, negatives

    assert lexicons.LEXICONS is attributes.LEXICONS and lexicons.replacement_table is attributes.replacement_table
    assert negatives.object_noun is attributes.object_noun


def test_importing_it_loads_neither_the_data_engine_nor_torch():
    code = "import sys, fgclip.attributes; print(sorted(m for m in ('torch', 'fgclip.pipeline') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
