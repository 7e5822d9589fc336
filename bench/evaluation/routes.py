"""The three ways a metric is computed on the original grid, behind one interface.

A route holds one sample's prepared map values and its ground truth, and answers every metric
question about them; `bench.evaluation.route_scores` asks it the questions a protocol lists. The
routes give the same numbers:

- `DenseRoute`: the map and the GT mask as full evaluation-grid arrays (`bench.evaluation.metrics`,
  the brute-force reference; also the centre-crop space, with a binary mask for the mask metrics);
- `CellRoute`: weighted native-grid rectangles (`bench.evaluation.cells`, exact for nearest upsampling);
- `SortedPixelRoute`: the full-grid values inside and outside the GT sorted once
  (`bench.evaluation.sorted_pixels`).

The dense and sorted-pixel routes are built from arrays only: the prepared values, a boolean GT
mask, and the GT's parts (one boolean mask per box, or per component of any GT), so any ground
truth that can be drawn as a mask takes them as boxes do. A metric a route cannot give raises
`MetricUnavailable`, never a substitute value. Ground truth given as points only takes the
`PointRoute` of `bench.evaluation.point_route`: the pointing game within a radius, and NaN for the
region metrics, which are undefined there (not unavailable: the sample has no region to score).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Sequence

import numpy as np

from ..core.errors import BenchError
from . import metrics as dense
from . import sorted_pixels as pixels
from . import weighted_metrics as weighted
from .cells import Cells
from .stored_precision import cnr_held

#: the per-part GT masks, built only when a metric asks for them (they cost one image each)
Parts = Callable[[], Sequence[np.ndarray]]


class MetricUnavailable(BenchError):
    """A route was asked for a metric it cannot compute (e.g. a binary-mask metric without a binary mask)."""

    def __init__(self, route: str, metric: str, why: str) -> None:
        super().__init__(f"the {route} route cannot give {metric}: {why}")
        self.route = route
        self.metric = metric


class Route(ABC):
    """One sample's map and GT on one route; every method returns a metric of `bench.evaluation.metrics`.

    The continuous-map metrics are abstract: every route gives them. The binary-mask metrics
    (`iou_fg`, `miou_fgbg`, the bounding-rectangle variants, `distance`) need a binary prediction
    mask, and raise `MetricUnavailable` on a route that holds none.
    """

    name: ClassVar[str]

    def unavailable(self, metric: str, why: str) -> MetricUnavailable:
        return MetricUnavailable(self.name, metric, why)

    @abstractmethod
    def cnr(self, ddof: int, inf_value: float, floor: float, precision: str = "float64") -> float:
        """Signed CNR over the GT union; `precision` other than float64 rounds every step to it (`cnr_held`)."""

    @abstractmethod
    def cnr_per_box(self, ddof: int, inf_value: float, floor: float) -> list[float]:
        """Signed CNR of each GT part in order, with cumulative exclusion (`metrics.cnr_per_box_values`)."""

    @abstractmethod
    def iou_at(self, t: float, strict: bool) -> float:
        """IoU of the map thresholded at `t` (> when `strict`, else >=) with the GT."""

    @abstractmethod
    def miou(self, thresholds: Sequence[float], strict: bool) -> float:
        """Mean of `iou_at` over `thresholds`."""

    @abstractmethod
    def dice_at(self, t: float, strict: bool) -> float:
        """Dice of the map thresholded at `t` (> when `strict`, else >=) with the GT."""

    @abstractmethod
    def auc_roc(self) -> float:
        """Exact pixel ROC AUC, ties one half."""

    @abstractmethod
    def auc_roc_binned(self, bins: int) -> float:
        """ROC AUC over the thresholds linspace(0, 1, bins) (`metrics.quantise_bins`)."""

    @abstractmethod
    def pointing_game(self) -> float:
        """1 when the first (row-major) maximum lies in the GT, else 0."""

    def iou_fg(self) -> float:
        """Foreground IoU of the binary mask with the GT."""
        raise self.unavailable("iou_fg", "it holds no binary mask")

    def miou_fgbg(self) -> float:
        """Mean of foreground and background IoU of the binary mask."""
        raise self.unavailable("miou_fgbg", "it holds no binary mask")

    def bbox_iou_fg(self, inclusive: bool) -> float:
        """`iou_fg` of the binary mask's bounding rectangle (`inclusive=False`: the published off-by-one)."""
        raise self.unavailable("bbox_iou_fg", "it holds no binary mask")

    def bbox_miou_fgbg(self, inclusive: bool) -> float:
        """`miou_fgbg` of the binary mask's bounding rectangle."""
        raise self.unavailable("bbox_miou_fgbg", "it holds no binary mask")

    def distance(self) -> float:
        """Distance of the binary mask's and the GT's bounding-rectangle centres; NaN for a GT of several parts."""
        raise self.unavailable("distance", "it holds no binary mask")


