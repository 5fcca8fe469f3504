"""Curated attribute lexicons for rule-based hard negatives.

Each category is a list of *contrast sets*. A contrast set lists groups of synonyms whose members
exclude each other: swapping a word for a word of another group of the same set yields a caption that is
false for the same object ("a small dog" -> "a large dog"), while a synonym ("a little dog") would not
be a negative at all, so synonyms share a group and are never offered as replacements. A word may sit in
several contrast sets ("short" contrasts with "tall" and with "long").

Colours, materials, patterns and counts are open sets (any other group is a valid swap); size and state
words come as antonym sets, because "a tall cup" -> "a wide cup" is not reliably false.
"""

from __future__ import annotations

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

# Words that may be inserted before a noun with no attribute to swap. Only colour and size: they fit
# almost any visible object, while "a wooden dog" or "a checkered sky" would be noise.
INSERTABLE = {
    "colour": [group[0] for group in COLOUR[0]],
    "size": ["small", "large"],
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
        word: tuple((category, tuple(words)) for category, words in categories.items())
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
