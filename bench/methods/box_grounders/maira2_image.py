"""MAIRA-2's image pre-processing, re-written on arrays.

The published pipeline is the processor's `_normalize_image` (grey "L" image, min-max rescaled to
[0, 255] within the image, truncated to uint8) followed by the checkpoint's BitImageProcessor:
RGB, shortest edge resized to `size` with PIL bicubic, central `size` x `size` crop, times 1/255,
then (x - mean) / std per channel. The grey image is the same on the three channels, so it is
computed once and repeated.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: the checkpoint's normalisation constants (preprocessor_config.json: image_mean, image_std, all channels)
MEAN, STD = 0.5307, 0.2583
RESCALE = 1 / 255


def grey_uint8(array: np.ndarray) -> np.ndarray:
    """`Maira2Processor._normalize_image` on an array: min-max to [0, 255], truncated to uint8.

    A constant image (0/0 in the published code) becomes all zeros.
    """
    a = np.asarray(array, dtype=np.float64)
    a = a - a.min()
    top = a.max()
    if top == 0:
        return np.zeros(a.shape, dtype=np.uint8)
    return (a / top * 255).astype(np.uint8)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) after the shortest-edge resize: the short side becomes `size`, the long side
    int(size * long / short), as transformers' `get_resize_output_image_size`."""
    if height <= width:
        return size, int(size * width / height)
    return int(size * height / width), size


def centre_crop(array: np.ndarray, size: int) -> np.ndarray:
    """The central size x size block: top (H - size) // 2, left (W - size) // 2."""
    h, w = array.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return array[top:top + size, left:left + size]


def pixel_values(array: np.ndarray, size: int) -> np.ndarray:
    """The model input of one grey image: float32 (3, size, size)."""
    grey = grey_uint8(array)
    h, w = resized_shape(grey.shape[0], grey.shape[1], size)
    resized = np.asarray(Image.fromarray(grey, mode="L").resize((w, h), resample=Image.BICUBIC))
    crop = centre_crop(resized, size).astype(np.float32)
    channel = (crop * np.float32(RESCALE) - np.float32(MEAN)) / np.float32(STD)
    return np.repeat(channel[None], 3, axis=0).astype(np.float32)


__all__ = ["MEAN", "RESCALE", "STD", "centre_crop", "grey_uint8", "pixel_values", "resized_shape"]
