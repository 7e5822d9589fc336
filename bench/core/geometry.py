"""Where a method's native grid lies on the original image, and how boxes become pixels.

A native map of shape (h, w) covers the field-of-view rectangle (top, left, height, width) of the
original image; nearest upsampling sends original pixel row `top + i` to native row
`nearest_index(height, h)[i]` (PyTorch's legacy "nearest" rule, reproduced bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import numpy as np

Box = Sequence[float]


@dataclass(frozen=True)
class Geometry:
    """A field-of-view rectangle on the original image, in integer original pixels."""

    image_height: int
    image_width: int
    top: int
    left: int
    height: int
    width: int
    description: str = ""

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"field of view {self.height}x{self.width} is empty")
        if self.top < 0 or self.left < 0:
            raise ValueError("field of view starts outside the image")
        if self.top + self.height > self.image_height or self.left + self.width > self.image_width:
            raise ValueError("field of view reaches outside the image")

    @classmethod
    def whole(cls, image_height: int, image_width: int, description: str = "whole image") -> "Geometry":
        """The native grid spans the whole image (squashed or at original size)."""
        return cls(image_height, image_width, 0, 0, image_height, image_width, description)

    @classmethod
    def short_side_crop(cls, image_height: int, image_width: int, resize: int, crop: int) -> "Geometry":
        """Short side resized to `resize`, then a central `crop` x `crop` square.

        The square's footprint on the original image has side int(crop * short / resize) and is
        centred with floor margins on the top/left, as hi-ml-multimodal and Vilouras et al. map
        their maps back (NaN padding floor/ceil).
        """
        short = min(image_height, image_width)
        side = int(crop * short / resize)
        side = max(1, min(side, short))
        top = (image_height - side) // 2
        left = (image_width - side) // 2
        return cls(
            image_height, image_width, top, left, side, side,
            f"short side to {resize}, centre crop {crop}",
        )

    @property
    def covers_whole_image(self) -> bool:
        return self.top == 0 and self.left == 0 and self.height == self.image_height and self.width == self.image_width

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Geometry":
        return cls(**{k: data[k] for k in ("image_height", "image_width", "top", "left", "height", "width")},
                   description=data.get("description", ""))


def nearest_index(out_size: int, in_size: int) -> np.ndarray:
    """Source index of each output position under PyTorch's legacy "nearest" interpolation.

    For float32 maps (what the published pipelines upsample) PyTorch computes
    scale = float32(in / out) and src = min(floor(float32(dst * scale)), in - 1), with exact
    shortcuts for equal sizes and for exact doubling; this reproduces all three.
    """
    dst = np.arange(out_size, dtype=np.int64)
    if out_size == in_size:
        return dst
    if out_size == 2 * in_size:
        return dst >> 1
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.floor(dst.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(src, in_size - 1)


def box_pixel_range(start: float, length: float, size: int) -> tuple[int, int]:
    """Half-open pixel index range [a, b) covered by [start, start + length) along one axis.

    Pixel k is inside iff start <= k + 0.5 < start + length; the range is clipped to [0, size).
    """
    a = math.ceil(start - 0.5)
    b = math.ceil(start + length - 0.5)
    return max(0, min(a, size)), max(0, min(b, size))


def box_ranges(box: Box, height: int, width: int) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) half-open pixel ranges of an (x, y, w, h) box."""
    x, y, w, h = box
    r0, r1 = box_pixel_range(y, h, height)
    c0, c1 = box_pixel_range(x, w, width)
    return r0, r1, c0, c1


def truncated_box(box: Box) -> tuple[int, int, int, int]:
    """The (x, y, w, h) box with each coordinate cast to int (truncated toward zero), as the published
    scorers do before slicing `[y:y+h, x:x+w]`; such a box covers exactly those pixels under `box_ranges`."""
    x, y, w, h = box
    return int(x), int(y), int(w), int(h)


def box_mask(boxes: Iterable[Box], height: int, width: int) -> np.ndarray:
    """Dense boolean union mask of the boxes at the given image size."""
    mask = np.zeros((height, width), dtype=bool)
    for box in boxes:
        r0, r1, c0, c1 = box_ranges(box, height, width)
        mask[r0:r1, c0:c1] = True
    return mask
