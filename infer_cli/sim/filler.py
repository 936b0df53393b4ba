"""Plausible filler text, one token at a time, the same for the same seed.

Sentences follow a few simple patterns (determiner, adjective, noun, verb, ...) filled with common
words, capitalised, with the odd comma. Every piece is exactly one token of
:mod:`infer_cli.sim.tokenizer` (a word of at most 12 letters with the space before it, or a
punctuation mark), so counting the generated text's tokens gives back the number generated.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

_CLASSES = {
    "D": "the each every this that one our another the the",
    "A": (
        "small large quick simple steady fast slow early late local remote shared common new old "
        "first last next useful careful short long warm cold full empty whole busy quiet"
    ),
    "N": (
        "cache model token request prompt engine server block memory layer answer question system "
        "user value result batch stream context window prefix queue worker process node network "
        "signal record message reader writer table field method service client session budget"
    ),
    "V": (
        "keeps makes takes gives finds moves holds sends reads writes shows builds serves measures "
        "returns stores loads starts stops grows turns helps needs uses checks follows shapes"
    ),
    "P": "in on for with from into over under through after before behind near beyond",
    "R": "often rarely always never still again quietly slowly quickly carefully also",
    "C": "because while when although since unless once",
}
_WORDS = {kind: tuple(" " + word for word in words.split()) for kind, words in _CLASSES.items()}
_PATTERNS = (
    "D A N V D N",
    "D N V D A N P D N",
    "D N R V D N",
    "C D N V , D A N V D N",
    "D A N V P D N , C D N V",
    "D N V D N P D A N",
    "R , D N V D A N",
    "D N P D N V D N R",
)
_SENTENCES = tuple(tuple(pattern.split()) for pattern in _PATTERNS)


def filler_tokens(seed: int) -> Iterator[str]:
    """An endless stream of token strings; the first has no leading space."""
    rng = random.Random(seed)
    choice = rng.choice
    start = True
    while True:
        capital = True
        for kind in choice(_SENTENCES):
            if kind == ",":
                yield ","
                continue
            word = choice(_WORDS[kind])
            if capital:
                word = " " + word[1:].capitalize()
                capital = False
            if start:
                word = word[1:]
                start = False
            yield word
        yield "."
