"""The sample record every dataset yields and every method and protocol consumes."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Sequence

from .errors import SampleError
from .ground_truth import MaskSource, Point
from .limits import image_too_large

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Sample:
    """One (image, phrase) pair with the union of that phrase's boxes, in original pixels.

    `boxes` are (x, y, w, h) with x to the right and y down from the image's top-left corner.
    `split` is "train", "val" or "test"; `extra` carries dataset-specific fields (e.g. dicom_id).
    The ground truth is the mask when `mask` is set (its boxes, if any, only describe it), else the
    boxes, else `points` ((x, y) in original pixels): see `gt_kind`.
    """

    sample_id: str
    image_path: str
    width: int
    height: int
    category: str
    phrase: str
    boxes: tuple[Box, ...]
    split: str = "test"
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    mask: MaskSource | None = None
    points: tuple[Point, ...] = ()

    @property
    def gt_kind(self) -> str:
        """"mask", "boxes" or "points": what the sample is scored against."""
        if self.mask is not None:
            return "mask"
        return "boxes" if self.boxes else "points"

    def boxes_json(self) -> str:
        """The boxes as the JSON list written to samples tables."""
        return json.dumps([[_num(v) for v in b] for b in self.boxes])


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)


def parse_boxes(text: str) -> tuple[Box, ...]:
    """Parse a JSON list of [x, y, w, h] boxes."""
    raw = json.loads(text)
    return tuple(tuple(float(v) for v in b) for b in raw)  # type: ignore[misc]


def validate_sample(sample: Sample) -> None:
    """Raise SampleError if the sample's size or boxes are unusable.

    A box must have positive, finite width and height and overlap the image; a box that overlaps
    the image but reaches past its border is kept (rasterisation clips it), as in the official
    annotation files, where boxes may touch or slightly cross the border.
    """
    if sample.width <= 0 or sample.height <= 0:
        raise SampleError(sample.sample_id, f"image size {sample.width}x{sample.height} is not positive")
    too_large = image_too_large(sample.width, sample.height)
    if too_large:
        raise SampleError(sample.sample_id, f"image size {too_large}")
    if not sample.boxes and sample.mask is None and not sample.points:
        raise SampleError(sample.sample_id, "has no box, mask or point")
    for point in sample.points:
        if len(point) != 2 or not all(math.isfinite(v) for v in point):
            raise SampleError(sample.sample_id, f"point {list(point)} is not two finite numbers")
        if not (0 <= point[0] < sample.width and 0 <= point[1] < sample.height):
            raise SampleError(sample.sample_id, f"point {list(point)} lies outside the {sample.width}x{sample.height} image")
    for box in sample.boxes:
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise SampleError(sample.sample_id, f"box {list(box)} is not four finite numbers")
        x, y, w, h = box
        if w <= 0 or h <= 0:
            raise SampleError(sample.sample_id, f"box {list(box)} has zero or negative area")
        if x >= sample.width or y >= sample.height or x + w <= 0 or y + h <= 0:
            raise SampleError(
                sample.sample_id,
                f"box {list(box)} lies outside the {sample.width}x{sample.height} image",
            )


def boxes_from(values: Sequence[Sequence[float]]) -> tuple[Box, ...]:
    """Normalise any sequence of 4-sequences into the immutable box tuple."""
    return tuple(tuple(float(v) for v in b) for b in values)  # type: ignore[misc]
