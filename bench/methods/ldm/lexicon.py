"""Which words of a report phrase are content words (ADJ / NOUN / VERB): a built-in rule, or spaCy.

The published lexical filter keeps the words a ScispaCy model (`en_core_sci_scibert`) tags ADJ,
NOUN or VERB. Shipping a parser model is a download; radiology phrases are short and their
function words form a closed list, so the built-in rule marks a word as a content word unless it
is punctuation, a number, a listed function word (determiner, preposition, conjunction, pronoun,
auxiliary, particle, adverb) or an adverb in -ly (but not -aly: "cardiomegaly", "anomaly"). It
splits words the way the parser does: hyphens and other punctuation are words of their own.

`SpacyTagger` runs the published procedure with an installed spaCy pipeline instead (spec field
`lexical_tagger = "spacy:en_core_sci_scibert"`): parse, drop punctuation, re-join with spaces,
re-parse, keep ADJ / NOUN / VERB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from ...core.errors import BenchError

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


#: a tagger: text -> (its words without punctuation, with their spans; indices of the content words)
Tagger = Callable[[str], "tuple[list[Word], list[int]]"]
CONTENT_POS = frozenset({"ADJ", "NOUN", "VERB"})
TAGGERS = ("builtin", "spacy:<model>")


class SpacyTagger:
    """The published lexical filter on an installed spaCy pipeline (`spacy.load(model)`).

    Words and their spans come from the first parse without its punctuation tokens; the tags from the
    parse of those words re-joined with spaces, as the published code tags them.
    """

    def __init__(self, model: str) -> None:
        try:
            import spacy
        except ImportError:
            raise BenchError(f"lexical_tagger 'spacy:{model}' needs spaCy: pip install scispacy, then install "
                             f"its {model} model") from None
        try:
            self.nlp = spacy.load(model)
        except OSError:
            raise BenchError(f"lexical_tagger 'spacy:{model}': spaCy has no model {model!r} installed (the "
                             "ScispaCy models install with pip from the links in the scispacy README)") from None
        self.model = model

    def __call__(self, text: str) -> tuple[list[Word], list[int]]:
        words = [Word(t.text, t.idx, t.idx + len(t.text)) for t in self.nlp(text) if not t.is_punct]
        tags = [t.pos_ for t in self.nlp(" ".join(w.text for w in words))]
        return words, [i for i, pos in enumerate(tags) if pos in CONTENT_POS and i < len(words)]


def spacy_model(name: str) -> str | None:
    """The spaCy model a tagger name asks for (None for `builtin`); BenchError for any other name."""
    if name == "builtin":
        return None
    if name.startswith("spacy:") and name[len("spacy:"):]:
        return name[len("spacy:"):]
    raise BenchError(f"lexical_tagger {name!r} is not one of {', '.join(TAGGERS)}")


def make_tagger(name: str) -> Tagger:
    """`builtin` (the rule above) or `spacy:MODEL` (an installed spaCy pipeline)."""
    model = spacy_model(name)
    return content_words if model is None else SpacyTagger(model)


__all__ = ["CONTENT_POS", "FUNCTION_WORDS", "SpacyTagger", "TAGGERS", "Tagger", "Word", "content_words",
           "is_content_word", "make_tagger", "spacy_model", "split_words"]
