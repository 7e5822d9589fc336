"""After aggregation: optional bilinear resize, Gaussian smoothing, min-max and Otsu masking.

Vilouras et al.: the 16x16 mean map resized to 512 (bilinear), Gaussian sigma 2.5 px (scipy,
reflect), min-max to [0, 1], then one Otsu threshold (skimage multi-Otsu, 2 classes) with values
below it set to 0. Nützel et al.: min-max of the 64x64 map only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage


def resize_bilinear(values: np.ndarray, size: int) -> np.ndarray:
    """(h, w) -> (size, size), bilinear with half-pixel centres (torchvision Resize on tensors)."""
    if values.shape == (size, size):
        return values
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))[None, None]
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()


def minmax(values: np.ndarray) -> np.ndarray:
    """Scaled to [0, 1]; a constant map becomes all zeros."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def otsu_mask(values: np.ndarray) -> np.ndarray:
    """Values below the single Otsu threshold set to 0 (maps with fewer than 2 levels are returned as they are)."""
    from skimage.filters import threshold_multiotsu

    if np.unique(values).size < 3:
        return values
    threshold = threshold_multiotsu(values, classes=2)[0]
    return values * (values > threshold)


def postprocess(values: np.ndarray, output_size: int = 0, sigma: float = 0.0, normalize: bool = False,
                otsu: bool = False) -> np.ndarray:
    """The chain resize -> smooth -> min-max -> Otsu, each step switched by its argument; float32 out."""
    out = np.asarray(values, dtype=np.float64)
    if output_size:
        out = resize_bilinear(out, output_size)
    if sigma > 0:
        out = ndimage.gaussian_filter(out, sigma=sigma, mode="reflect")
    if normalize:
        out = minmax(out)
    if otsu:
        out = otsu_mask(out)
    return out.astype(np.float32)


__all__ = ["minmax", "otsu_mask", "postprocess", "resize_bilinear"]
