"""Dense mapping of a native heatmap onto the original image grid (the brute-force route)."""

from __future__ import annotations

import numpy as np

from ..core.geometry import nearest_index
from ..core.heatmap import Heatmap


def bilinear_resize(values: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Half-pixel-centre bilinear resize (align_corners=False, no antialias), as PyTorch/OpenCV upsample."""

    def axis(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(out_size, dtype=np.float64) + 0.5) * (in_size / out_size) - 0.5
        src = np.clip(src, 0.0, None)
        i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
        i1 = np.minimum(i0 + 1, in_size - 1)
        return i0, i1, src - i0

    r0, r1, fr = axis(out_h, values.shape[0])
    c0, c1, fc = axis(out_w, values.shape[1])
    v = values.astype(np.float64)
    top = v[r0][:, c0] * (1 - fc) + v[r0][:, c1] * fc
    bottom = v[r1][:, c0] * (1 - fc) + v[r1][:, c1] * fc
    return top * (1 - fr)[:, None] + bottom * fr[:, None]


def to_original(heatmap: Heatmap, interpolation: str = "nearest", outside: float = np.nan) -> np.ndarray:
    """The map on the original image grid (float64), `outside` beyond the field of view.

    `interpolation` is "nearest" (PyTorch's legacy rule) or "bilinear" (half-pixel centres).
    """
    g = heatmap.geometry
    values = np.asarray(heatmap.values, dtype=np.float64)
    if interpolation == "nearest":
        rows = nearest_index(g.height, values.shape[0])
        cols = nearest_index(g.width, values.shape[1])
        fov = values[rows][:, cols]
    elif interpolation == "bilinear":
        fov = bilinear_resize(values, g.height, g.width)
    else:
        raise ValueError(f"unknown interpolation {interpolation!r}")
    out = np.full((g.image_height, g.image_width), outside, dtype=np.float64)
    out[g.top:g.top + g.height, g.left:g.left + g.width] = fov
    return out
