"""What a method outputs besides a heatmap: boxes with optional scores, or a mask.

A method's spec says which (`output = "heatmap" | "boxes" | "mask"`, heatmap by default). A box
method returns one `BoxPrediction` per sample: boxes as (x, y, w, h) in original pixels (the
frame of `Sample.boxes`), with a score per box or none, or a `failure` saying why it gave no
boxes for that sample (an unparsable generation is a recorded per-sample failure, never a silent
empty box list).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import SampleError
from .samples import Box

#: the output kinds a method spec may declare
OUTPUT_KINDS = ("heatmap", "boxes", "mask")


@dataclass(frozen=True)
class BoxPrediction:
    """A method's boxes for one sample, ordered best first; `scores` is empty or one per box."""

    boxes: tuple[Box, ...]
    scores: tuple[float, ...] = ()
    #: why the method gave no usable boxes for this sample (then `boxes` is empty)
    failure: str | None = None


def validate_prediction(pred: BoxPrediction, width: int, height: int, sample_id: str) -> None:
    """SampleError naming the sample when a predicted box is not four finite numbers, has no area,
    lies outside the image, or the scores do not match the boxes."""
    if pred.scores and len(pred.scores) != len(pred.boxes):
        raise SampleError(sample_id, f"{len(pred.scores)} scores for {len(pred.boxes)} boxes")
    for s in pred.scores:
        if not math.isfinite(s):
            raise SampleError(sample_id, f"box score {s} is not a finite number")
    for box in pred.boxes:
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise SampleError(sample_id, f"predicted box {list(box)} is not four finite numbers")
        x, y, w, h = box
        if w <= 0 or h <= 0:
            raise SampleError(sample_id, f"predicted box {list(box)} has zero or negative width or height")
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise SampleError(sample_id, f"predicted box {list(box)} lies outside the {width}x{height} image")