class DenseRoute(Route):
    """Full evaluation-grid arrays: `values` (NaN = no value), the GT mask `gt`, its `parts` (`n_parts` of them).

    `binary` is the protocol's binary prediction mask (GMM) on the same grid, for the mask metrics.
    `sorted_auc` takes the exact AUC from sorted values (`sorted_pixels.auc_roc`) instead of ranks.
    """

    name = "dense"

    def __init__(self, values: np.ndarray, gt: np.ndarray, parts: Parts, n_parts: int,
                 binary: np.ndarray | None = None, sorted_auc: bool = False) -> None:
        self.values, self.gt, self.parts, self.n_parts = values, gt, parts, n_parts
        self.binary, self.sorted_auc = binary, sorted_auc

    def cnr(self, ddof: int, inf_value: float, floor: float, precision: str = "float64") -> float:
        if precision == "float64":
            return dense.cnr(self.values, self.gt, ddof, inf_value, floor)
        return cnr_held(self.values, self.gt, ddof, precision, inf_value)

    def cnr_per_box(self, ddof: int, inf_value: float, floor: float) -> list[float]:
        return dense.cnr_per_box_values(self.values, self.parts(), ddof, inf_value, floor)

    def iou_at(self, t: float, strict: bool) -> float:
        return dense.iou_at(self.values, self.gt, t, strict)

    def miou(self, thresholds: Sequence[float], strict: bool) -> float:
        return dense.miou(self.values, self.gt, thresholds, strict)

    def dice_at(self, t: float, strict: bool) -> float:
        return dense.dice_at(self.values, self.gt, t, strict)

    def auc_roc(self) -> float:
        if self.sorted_auc:
            return pixels.auc_roc(pixels.SortedPixels.build(self.values, self.gt))
        return dense.auc_roc(self.values, self.gt)

    def auc_roc_binned(self, bins: int) -> float:
        return dense.auc_roc(dense.quantise_bins(self.values, bins), self.gt)

    def pointing_game(self) -> float:
        return dense.pointing_game(self.values, self.gt)

    def _mask(self, metric: str) -> np.ndarray:
        if self.binary is None:
            raise self.unavailable(metric, "it was built without a binary mask (the protocol's binary_mask is none)")
        return self.binary

    def iou_fg(self) -> float:
        return dense.iou_fg(self._mask("iou_fg"), self.gt)

    def miou_fgbg(self) -> float:
        return dense.miou_fgbg(self._mask("miou_fgbg"), self.gt)

    def bbox_iou_fg(self, inclusive: bool) -> float:
        return dense.iou_fg(dense.bounding_rect(self._mask("bbox_iou_fg"), inclusive=inclusive), self.gt)

    def bbox_miou_fgbg(self, inclusive: bool) -> float:
        return dense.miou_fgbg(dense.bounding_rect(self._mask("bbox_miou_fgbg"), inclusive=inclusive), self.gt)

    def distance(self) -> float:
        binary = self._mask("distance")
        # one centre per sample: undefined (NaN) when the finding has several parts, as published
        return dense.centre_distance(binary, self.gt) if self.n_parts == 1 else float("nan")


class CellRoute(Route):
    """Weighted native-grid rectangles with prepared values (`bench.evaluation.cells`); parts are `cells.members`."""

    name = "cell"

    def __init__(self, cells: Cells) -> None:
        self.cells = cells

    def cnr(self, ddof: int, inf_value: float, floor: float, precision: str = "float64") -> float:
        if precision != "float64":
            raise self.unavailable("cnr", f"it has no stored-precision CNR (stored_precision = {precision!r})")
        return weighted.cnr(self.cells, ddof, inf_value, floor)

    def cnr_per_box(self, ddof: int, inf_value: float, floor: float) -> list[float]:
        return weighted.cnr_per_box_values(self.cells, ddof, inf_value, floor)

    def iou_at(self, t: float, strict: bool) -> float:
        return weighted.iou_at(self.cells, t, strict)

    def miou(self, thresholds: Sequence[float], strict: bool) -> float:
        return weighted.miou(self.cells, thresholds, strict)

    def dice_at(self, t: float, strict: bool) -> float:
        return weighted.dice_at(self.cells, t, strict)

    def auc_roc(self) -> float:
        return weighted.auc_roc(self.cells)

    def auc_roc_binned(self, bins: int) -> float:
        return weighted.auc_roc(weighted.quantise_bins(self.cells, bins))

    def pointing_game(self) -> float:
        return weighted.pointing_game(self.cells)


class SortedPixelRoute(Route):
    """Full-grid `values` and GT mask `gt`, the values on each GT side sorted once; `parts` as `DenseRoute`.

    CNR per part takes the sorted arrays for a GT of one part and the dense arrays otherwise; the
    pointing game reads the dense arrays.
    """

    name = "sorted-pixel"

    def __init__(self, values: np.ndarray, gt: np.ndarray, parts: Parts, n_parts: int) -> None:
        self.values, self.gt, self.parts, self.n_parts = values, gt, parts, n_parts
        self.sorted = pixels.SortedPixels.build(values, gt)

    def cnr(self, ddof: int, inf_value: float, floor: float, precision: str = "float64") -> float:
        if precision != "float64":
            raise self.unavailable("cnr", f"it has no stored-precision CNR (stored_precision = {precision!r})")
        return pixels.cnr(self.sorted, ddof, inf_value, floor)

    def cnr_per_box(self, ddof: int, inf_value: float, floor: float) -> list[float]:
        if self.n_parts == 1:
            return [pixels.cnr(self.sorted, ddof, inf_value, floor)]
        return dense.cnr_per_box_values(self.values, self.parts(), ddof, inf_value, floor)

    def iou_at(self, t: float, strict: bool) -> float:
        return pixels.iou_at(self.sorted, t, strict)

    def miou(self, thresholds: Sequence[float], strict: bool) -> float:
        return pixels.miou(self.sorted, thresholds, strict)

    def dice_at(self, t: float, strict: bool) -> float:
        return pixels.dice_at(self.sorted, t, strict)

    def auc_roc(self) -> float:
        return pixels.auc_roc(self.sorted)

    def auc_roc_binned(self, bins: int) -> float:
        return pixels.auc_roc_binned(self.sorted, bins)

    def pointing_game(self) -> float:
        return dense.pointing_game(self.values, self.gt)


__all__ = ["CellRoute", "DenseRoute", "MetricUnavailable", "Parts", "Route", "SortedPixelRoute"]
