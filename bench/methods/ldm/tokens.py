"""Which context positions of a prompt a heatmap averages: the token strategies of the published methods.

- `all`: every token of the prompt except the special ones (Vilouras: positions 1 .. n-2).
- `keywords`: the sub-tokens of every whitespace word that contains one of the category's disease
  keywords (substring, lower case); no such word -> all tokens (Dombrowski, Nützel's disease filter).
- `lexical`: the first sub-token of every content word (ADJ / NOUN / VERB, see `lexicon`; Nützel).
  With `alignment = "offsets"` a word is found through the tokenizer's character offsets. With
  `alignment = "legacy"` the published indexing is reproduced: word indices of the punctuation-free
  parse index the first-token positions of the whitespace-split words, so a hyphen or punctuation
  shifts them (positions past the phrase are dropped).
- `start`: position 0 (the start token: [CLS] / SOS; BBM's image bias).
- `indices`: explicit positions from the spec.
Positions at or beyond the context length are dropped (the prompt is truncated there).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...core.errors import BenchError
from .lexicon import Tagger, content_words

STRATEGIES = ("all", "keywords", "lexical", "start", "indices")
ALIGNMENTS = ("offsets", "legacy")
WEIGHTINGS = ("token", "word")

#: disease keywords per MS-CXR category (as the published disease filters list them)
DISEASE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "atelectasis": ("atelectasis", "atelectatic"),
    "cardiomegaly": ("cardiomegaly", "cardiac"),
    "consolidation": ("consolidation", "consolidations", "consolidative"),
    "edema": ("edema",),
    "lung opacity": ("opacity", "opacities", "opacification"),
    "pleural effusion": ("pleural", "effusion", "effusions"),
    "pneumonia": ("pneumonia",),
    "pneumothorax": ("pneumothorax", "pneumothoraces"),
}


def _encode(tokenizer, text: str, max_length: int) -> dict:
    return tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length,
                     return_offsets_mapping=True, return_special_tokens_mask=True)


def non_special_positions(tokenizer, text: str, max_length: int) -> list[int]:
    """Positions of every non-special token of `text` in its (truncated) tokenisation."""
    enc = _encode(tokenizer, text, max_length)
    return [i for i, special in enumerate(enc["special_tokens_mask"]) if not special]


def _tokens_in_span(enc: dict, start: int, end: int) -> list[int]:
    """Non-special token positions whose character span overlaps [start, end)."""
    return [i for i, ((a, b), special) in enumerate(zip(enc["offset_mapping"], enc["special_tokens_mask"]))
            if not special and a < end and b > start]


def _whitespace_words(text: str) -> list[tuple[str, int, int]]:
    """The phrase split on single spaces, with spans (empty words included, as str.split(" "))."""
    out, pos = [], 0
    for part in text.split(" "):
        out.append((part, pos, pos + len(part)))
        pos += len(part) + 1
    return out


def keyword_positions(tokenizer, text: str, category: str, max_length: int,
                      keywords: dict[str, Sequence[str]] | None = None) -> list[int]:
    """All sub-tokens of the words holding a disease keyword of `category`; none -> all tokens."""
    table = DISEASE_KEYWORDS if keywords is None else {k.lower(): tuple(v) for k, v in keywords.items()}
    wanted = [k.lower() for k in table.get(category.strip().lower(), ())]
    enc = _encode(tokenizer, text, max_length)
    chosen: set[int] = set()
    for word, start, end in _whitespace_words(text):
        if word and any(k in word.lower() for k in wanted):
            chosen.update(_tokens_in_span(enc, start, end))
    return sorted(chosen) if chosen else non_special_positions(tokenizer, text, max_length)


def _word_token_count(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=True, return_special_tokens_mask=True)
    return int(len(ids["input_ids"]) - sum(ids["special_tokens_mask"]))


def legacy_word_starts(tokenizer, text: str) -> list[int]:
    """[1] + cumsum(token counts of the whitespace words) + 1: first-token position of each word, then
    the position after the last word."""
    counts = [_word_token_count(tokenizer, w) for w, _, _ in _whitespace_words(text)]
    return [1, *(np.cumsum(counts) + 1).tolist()]


def lexical_positions(tokenizer, text: str, max_length: int, alignment: str = "offsets",
                      tagger: Tagger | None = None) -> list[int]:
    """First sub-token of every content word (`tagger`, default the built-in rule), aligned by offsets
    or by the published legacy indexing."""
    words, kept = (tagger or content_words)(text)
    if alignment == "legacy":
        starts = legacy_word_starts(tokenizer, text)
        chosen = {starts[i] for i in kept if i < len(starts)}
    elif alignment == "offsets":
        enc = _encode(tokenizer, text, max_length)
        chosen = set()
        for i in kept:
            hits = _tokens_in_span(enc, words[i].start, words[i].end)
            if hits:
                chosen.add(hits[0])
    else:
        raise BenchError(f"token alignment {alignment!r} is not one of {', '.join(ALIGNMENTS)}")
    return sorted(p for p in chosen if p < max_length)


def word_weights(tokenizer, text: str, positions: Sequence[int], max_length: int = 77) -> dict[int, float]:
    """Weights over `positions` that give every whitespace word the same total weight, split evenly over
    its selected sub-tokens (Dombrowski et al. average per-word maps); a position outside the words
    (a special token) counts as a word of its own."""
    enc = _encode(tokenizer, text, max_length)
    groups: dict[object, list[int]] = {}
    for p in positions:
        owner: object = ("special", p)
        if p < len(enc["offset_mapping"]) and not enc["special_tokens_mask"][p]:
            a, b = enc["offset_mapping"][p]
            for k, (_, start, end) in enumerate(_whitespace_words(text)):
                if a < end and b > start:
                    owner = k
                    break
        groups.setdefault(owner, []).append(p)
    return {p: 1.0 / (len(groups) * len(members)) for members in groups.values() for p in members}


def select_tokens(strategy: str, tokenizer, text: str, category: str = "", max_length: int = 77,
                  alignment: str = "offsets", indices: Sequence[int] = (),
                  keywords: dict[str, Sequence[str]] | None = None, tagger: Tagger | None = None) -> list[int]:
    """Context positions of `text` that `strategy` averages (may be empty: no token qualifies);
    `tagger` finds the content words of `lexical` (default: the built-in rule)."""
    if strategy == "all":
        return non_special_positions(tokenizer, text, max_length)
    if strategy == "keywords":
        return keyword_positions(tokenizer, text, category, max_length, keywords)
    if strategy == "lexical":
        return lexical_positions(tokenizer, text, max_length, alignment, tagger)
    if strategy == "start":
        return [0]
    if strategy == "indices":
        return sorted({int(i) for i in indices if 0 <= int(i) < max_length})
    raise BenchError(f"token strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")


__all__ = ["ALIGNMENTS", "DISEASE_KEYWORDS", "STRATEGIES", "WEIGHTINGS", "keyword_positions", "legacy_word_starts",
           "lexical_positions", "non_special_positions", "select_tokens", "word_weights"]
