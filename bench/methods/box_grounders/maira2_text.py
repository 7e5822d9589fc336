"""MAIRA-2's phrase-grounding text: the prompt it was trained on and its grounded-output grammar.

Everything here follows the published processor (`processing_maira2.py` of microsoft/maira-2,
`Maira2Processor`) and the checkpoint's chat template, re-written on plain strings:

- the user turn is "Given the current frontal image", the image placeholder, then " Repeat the
  following finding as a grounded phrase with bounding boxes indicating all locations where it can
  be seen in the given chest X-ray image. Finding: {phrase}"; the chat template puts the system
  sentence before it and "ASSISTANT: " after it;
- the answer is `<obj>PHRASE<box><xA><yB><xC><yD></box>...</obj>`, integers on a 100-bin grid in
  the order x_min, y_min, x_max, y_max; bin k stands for its centre (k + 0.5) / 100 of the
  centre-cropped square of the image (side min(W, H), offsets (W - side) // 2, (H - side) // 2);
- a point of the square goes back to the original image as int(norm * side + offset), truncated,
  as `adjust_box_for_original_image_size` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the system sentence of the checkpoint's chat template (followed by one space)
SYSTEM = "You are an expert radiology assistant tasked with interpreting a chest X-ray study."
#: the user turn's text before the image
BEFORE_IMAGE = "Given the current frontal image"
#: the user turn's text after the image; `{phrase}` is the finding to ground
GROUNDING_REQUEST = (" Repeat the following finding as a grounded phrase with bounding boxes indicating all "
                     "locations where it can be seen in the given chest X-ray image. Finding: {phrase}")
IMAGE_TOKEN = "<image>"
PHRASE_START, PHRASE_END, BOX_START, BOX_END = "<obj>", "</obj>", "<box>", "</box>"
#: number of coordinate bins per axis
BINS = 100
#: the grounding vocabulary the tokenizer must hold as single tokens
GROUNDING_TOKENS = (PHRASE_START, PHRASE_END, BOX_START, BOX_END,
                    *(f"<x{k}>" for k in range(BINS)), *(f"<y{k}>" for k in range(BINS)))
_BOX = re.compile(r"<x(\d+?)><y(\d+?)><x(\d+?)><y(\d+?)>")


def grounding_prompt(phrase: str, image_token: str = IMAGE_TOKEN) -> str:
    """The text the chat template renders for a phrase-grounding request (generation prompt on),
    with one image placeholder (the processor later repeats it once per image feature)."""
    user = BEFORE_IMAGE + image_token + GROUNDING_REQUEST.format(phrase=phrase)
    return f"{SYSTEM} USER: {user} ASSISTANT: "


@dataclass(frozen=True)
class GroundedPhrase:
    """One `<obj>...</obj>` of a generation: its text and its boxes (None: the phrase had no box),
    each box (x_min, y_min, x_max, y_max) normalised to the centre-cropped square."""

    text: str
    boxes: tuple[tuple[float, float, float, float], ...] | None


class GenerationError(ValueError):
    """A generation that is not in MAIRA-2's grounded-output grammar (the message says where)."""


def _between(text: str, begin: str, end: str, what: str) -> list[str]:
    """The pieces `begin ... end` that make up `text` whole (whitespace between pieces ignored)."""
    pieces = []
    rest = text.strip()
    while rest:
        if not rest.startswith(begin):
            raise GenerationError(f"text outside {begin}...{end}: {rest[:40]!r}")
        stop = rest.find(end)
        if stop == -1:
            raise GenerationError(f"{what} opened with {begin} and never closed with {end}")
        pieces.append(rest[len(begin):stop])
        rest = rest[stop + len(end):].strip()
    return pieces


def parse_grounded(text: str) -> list[GroundedPhrase]:
    """The grounded phrases of a generation, in order; GenerationError when it holds none or does not
    follow the grammar (plain text, a delimiter left open, a box that is not four coordinate tokens,
    a bin outside 0..99).

    As the published `convert_output_to_plaintext_or_grounded_sequence`, except that plain text is an
    error here (the request asked for a grounded phrase) and whitespace between delimiters is allowed.
    """
    text = text.strip()
    if not any(t in text for t in (PHRASE_START, PHRASE_END, BOX_START, BOX_END)):
        raise GenerationError(f"no grounded phrase, plain text {text[:60]!r}" if text else "empty generation")
    out = []
    for piece in _between(text, PHRASE_START, PHRASE_END, "a phrase"):
        if BOX_START not in piece and BOX_END not in piece:
            out.append(GroundedPhrase(piece.strip(), None))
            continue
        first = piece.find(BOX_START)
        if first == -1:
            raise GenerationError(f"{BOX_END} without {BOX_START} in {piece[:60]!r}")
        boxes = []
        for box_text in _between(piece[first:], BOX_START, BOX_END, "a box"):
            found = _BOX.search(box_text)
            if not found:
                raise GenerationError(f"box {box_text[:40]!r} is not <x..><y..><x..><y..>")
            bins = [int(v) for v in found.groups()]
            if any(b >= BINS for b in bins):
                raise GenerationError(f"box {box_text!r} has a bin outside 0..{BINS - 1}")
            boxes.append(tuple((b + 0.5) / BINS for b in bins))
        out.append(GroundedPhrase(piece[:first].strip(), tuple(boxes)))
    return out


def square_frame(width: int, height: int) -> tuple[int, int, int]:
    """(side, x offset, y offset) of the centre-cropped square the boxes are expressed in."""
    side = min(width, height)
    return side, (width - side) // 2, (height - side) // 2


def to_pixels(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int]:
    """A box normalised to the centre square as integer pixel corners (x_min, y_min, x_max, y_max) of
    the original image: int(norm * side + offset), as `adjust_box_for_original_image_size`."""
    side, dx, dy = square_frame(width, height)
    x0, y0, x1, y1 = box
    return int(x0 * side + dx), int(y0 * side + dy), int(x1 * side + dx), int(y1 * side + dy)


def boxes_of(phrases: list[GroundedPhrase], which: str = "first") -> tuple[tuple[float, float, float, float], ...]:
    """The normalised boxes a run keeps: those of the first grounded phrase (`"first"`, as RadVLM's
    evaluation of MAIRA-2 takes `prediction[0]`), or of every phrase in order (`"all"`); empty when
    those phrases came without a box."""
    chosen = phrases[:1] if which == "first" else phrases
    return tuple(b for p in chosen for b in (p.boxes or ()))


__all__ = ["BINS", "BOX_END", "BOX_START", "GROUNDING_TOKENS", "GenerationError", "GroundedPhrase", "IMAGE_TOKEN",
           "PHRASE_END", "PHRASE_START", "boxes_of", "grounding_prompt", "parse_grounded", "square_frame", "to_pixels"]
