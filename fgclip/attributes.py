"""Attribute words and object nouns of referring expressions: the curated lexicons, by rule, no model.

Shared below the data engine and the evaluations: `fgclip.pipeline` makes hard negatives by swapping these
words, and `eval.lmm.attribute_questions` names the attribute a negative changes with them.

Each lexicon category is a list of *contrast sets*. A contrast set lists groups of synonyms whose members
exclude each other: swapping a word for a word of another group of the same set yields a caption that is
false for the same object ("a small dog" -> "a large dog"), while a synonym ("a little dog") would not
be a negative at all, so synonyms share a group and are never offered as replacements. A word may sit in
several contrast sets ("short" contrasts with "tall" and with "long").

Colours, materials, patterns and counts are open sets (any other group is a valid swap); size and state
words come as antonym sets, because "a tall cup" -> "a wide cup" is not reliably false.
"""

from __future__ import annotations

import re
from functools import lru_cache

ContrastSet = tuple[tuple[str, ...], ...]

COLOUR: tuple[ContrastSet, ...] = (
    (
        ("red", "scarlet", "crimson"),
        ("orange",),
        ("yellow",),
        ("green",),
        ("blue", "azure"),
        ("purple", "violet", "lavender"),
        ("pink",),
        ("brown",),
        ("black",),
        ("white",),
        ("gray", "grey"),
        ("silver",),
        ("gold", "golden"),
        ("beige", "tan", "khaki"),
        ("navy",),
        ("teal", "turquoise"),
        ("maroon", "burgundy"),
    ),
)

MATERIAL: tuple[ContrastSet, ...] = (
    (
        ("wooden", "wood"),
        ("metal", "metallic", "steel", "iron", "aluminum", "aluminium"),
        ("plastic",),
        ("glass",),
        ("leather",),
        ("cotton",),
        ("wool", "woolen", "woollen", "knitted"),
        ("silk", "silky"),
        ("denim",),
        ("ceramic", "porcelain"),
        ("stone",),
        ("concrete", "cement"),
        ("paper", "cardboard"),
        ("rubber",),
        ("brick",),
        ("marble",),
        ("velvet",),
        ("wicker", "rattan", "straw", "bamboo"),
    ),
)

SIZE: tuple[ContrastSet, ...] = (
    (("small", "little", "tiny", "miniature"), ("large", "big", "huge", "giant", "enormous")),
    (("tall",), ("short",)),
    (("long",), ("short",)),
    (("wide", "broad"), ("narrow",)),
    (("thick",), ("thin",)),
)

COUNT: tuple[ContrastSet, ...] = (
    (
        ("two", "2"),
        ("three", "3"),
        ("four", "4"),
        ("five", "5"),
        ("six", "6"),
        ("seven", "7"),
        ("eight", "8"),
        ("nine", "9"),
        ("ten", "10"),
        ("eleven", "11"),
        ("twelve", "12"),
    ),
)

PATTERN: tuple[ContrastSet, ...] = (
    (
        ("striped", "stripy", "pinstriped"),
        ("spotted", "dotted", "polka-dot", "polka-dotted", "speckled"),
        ("checkered", "checked", "plaid", "tartan", "gingham"),
        ("floral", "flowered", "flowery"),
        ("plain", "solid"),
        ("camouflage", "camo"),
        ("leopard-print",),
    ),
    (("smooth",), ("rough", "coarse")),
    (("shiny", "glossy", "shining"), ("matte", "dull")),
    (("fluffy", "furry", "fuzzy", "hairy"), ("hairless", "bald")),
    (("wrinkled", "crumpled"), ("ironed", "pressed")),
)

