"""Ground truth given as points: the map's peak against the GT points, within a radius.

A points-only sample (`Sample.gt_kind == "points"`, (x, y) in original pixels) holds no region.
Its pointing game is 1.0 when the map's peak lies within `point_radius` original pixels
(Euclidean, inclusive) of any GT point, else 0.0: the pointing game with the tolerance of Zhang et
al. ("Top-down neural attention by excitation backprop", ECCV 2016: 15 pixels, the protocol's
default). The peak is the one the region routes' pointing game reads: the first maximum in
row-major order of the map on the original grid (the protocol's interpolation and value policy;
NaN never wins; a map without any value has no peak and misses). Pixel (row i, column j) stands at
its centre (j + 0.5, i + 0.5), the pixel-centre rule of box rasterisation, so a GT point at
(j + 0.5, i + 0.5) is at distance 0 from it.

Every region metric (CNR, IoU and Dice at each threshold, mIoU, AUC) is undefined on points: the
`PointRoute` answers them with NaN, which summaries, bootstrap intervals and paired tests leave
out metric by metric (`n` counts the samples that have a value).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..core.ground_truth import Point
from .metrics import peak
from .routes import Route


def near_any(x: float, y: float, points: Sequence[Point], radius: float) -> bool:
    """True when (x, y) lies within `radius` (Euclidean, inclusive) of any of `points`."""
    r2 = float(radius) * float(radius)
    return any((float(px) - x) ** 2 + (float(py) - y) ** 2 <= r2 for px, py in points)


def peak_hit(values: np.ndarray, points: Sequence[Point], radius: float) -> float:
    """1.0 when the map's peak pixel centre lies within `radius` of any GT point, else 0.0."""
    at = peak(values)
    if at is None:
        return 0.0
    row, col = at
    return float(near_any(col + 0.5, row + 0.5, points, radius))


def points_near(stated: Sequence[Point], points: Sequence[Point], radius: float) -> float:
    """1.0 when any point a method states lies within `radius` of any GT point, else 0.0 (none stated: a miss)."""
    return float(any(near_any(float(x), float(y), points, radius) for x, y in stated))


class PointRoute(Route):
    """A map on the original grid (prepared values) and a sample's GT points: the pointing game within
    `radius`; every region metric NaN (undefined on points)."""

    name = "point"

    def __init__(self, values: np.ndarray, points: Sequence[Point], radius: float) -> None:
        self.values, self.points, self.radius = values, tuple(points), float(radius)

    def cnr(self, ddof: int, inf_value: float, floor: float, precision: str = "float64") -> float:
        return math.nan

    def cnr_per_box(self, ddof: int, inf_value: float, floor: float) -> list[float]:
        return [math.nan]

    def iou_at(self, t: float, strict: bool) -> float:
        return math.nan

    def miou(self, thresholds: Sequence[float], strict: bool) -> float:
        return math.nan

    def dice_at(self, t: float, strict: bool) -> float:
        return math.nan

    def auc_roc(self) -> float:
        return math.nan

    def auc_roc_binned(self, bins: int) -> float:
        return math.nan

    def pointing_game(self) -> float:
        return peak_hit(self.values, self.points, self.radius)


__all__ = ["PointRoute", "near_any", "peak", "peak_hit", "points_near"]
