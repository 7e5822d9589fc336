"""The metric dispatch: a protocol's metric list asked of one route (`bench.evaluation.routes`).

Each metric name maps to the columns it fills, computed from the route with the protocol's
options (thresholds and their rounding, strict or not, CNR variance, floor and zero-variance
value, exact or binned AUC, the bounding-rectangle rule). The same arithmetic runs whichever route
answers, so a new route, or a new kind of ground truth behind a route, needs no dispatch code.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np

from .protocols import Protocol, dice_column, iou_column
from .routes import MetricUnavailable, Route


def _cnr(route: Route, protocol: Protocol) -> dict[str, float]:
    """`cnr` (signed) and `cnr_abs`: the CNR of the GT union, or the mean CNR (and mean |CNR|) over its parts."""
    inf, floor = protocol.zero_variance_value, protocol.cnr_variance_floor
    if protocol.cnr_boxes == "union":
        value = route.cnr(protocol.ddof, inf, floor, protocol.stored_precision)
        return {"cnr": value, "cnr_abs": abs(value)}
    values = route.cnr_per_box(protocol.ddof, inf, floor)
    if not values:
        return {"cnr": 0.0, "cnr_abs": 0.0}
    return {"cnr": float(np.mean(values)), "cnr_abs": float(np.mean(np.abs(values)))}


def _iou(route: Route, protocol: Protocol) -> dict[str, float]:
    return {iou_column(t): route.iou_at(protocol.rounded_threshold(t), protocol.strict) for t in protocol.thresholds}


def _dice(route: Route, protocol: Protocol) -> dict[str, float]:
    return {dice_column(t): route.dice_at(protocol.rounded_threshold(t), protocol.strict) for t in protocol.thresholds}


def _miou(route: Route, protocol: Protocol) -> dict[str, float]:
    return {"miou": route.miou([protocol.rounded_threshold(t) for t in protocol.thresholds], protocol.strict)}


def _auc_roc(route: Route, protocol: Protocol) -> dict[str, float]:
    binned = protocol.auc == "binned"
    return {"auc_roc": route.auc_roc_binned(protocol.auc_bins) if binned else route.auc_roc()}


def _inclusive(protocol: Protocol) -> bool:
    return protocol.bbox_rect == "inclusive"


#: metric name -> the columns it fills; `cnr_abs` comes with `cnr`
COLUMNS: dict[str, Callable[[Route, Protocol], dict[str, float]]] = {
    "cnr": _cnr,
    "cnr_abs": _cnr,
    "iou": _iou,
    "miou": _miou,
    "dice": _dice,
    "auc_roc": _auc_roc,
    "auc_roc_binned": lambda r, p: {"auc_roc_binned": r.auc_roc_binned(p.auc_bins)},
    "pointing_game": lambda r, p: {"pointing_game": r.pointing_game()},
    "iou_fg": lambda r, p: {"iou_fg": r.iou_fg()},
    "miou_fgbg": lambda r, p: {"miou_fgbg": r.miou_fgbg()},
    "bbox_iou_fg": lambda r, p: {"bbox_iou_fg": r.bbox_iou_fg(_inclusive(p))},
    "bbox_miou_fgbg": lambda r, p: {"bbox_miou_fgbg": r.bbox_miou_fgbg(_inclusive(p))},
    "distance": lambda r, p: {"distance": r.distance()},
}


def route_scores(route: Route, protocol: Protocol) -> dict[str, float]:
    """Every metric column of `protocol` from `route`, in the protocol's column order.

    Metrics are computed in the order the protocol lists them; MetricUnavailable for a metric
    no rule here computes, or one the route cannot give.
    """
    scores: dict[str, float] = {}
    for metric in protocol.metrics:
        if metric in scores:  # filled already (cnr_abs with cnr)
            continue
        columns = COLUMNS.get(metric)
        if columns is None:
            raise MetricUnavailable(route.name, metric, "no rule computes it")
        scores.update(columns(route, protocol))
    return OrderedDict((col, scores[col]) for col in protocol.columns)


__all__ = ["COLUMNS", "route_scores"]
