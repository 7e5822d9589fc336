"""The centre-crop evaluation space of Nützel et al. and Dombrowski et al.

Their metrics live on the `size` x `size` (512) image that the diffusion model sees: the short
side resized to `size` (torchvision `Resize(size)`), then `CenterCrop(size)`. This module maps
both sides of a comparison into that space:

- the GT: a boolean box mask at the original size pushed through the same resize and crop, with
  torchvision's cast back to bool (any non-zero interpolated value is True), which dilates every
  box by about one output pixel; with or without antialiasing;
- the heatmap: sampled with half-pixel bilinear interpolation at every crop pixel. A map whose
  grid is the model's own centre crop (geometry `short_side_crop(H, W, size, C)`) is placed on
  that C x C square of the resized image exactly, so a 64 x 64 map of a 512 crop upsamples to the
  crop as `cv2.resize` / torchvision do; any other geometry is sampled at the original-image
  position of each crop pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..core.geometry import Box, Geometry, box_ranges


@dataclass(frozen=True)
class CropSpace:
    """Where the `size` x `size` centre crop of the short-side-resized image lies."""

    image_height: int
    image_width: int
    size: int
    resized_height: int
    resized_width: int
    top: int
    left: int

    @classmethod
    def for_image(cls, image_height: int, image_width: int, size: int = 512) -> "CropSpace":
        """torchvision's `Resize(size)` output size and `CenterCrop(size)` offsets for this image."""
        rh, rw = resized_size(image_height, image_width, size)
        return cls(image_height, image_width, size, rh, rw, centre_offset(rh, size), centre_offset(rw, size))


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(height, width) after torchvision `Resize(short)`: short side to `short`, long side truncated."""
    if width <= height:
        return int(short * height / width), short
    return short, int(short * width / height)


def centre_offset(length: int, crop: int) -> int:
    """torchvision `CenterCrop` start: int(round((length - crop) / 2)) with Python's half-to-even round."""
    return int(round((length - crop) / 2.0))


def model_crop(geometry: Geometry, resize: int) -> int | None:
    """The crop C if `geometry` is exactly `Geometry.short_side_crop(H, W, resize, C)`, else None."""
    g = geometry
    short = min(g.image_height, g.image_width)
    if g.height != g.width:
        return None
    guess = math.ceil(g.height * resize / short)
    for crop in range(max(1, guess - 1), min(resize, guess + 1) + 1):
        ref = Geometry.short_side_crop(g.image_height, g.image_width, resize, crop)
        if (ref.top, ref.left, ref.height, ref.width) == (g.top, g.left, g.height, g.width):
            return crop
    return None


def _axis_mask(inside: np.ndarray, resized: int, offset: int, size: int, antialias: bool) -> np.ndarray:
    """One axis of a boolean mask through bilinear resize + crop, any non-zero value counting as True.

    Bilinear weights are non-negative and separable, so a pixel of the resized union of boxes is
    non-zero exactly when its row and column are non-zero for one box; the 1-D profile is computed
    by PyTorch itself (on a 2-wide strip: PyTorch's antialiased kernel returns zeros for 1-wide input).
    """
    import torch
    import torch.nn.functional as F

    strip = torch.from_numpy(np.repeat(inside.astype(np.float32)[:, None], 2, axis=1))[None, None]
    out = F.interpolate(strip, size=(resized, 2), mode="bilinear", align_corners=False, antialias=antialias)
    return (out[0, 0, offset:offset + size, 0] != 0).numpy()


def gt_mask(boxes: Sequence[Box], space: CropSpace, antialias: bool = True) -> np.ndarray:
    """The union box mask as torchvision's bool `Resize(size, antialias) + CenterCrop(size)` makes it."""
    out = np.zeros((space.size, space.size), dtype=bool)
    for box in boxes:
        r0, r1, c0, c1 = box_ranges(box, space.image_height, space.image_width)
        if r0 >= r1 or c0 >= c1:
            continue
        rows = np.zeros(space.image_height, dtype=bool)
        cols = np.zeros(space.image_width, dtype=bool)
        rows[r0:r1] = True
        cols[c0:c1] = True
        r = _axis_mask(rows, space.resized_height, space.top, space.size, antialias)
        c = _axis_mask(cols, space.resized_width, space.left, space.size, antialias)
        out |= r[:, None] & c[None, :]
    return out


@dataclass(frozen=True)
class CropSampling:
    """Native-grid coordinates (pixel centres at integers) of every crop row and column, and the field of view."""

    rows: np.ndarray
    cols: np.ndarray
    row_inside: np.ndarray
    col_inside: np.ndarray


def _model_axis(size: int, resized: int, crop_start: int, model: int, native: int) -> tuple[np.ndarray, np.ndarray]:
    start = centre_offset(resized, model) - crop_start
    pos = np.arange(size, dtype=np.float64) - start
    return (pos + 0.5) * native / model - 0.5, (pos >= 0) & (pos < model)


def _original_axis(size: int, resized: int, crop_start: int, original: int, fov_start: int, fov_len: int,
                   native: int) -> tuple[np.ndarray, np.ndarray]:
    centre = (np.arange(size, dtype=np.float64) + crop_start + 0.5) * original / resized
    rel = centre - fov_start
    return rel * native / fov_len - 0.5, (rel >= 0) & (rel < fov_len)


def sampling(geometry: Geometry, native_shape: tuple[int, int], space: CropSpace) -> CropSampling:
    """Where each crop pixel falls on the native grid of a heatmap with this geometry."""
    h, w = native_shape
    crop = model_crop(geometry, space.size)
    if crop is not None:
        rows, r_in = _model_axis(space.size, space.resized_height, space.top, crop, h)
        cols, c_in = _model_axis(space.size, space.resized_width, space.left, crop, w)
    else:
        g = geometry
        rows, r_in = _original_axis(space.size, space.resized_height, space.top, g.image_height, g.top, g.height, h)
        cols, c_in = _original_axis(space.size, space.resized_width, space.left, g.image_width, g.left, g.width, w)
    return CropSampling(rows, cols, r_in, c_in)


def _bilinear_axis(coords: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's half-pixel bilinear source indices and weight: clamp below at 0, repeat the last cell."""
    src = np.clip(coords, 0.0, None)
    i0 = np.minimum(np.floor(src).astype(np.int64), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, np.clip(src - i0, 0.0, 1.0)


def sample_bilinear(values: np.ndarray, where: CropSampling) -> np.ndarray:
    """Bilinear samples of a native map at the crop pixels; NaN outside the field of view."""
    v = np.asarray(values, dtype=np.float64)
    r0, r1, fr = _bilinear_axis(where.rows, v.shape[0])
    c0, c1, fc = _bilinear_axis(where.cols, v.shape[1])
    top = v[r0][:, c0] * (1 - fc) + v[r0][:, c1] * fc
    bottom = v[r1][:, c0] * (1 - fc) + v[r1][:, c1] * fc
    out = top * (1 - fr)[:, None] + bottom * fr[:, None]
    out[~where.row_inside, :] = np.nan
    out[:, ~where.col_inside] = np.nan
    return out


__all__ = ["CropSampling", "CropSpace", "centre_offset", "gt_mask", "model_crop", "resized_size",
           "sample_bilinear", "sampling"]
