"""The scoring route of the protocols that turn a map into a mask first (`segmentation` set: CheXlocalize).

The map goes onto the original grid by the protocol's interpolation and through its value policy
(min-max), the mask rule of the protocol makes a binary segmentation of it, and the two metrics
of those protocols are taken against the sample's GT mask (its boxes' union when it has no mask):

- `seg_iou`: IoU of the segmentation with the GT, NaN unless both are non-empty (a map its method marks as a
  mask, `meta["binary"]`, is its own segmentation: the `reader2` reader's mask);
- `hit_rate`: the GT holds the map's maximum, or, for a method that states its most representative
  points (`meta["points"]` of its heatmap, as the `reader2` human reference does), any of them; NaN
  for an empty GT.

On a points-only sample (no region) `seg_iou` is NaN (undefined) and `hit_rate` follows the point
route's rule (`bench.evaluation.point_route`): the map's maximum (its first, row-major) lies within
the protocol's `point_radius` of a GT point, or, for a method that states points, any of them does.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ..core.errors import SampleError
from ..core.geometry import box_mask
from ..core.ground_truth import load_mask
from ..core.heatmap import Heatmap
from ..core.samples import Sample
from . import chexlocalize as cx
from .point_route import peak_hit, points_near
from .protocols import SEGMENTATION_METRICS, Protocol
from .resample import to_original


def gt_mask(sample: Sample) -> np.ndarray:
    """The sample's GT on the original grid: its mask, else the union of its boxes."""
    if sample.mask is not None:
        return load_mask(sample.mask, sample.height, sample.width, sample.sample_id)
    if not sample.boxes:
        raise SampleError(sample.sample_id, "has only points as ground truth; seg_iou and hit_rate need a mask or boxes")
    return box_mask(sample.boxes, sample.height, sample.width)


def segmentation(normalised: np.ndarray, category: str, protocol: Protocol, sample_id: str = "",
                 binary: bool = False) -> np.ndarray:
    """The protocol's binary mask of a min-max normalised map on the original grid; a map that is a mask
    already (`binary`: a reader's mask) is its own segmentation."""
    if binary:
        return normalised > 0.5
    if protocol.segmentation == "otsu":
        return cx.otsu_segmentation(normalised)
    if category not in protocol.seg_thresholds:
        raise SampleError(sample_id, f"protocol {protocol.name} has no tuned threshold for category {category!r} "
                                     f"(seg_thresholds holds {', '.join(sorted(protocol.seg_thresholds)) or 'none'})")
    return cx.threshold_segmentation(normalised, float(protocol.seg_thresholds[category]))


def stated_points(heatmap: Heatmap) -> list[tuple[float, float]] | None:
    """The most representative points a method states with its map (`meta["points"]`), or None."""
    points = heatmap.meta.get("points") if isinstance(heatmap.meta, dict) else None
    if points is None:
        return None
    return [(float(p[0]), float(p[1])) for p in points]


def score_segmented(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None) -> dict[str, float]:
    """`seg_iou` and `hit_rate` of one map under a segmentation protocol, in the protocol's column order."""
    from .scoring import prepare_values  # the value policy lives with the other routes

    raw = to_original(heatmap, protocol.interpolation)
    if sample.gt_kind == "points":
        return _score_on_points(heatmap, raw, sample, protocol)
    gt = gt_mask(sample)
    scores: dict[str, float] = {}
    if "seg_iou" in protocol.metrics:
        normalised = prepare_values(raw, protocol, backend)
        binary = bool(heatmap.meta.get("binary")) if isinstance(heatmap.meta, dict) else False
        scores["seg_iou"] = cx.seg_iou(segmentation(normalised, sample.category, protocol, sample.sample_id, binary), gt)
    if "hit_rate" in protocol.metrics:
        points = stated_points(heatmap)
        scores["hit_rate"] = cx.points_hit(points, gt) if points is not None else cx.argmax_hit(raw, gt)
    return OrderedDict((c, scores[c]) for c in protocol.columns)


def _score_on_points(heatmap: Heatmap, raw: np.ndarray, sample: Sample, protocol: Protocol) -> dict[str, float]:
    """`seg_iou` NaN (no region), `hit_rate` within `point_radius` of a GT point."""
    scores: dict[str, float] = {"seg_iou": float("nan")}
    if "hit_rate" in protocol.metrics:
        stated = stated_points(heatmap)
        scores["hit_rate"] = (points_near(stated, sample.points, protocol.point_radius) if stated is not None
                              else peak_hit(raw, sample.points, protocol.point_radius))
    return OrderedDict((c, scores[c]) for c in protocol.columns)


__all__ = ["SEGMENTATION_METRICS", "gt_mask", "score_segmented", "segmentation", "stated_points"]
