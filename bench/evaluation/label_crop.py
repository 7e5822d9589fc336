"""Which GT boxes survive the model's input crop, by Vilouras et al.'s label-mask rule.

Their loader paints box v (counting from 1, later boxes over earlier ones) with the value 5v into
an int64 mask at the original size, pushes it through the model's input transform (torchvision
bilinear `Resize(resize)` of the short side without antialias, rounded back to int64, then a
`crop` x `crop` centre crop) and keeps box v only if the value 5v still occurs. A dropped box
leaves the ground truth of every metric; a sample left without boxes is not scored.

The crop is the one the heatmap's geometry records (`short_side_crop(H, W, resize, crop)`): 512
for their LDM (MONAI centre crop: start = n // 2 - crop // 2) and 480 / 448 for BioViL / BioViL-T
(torchvision `CenterCrop`: start = round((n - crop) / 2)). A map over the whole image is treated
as resize only, without a crop. For any other field of view a box is kept if it overlaps it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.geometry import Box, Geometry, box_ranges
from .crop_grid import centre_offset, model_crop, resized_size


def _crop_start(length: int, crop: int, resize: int) -> int:
    if crop == resize:
        return length // 2 - crop // 2
    return centre_offset(length, crop)


def _resized_labels(boxes: Sequence[Box], height: int, width: int, resize: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    labels = np.zeros((height, width), dtype=np.float32)
    for v, box in enumerate(boxes, 1):
        r0, r1, c0, c1 = box_ranges(box, height, width)
        labels[r0:r1, c0:c1] = 5 * v
    rh, rw = resized_size(height, width, resize)
    out = F.interpolate(torch.from_numpy(labels)[None, None], size=(rh, rw), mode="bilinear",
                        align_corners=False, antialias=False)
    return torch.round(out[0, 0]).to(torch.int64).numpy()


def surviving_boxes(boxes: Sequence[Box], geometry: Geometry, resize: int = 512) -> list[int]:
    """Indices of the boxes kept under the label-mask rule for a map with this geometry."""
    g = geometry
    crop = model_crop(g, resize)
    if crop is None and not g.covers_whole_image:
        kept = []
        for i, box in enumerate(boxes):
            r0, r1, c0, c1 = box_ranges(box, g.image_height, g.image_width)
            if max(r0, g.top) < min(r1, g.top + g.height) and max(c0, g.left) < min(c1, g.left + g.width):
                kept.append(i)
        return kept
    labels = _resized_labels(boxes, g.image_height, g.image_width, resize)
    if crop is not None:
        top = _crop_start(labels.shape[0], crop, resize)
        left = _crop_start(labels.shape[1], crop, resize)
        labels = labels[top:top + crop, left:left + crop]
    present = set(np.unique(labels).tolist())
    return [v - 1 for v in range(1, len(boxes) + 1) if 5 * v in present]


__all__ = ["surviving_boxes"]
