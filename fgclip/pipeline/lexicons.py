"""The attribute lexicons the rule-based negatives swap, and the words the generator may insert.

The lexicons themselves (contrast sets, `replacement_table`, `attribute_category`, `synonyms`) live in
`fgclip.attributes`, below both the data engine and the evaluations; they are re-exported here.
"""

from __future__ import annotations

from fgclip.attributes import (
    COLOUR,
    COUNT,
    LEXICONS,
    MATERIAL,
    PATTERN,
    SIZE,
    STATE,
    ContrastSet,
    attribute_category,
    replacement_table,
    synonyms,
)

__all__ = [
    "COLOUR",
    "COUNT",
    "INSERTABLE",
    "LEXICONS",
    "MATERIAL",
    "PATTERN",
    "SIZE",
    "STATE",
    "ContrastSet",
    "attribute_category",
    "replacement_table",
    "synonyms",
]

# Words that may be inserted before a noun with no attribute to swap. Only colour and size: they fit
# almost any visible object, while "a wooden dog" or "a checkered sky" would be noise.
INSERTABLE = {
    "colour": [group[0] for group in COLOUR[0]],
    "size": ["small", "large"],
}
