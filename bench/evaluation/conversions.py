"""Explicit conversions between output kinds, so every method gets every metric family.

A protocol names the conversion it applies (its `[conversions]` fields):

- boxes -> heatmap (`boxes_to_heatmap`): the boxes rasterised on the original image (pixel-centre
  rule), each box's pixels taking its score (1 for boxes without scores) and the maximum where
  boxes overlap, 0 elsewhere (`max_score`); or 1 inside any box (`binary`). A sample without a
  box gets an all-zero map, which scores as a constant map.
- heatmap -> mask (`heatmap_to_mask`): the map as the protocol scores it (its interpolation and
  value policy on the original image) cut at Otsu's threshold of its values (`otsu`), or at
  `mask_threshold` (`threshold`); a pixel is in the mask when its value is above the threshold.
- mask -> boxes (`mask_to_boxes`): the bounding box of each 8-connected component (`components`),
  or of the largest one only (`largest`), each box scored by the maximum or the mean map value
  of its component (`component_score`), best first.
- boxes -> mask: the union of the boxes (pixel-centre rule).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.geometry import Geometry, box_mask, box_ranges
from ..core.heatmap import Heatmap
from ..core.predictions import BoxPrediction
from ..core.samples import Box

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def boxes_to_heatmap(boxes: Sequence[Box], scores: Sequence[float], height: int, width: int,
                     rule: str = "max_score") -> np.ndarray:
    """The boxes as a float32 map at the original size: each box's score (1 without scores, or under
    `binary`) on its pixels, the maximum where boxes overlap, 0 elsewhere."""
    values = np.zeros((height, width), dtype=np.float32)
    for k, box in enumerate(boxes):
        score = 1.0 if rule == "binary" or not scores else float(scores[k])
        r0, r1, c0, c1 = box_ranges(box, height, width)
        np.maximum(values[r0:r1, c0:c1], score, out=values[r0:r1, c0:c1])
    return values


def prediction_heatmap(pred: BoxPrediction, height: int, width: int, rule: str = "max_score") -> Heatmap:
    """A box prediction as a Heatmap over the whole image (`boxes_to_heatmap`)."""
    values = boxes_to_heatmap(pred.boxes, pred.scores, height, width, rule)
    return Heatmap(values, Geometry.whole(height, width, f"boxes rasterised ({rule})"))


def boxes_to_mask(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """The union of the boxes as a boolean mask (pixel-centre rule)."""
    return box_mask(boxes, height, width)


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of the finite values (scikit-image, 256 bins); the value itself for a constant map."""
    finite = values[np.isfinite(values)]
    if finite.size == 0 or finite.min() == finite.max():
        return float(finite.max()) if finite.size else 0.0
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(finite))


def heatmap_to_mask(values: np.ndarray, rule: str = "otsu", threshold: float = 0.5) -> np.ndarray:
    """The pixels whose value is above Otsu's threshold (`otsu`) or above `threshold` (`threshold`)."""
    cut = otsu_threshold(values) if rule == "otsu" else float(threshold)
    return np.isfinite(values) & (np.nan_to_num(values, nan=-np.inf) > cut)


def mask_to_boxes(mask: np.ndarray, values: np.ndarray, keep: str = "components",
                  score: str = "max") -> BoxPrediction:
    """One box per 8-connected component of `mask` (the largest only under `largest`), scored by the
    maximum or mean of `values` over the component, best first (ties: larger, then earlier in row-major order)."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    if count == 0:
        return BoxPrediction(())
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(np.ones_like(values, dtype=np.float64), labels, index)
    finite = np.where(np.isfinite(values), values, 0.0)
    reduce = ndimage.maximum if score == "max" else ndimage.mean
    component_scores = np.asarray(reduce(finite, labels, index), dtype=np.float64)
    slices = ndimage.find_objects(labels)
    found = []
    for k, sl in enumerate(slices):
        rows, cols = sl
        found.append(((float(cols.start), float(rows.start), float(cols.stop - cols.start),
                       float(rows.stop - rows.start)), float(component_scores[k]), float(sizes[k]), k))
    if keep == "largest":
        found = [max(found, key=lambda f: (f[2], -f[3]))]
    found.sort(key=lambda f: (-f[1], -f[2], f[3]))
    return BoxPrediction(tuple(f[0] for f in found), tuple(f[1] for f in found))