STATE: tuple[ContrastSet, ...] = (
    (("open", "opened"), ("closed", "shut")),
    (("empty",), ("full", "filled")),
    (("wet",), ("dry",)),
    (("clean",), ("dirty", "muddy")),
    # "old" is left out: its antonym depends on the noun ("an old man" / "an old car").
    (("new", "brand-new"), ("worn", "worn-out")),
    (("young",), ("elderly",)),
    (("lit", "illuminated"), ("unlit",)),
    (("folded",), ("unfolded",)),
    (("sitting", "seated"), ("standing",)),
    (("lying",), ("standing",)),
    (("broken", "cracked", "damaged"), ("intact", "unbroken")),
    (("cooked", "fried", "grilled", "roasted"), ("raw", "uncooked")),
    (("ripe",), ("unripe", "green")),
    (("sliced", "chopped"), ("whole", "uncut")),
    (("parked", "stationary"), ("moving",)),
    (("smiling",), ("frowning",)),
    (("sleeping", "asleep"), ("awake",)),
)

LEXICONS: dict[str, tuple[ContrastSet, ...]] = {
    "colour": COLOUR,
    "material": MATERIAL,
    "size": SIZE,
    "count": COUNT,
    "pattern": PATTERN,
    "state": STATE,
}


@lru_cache(maxsize=1)
def replacement_table() -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """word -> ((category, replacements), ...): every word that contrasts with it, per category.

    Only each group's first word is offered as a replacement (the most common spelling), so two
    negatives never differ only by a synonym ("grey" / "gray").
    """
    table: dict[str, dict[str, list[str]]] = {}
    for category, contrast_sets in LEXICONS.items():
        for contrast_set in contrast_sets:
            for group in contrast_set:
                others = [other[0] for other in contrast_set if other is not group and other[0] not in group]
                for word in group:
                    bucket = table.setdefault(word, {}).setdefault(category, [])
                    bucket.extend(o for o in others if o not in bucket and o not in group)
    return {
        word: tuple((category, tuple(replacements)) for category, replacements in categories.items())
        for word, categories in table.items()
    }


def attribute_category(word: str) -> str | None:
    """The first category a word belongs to, or None for a word no lexicon knows."""
    entry = replacement_table().get(word.lower())
    return entry[0][0] if entry else None


def synonyms(word: str) -> set[str]:
    """Every word that shares a group with `word` (itself included)."""
    found = {word.lower()}
    for contrast_sets in LEXICONS.values():
        for contrast_set in contrast_sets:
            for group in contrast_set:
                if word.lower() in group:
                    found.update(group)
    return found


WORD = re.compile(r"[A-Za-z]+(?:[-'][A-Za-z]+)*|\d+")
# Words after which the rest of an expression describes something else ("a man *in* a red shirt").
BOUNDARY_WORDS = set(
    (
        "with on in of at near by under over behind beside next from for to into onto inside outside above "
        "below across against along around between among holding wearing carrying that which who while where "
        "sitting standing lying"
    ).split()
)
# "a pair of shoes": the object is the noun after "of".
_QUANTITY_NOUNS = set(
    (
        "pair group couple bunch set stack pile row herd flock number lot lots bundle collection variety "
        "cluster crowd team"
    ).split()
)
# Words that are never the object noun nor an attribute of it.
FUNCTION_WORDS = set(
    ("a an the this that these those some its his her their my our your and or very light dark bright pale").split()
)


def words(text: str) -> list[str]:
    """The words of `text`, lower case (hyphenated and apostrophe words kept whole, numbers as words)."""
    return [match.group(0).lower() for match in WORD.finditer(text)]


def object_noun(expression: str) -> str | None:
    """The head noun of an expression by rule: the last content word before the first boundary word.

    "a small brown dog with a red collar" -> "dog"; "a pair of red shoes" -> "shoes";
    "two white cats" -> "cats". Returns None for an expression without words.
    """
    tokens = [m.group(0) for m in WORD.finditer(expression)]
    if not tokens:
        return None
    start = 0
    # Skip a leading quantity phrase so "a pair of red shoes" is about the shoes.
    for index, word in enumerate(tokens[:-2]):
        if word.lower() in _QUANTITY_NOUNS and tokens[index + 1].lower() == "of":
            start = index + 2
            break
    segment = []
    for word in tokens[start:]:
        if word.lower() in BOUNDARY_WORDS and segment:
            break
        segment.append(word)
    table = replacement_table()
    for word in reversed(segment):
        lowered = word.lower()
        if lowered not in FUNCTION_WORDS and lowered not in table and not lowered.isdigit():
            return word
    return segment[-1]
