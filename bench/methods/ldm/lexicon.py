"""A small built-in part-of-speech rule for report phrases: which words are content words.

The published lexical filter keeps the words a ScispaCy model tags ADJ, NOUN or VERB. Shipping a
parser model is a download; radiology phrases are short and their function words form a closed
list, so this rule marks a word as a content word unless it is punctuation, a number, a listed
function word (determiner, preposition, conjunction, pronoun, auxiliary, particle, adverb) or an
adverb in -ly (but not -aly: "cardiomegaly", "anomaly"). It splits words the way the parser does:
hyphens and other punctuation are words of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FUNCTION_WORDS = frozenset("""
a an the this that these those some any each every all both either neither no another such
of in at on to with within without from by for into onto over under above below near along across
between behind beneath beside besides through throughout about around against among upon via versus vs per
and or but nor as than if while although though whereas because so yet
it its itself they them their there here which who whom whose what where when
is are was were be been being am has have had having do does did may might can could would should will shall must
not also still again now then very more most less least further too quite rather somewhat
previously otherwise however thus therefore perhaps possibly probably likely
""".split())

_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?|[^\sA-Za-z0-9]")


@dataclass(frozen=True)
class Word:
    """A word of a phrase with its character span [start, end)."""

    text: str
    start: int
    end: int

    @property
    def is_punct(self) -> bool:
        return not any(c.isalnum() for c in self.text)


def split_words(text: str) -> list[Word]:
    """Words and single punctuation marks, with their spans ("left-sided" -> left, -, sided)."""
    return [Word(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def is_content_word(word: str) -> bool:
    """True for what the rule takes as ADJ / NOUN / VERB."""
    lower = word.lower()
    if not any(c.isalpha() for c in lower):
        return False
    if lower in FUNCTION_WORDS:
        return False
    return not (lower.endswith("ly") and not lower.endswith("aly"))


def content_words(text: str) -> tuple[list[Word], list[int]]:
    """(the phrase's words without punctuation, indices of its content words among them)."""
    words = [w for w in split_words(text) if not w.is_punct]
    return words, [i for i, w in enumerate(words) if is_content_word(w.text)]


__all__ = ["FUNCTION_WORDS", "Word", "content_words", "is_content_word", "split_words"]
