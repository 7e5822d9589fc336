"""The mask encodings of the public localisation datasets, turned into COCO RLE through pycocotools.

- SIIM-ACR's run-length text: pairs (gap, length), the first gap an absolute 0-based offset, each
  later gap the background pixels since the end of the previous run, in column-major order (top
  to bottom, then left to right). It equals COCO's uncompressed counts without the trailing
  background run, so it is converted by appending that run and handed to pycocotools.
- Polygons ([[x, y], ...] in pixels, ChestX-Det): filled with Pillow's `ImageDraw.polygon` with
  outline and fill, so boundary pixels are inside, as CheXlocalize draws its radiologists' contours.

Every mask is stored as the canonical JSON text of its compressed COCO RLE (`rle_text`).
"""

from __future__ import annotations

import json
import math
from typing import Sequence

import numpy as np

from ..core.ground_truth import rle_text


def encode(mask: np.ndarray) -> str:
    """The compressed COCO RLE text of a boolean (h, w) mask."""
    from pycocotools import mask as cocomask

    return rle_text(cocomask.encode(np.asfortranarray(mask.astype(np.uint8))))


def empty(width: int, height: int) -> str:
    """The RLE text of an all-background mask."""
    return json.dumps({"size": [int(height), int(width)], "counts": [int(width) * int(height)]}, separators=(",", ":"))


def siim_tokens(text: str) -> list[int] | None:
    """The integers of a SIIM `EncodedPixels` cell; None for `-1` (no pneumothorax); ValueError when malformed."""
    text = str(text).strip()
    if text == "-1":
        return None
    try:
        tokens = [int(t) for t in text.split()]
    except ValueError:
        raise ValueError(f"EncodedPixels {text[:40]!r} is not whitespace-separated whole numbers (or -1)") from None
    if not tokens or len(tokens) % 2:
        raise ValueError(f"EncodedPixels has {len(tokens)} numbers; it needs (gap, length) pairs")
    if any(t < 0 for t in tokens) or any(t == 0 for t in tokens[1::2]):
        raise ValueError("EncodedPixels has a negative gap or a run of no pixels")
    return tokens


def siim_counts(tokens: Sequence[int], width: int, height: int) -> list[int]:
    """COCO uncompressed counts of SIIM (gap, length) tokens on a width x height image; ValueError when they overrun it."""
    total = sum(tokens)
    if total > width * height:
        raise ValueError(f"EncodedPixels covers {total} pixels, more than the {width}x{height} image has")
    return [*tokens, width * height - total]


def siim_mask(tokens: Sequence[int], width: int, height: int) -> np.ndarray:
    """The boolean (height, width) mask of SIIM tokens, decoded by pycocotools."""
    from pycocotools import mask as cocomask

    obj = cocomask.frPyObjects({"size": [height, width], "counts": siim_counts(tokens, width, height)}, height, width)
    return cocomask.decode(obj).astype(bool)


def polygon_points(polygon: object) -> list[tuple[float, float]]:
    """A polygon's [x, y] vertices as floats; ValueError unless it is at least three finite pairs."""
    if not isinstance(polygon, list) or len(polygon) < 3:
        raise ValueError("a polygon needs at least three [x, y] points")
    out = []
    for point in polygon:
        if (not isinstance(point, list) or len(point) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)):
            raise ValueError(f"polygon point {point!r} is not [x, y] numbers")
        out.append((float(point[0]), float(point[1])))
    return out


def polygons_mask(polygons: Sequence[Sequence[tuple[float, float]]], width: int, height: int) -> np.ndarray:
    """The union of the filled polygons (boundary included) as a boolean (height, width) mask."""
    from PIL import Image, ImageDraw

    img = Image.new("1", (int(width), int(height)))
    draw = ImageDraw.Draw(img)
    for polygon in polygons:
        draw.polygon([tuple(p) for p in polygon], outline=1, fill=1)
    return np.asarray(img, dtype=bool)
