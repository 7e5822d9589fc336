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

from ..core.errors import BenchError
from ..core.geometry import Box, Geometry, box_ranges
from ..core.optional import missing_model_package, models_message


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


def bilinear_axis(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PyTorch's bilinear (align_corners=False, no antialias) source indices and weights of one axis, in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    real = np.maximum(scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5),
                      np.float32(0))
    i0 = real.astype(np.int64)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    l1 = np.clip(real - i0.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float64)
    return i0, i1, 1.0 - l1, l1


def _exact_axis_mask(inside: np.ndarray, resized: int, out: np.ndarray, antialias: bool) -> np.ndarray:
    """Which output pixels `out` have a positive weight on a True source pixel, in exact integer arithmetic.

    Output pixel i is centred at c = n (2i + 1) / (2 resized) source pixels (n source pixels). Without
    antialias it blends source pixels floor(c - 1/2) and the next (weight 0 on the next when c - 1/2
    is whole; sources clamped to the axis); with antialias (PyTorch's triangle filter of support
    max(n / resized, 1)) every source pixel p with |p + 1/2 - c| below the support.
    """
    n = inside.size
    num = n * (2 * out + 1) - resized  # 2 resized (c - 1/2)
    if antialias:
        true = np.flatnonzero(inside)
        if true.size == 0:
            return np.zeros(out.size, dtype=bool)
        support2 = 2 * max(n, resized)  # 2 resized times the support
        lo = (2 * true[0] + 1) * resized - (num + resized)  # 2 resized (p + 1/2 - c) at the first True pixel
        hi = (2 * true[-1] + 1) * resized - (num + resized)
        if true.size != true[-1] - true[0] + 1:
            raise ValueError("a run of True pixels was expected")
        dist = np.where(lo > 0, lo, np.where(hi < 0, -hi, 0))
        return dist < support2
    clamped = num <= 0
    i0 = np.where(clamped, 0, num // (2 * resized))
    moved = ~clamped & (num % (2 * resized) > 0)
    i0 = np.minimum(i0, n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    return inside[i0] | (moved & inside[i1])


def _float32_axis_mask(inside: np.ndarray, resized: int, out: np.ndarray, antialias: bool) -> np.ndarray:
    """The same pixels with PyTorch's float32 arithmetic (scale n / resized rounded to float32 first)."""
    n = inside.size
    if not antialias:
        i0, i1, w0, w1 = (a[out] for a in bilinear_axis(resized, n))
        return (inside[i0] & (w0 > 0)) | (inside[i1] & (w1 > 0))
    true = np.flatnonzero(inside)
    if true.size == 0:
        return np.zeros(out.size, dtype=bool)
    scale = np.float32(n) / np.float32(resized)
    inv = np.float32(1) / scale if scale >= 1 else np.float32(1)
    centre = scale * (out.astype(np.float32) + np.float32(0.5))
    nearest = np.clip(np.floor(centre).astype(np.int64), true[0], true[-1]).astype(np.float32)
    x = ((nearest - centre) + np.float32(0.5)) * inv
    return np.abs(x) < 1


def _axis_mask_weights(inside: np.ndarray, resized: int, offset: int, size: int, antialias: bool) -> np.ndarray | None:
    """`_axis_mask` for a run of True pixels without PyTorch: which output pixels get a positive weight.

    Computed twice, exactly and in PyTorch's float32 arithmetic; None (ask PyTorch) where the two differ.
    """
    out = np.arange(offset, offset + size)
    exact = _exact_axis_mask(inside, resized, out, antialias)
    if not np.array_equal(exact, _float32_axis_mask(inside, resized, out, antialias)):
        return None
    return exact


def _axis_mask(inside: np.ndarray, resized: int, offset: int, size: int, antialias: bool) -> np.ndarray:
    """One axis of a boolean mask through bilinear resize + crop, any non-zero value counting as True.

    Bilinear weights are non-negative and separable, so a pixel of the resized union of boxes is
    non-zero exactly when its row and column are non-zero for one box. The 1-D profile comes from the
    weights (`_axis_mask_weights`), or, where a weight is too close to call, from PyTorch itself (on a
    2-wide strip: PyTorch's antialiased kernel returns zeros for 1-wide input).
    """
    fast = _axis_mask_weights(inside, resized, offset, size, antialias)
    if fast is not None:
        return fast
    return _axis_mask_torch(inside, resized, offset, size, antialias)


def _axis_mask_torch(inside: np.ndarray, resized: int, offset: int, size: int, antialias: bool) -> np.ndarray:
    """`_axis_mask` computed by PyTorch's interpolation; one line naming the `models` extra without PyTorch."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError as exc:
        if missing_model_package(exc) is None:
            raise
        raise BenchError(models_message("torch", "the GT resize of a box edge that float32 leaves too close to call "
                                        "(the published PyTorch resize decides it)")) from None

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
