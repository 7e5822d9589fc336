"""The metrics of `bench.evaluation.metrics` on weighted cells (value, pixel count, GT membership).

Each function equals its dense counterpart on the upsampled image; `tests/test_metrics.py`
checks this to 1e-9 on many random cases.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .cells import Cells
from .metrics import DEFAULT_THRESHOLDS


def _ratio(num: float, den: float, inf_value: float = 0.0) -> float:
    if den > 0:
        return float(num / den)
    return float(np.sign(num) * inf_value) if num != 0 else 0.0


def _moments(v: np.ndarray, w: np.ndarray, ddof: int) -> tuple[float, float, bool]:
    total = w.sum()
    if total <= ddof:
        return 0.0, 0.0, False
    if v.min() == v.max():
        return float(v[0]), 0.0, True
    mean = float((w * v).sum() / total)
    var = float((w * (v - mean) ** 2).sum() / (total - ddof))
    return mean, var, True


def _contrast(v: np.ndarray, w: np.ndarray, inside: np.ndarray, outside: np.ndarray, ddof: int,
              inf_value: float = 0.0, floor: float = 0.0) -> float:
    m_in, v_in, ok_in = _moments(v[inside], w[inside], ddof)
    m_out, v_out, ok_out = _moments(v[outside], w[outside], ddof)
    if not (ok_in and ok_out):
        return 0.0
    return _ratio(m_in - m_out, np.sqrt(max(v_in + v_out, floor)), inf_value)


def cnr(c: Cells, ddof: int = 0, inf_value: float = 0.0, floor: float = 0.0) -> float:
    """Signed CNR over the union GT mask (see `bench.evaluation.metrics.cnr`)."""
    finite = np.isfinite(c.values)
    return _contrast(c.values, c.weights, c.inside & finite, ~c.inside & finite, ddof, inf_value, floor)


def cnr_per_box_values(c: Cells, ddof: int = 0, inf_value: float = 0.0, floor: float = 0.0) -> list[float]:
    """Signed CNR of each box with cumulative exclusion (see `bench.evaluation.metrics.cnr_per_box_values`)."""
    finite = np.isfinite(c.values)
    used = np.zeros_like(finite)
    values = []
    for member in c.members:
        inside = member & ~used & finite
        used = used | member
        values.append(_contrast(c.values, c.weights, inside, ~used & finite, ddof, inf_value, floor))
    return values


def cnr_per_box(c: Cells, ddof: int = 0, inf_value: float = 0.0, floor: float = 0.0) -> float:
    """Mean signed CNR over boxes with cumulative exclusion (see `bench.evaluation.metrics.cnr_per_box`)."""
    values = cnr_per_box_values(c, ddof, inf_value, floor)
    return float(np.mean(values)) if values else 0.0


def iou_at(c: Cells, t: float, strict: bool = True) -> float:
    """Pixel IoU of the thresholded map with the GT union."""
    with np.errstate(invalid="ignore"):
        pred = (c.values > t) if strict else (c.values >= t)
    union = c.weights[pred | c.inside].sum()
    return _ratio(c.weights[pred & c.inside].sum(), union)


def dice_at(c: Cells, t: float, strict: bool = True) -> float:
    """Pixel Dice of the thresholded map with the GT union."""
    with np.errstate(invalid="ignore"):
        pred = (c.values > t) if strict else (c.values >= t)
    return _ratio(2 * c.weights[pred & c.inside].sum(), c.weights[pred].sum() + c.weights[c.inside].sum())


def miou(c: Cells, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, strict: bool = True) -> float:
    return float(np.mean([iou_at(c, t, strict) for t in thresholds]))


def auc_roc(c: Cells) -> float:
    """Exact ROC AUC with ties counted one half, from per-value positive/negative pixel counts."""
    finite = np.isfinite(c.values)
    values = c.values[finite]
    w = c.weights[finite]
    pos = np.where(c.inside[finite], w, 0)
    neg = w - pos
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    _, inverse = np.unique(values, return_inverse=True)
    pos_u = np.bincount(inverse, weights=pos).astype(np.int64)
    neg_u = np.bincount(inverse, weights=neg).astype(np.int64)
    below = np.cumsum(neg_u) - neg_u
    twice = int((pos_u * (2 * below + neg_u)).sum())
    return twice / (2.0 * n_pos * n_neg)


def quantise_bins(c: Cells, bins: int) -> Cells:
    """Cells with values replaced by their binned level (see `bench.evaluation.metrics.quantise_bins`)."""
    thresholds = np.linspace(0.0, 1.0, bins)
    with np.errstate(invalid="ignore"):
        q = (c.values[:, None] >= thresholds).sum(axis=1).astype(np.float64)
        q[~(c.values >= 0)] = np.nan
    return Cells(q, c.weights, c.inside, c.first, c.members)


def pointing_game(c: Cells) -> float:
    """GT membership of the first (row-major) pixel holding the maximum value."""
    finite = np.isfinite(c.values)
    if not finite.any():
        return 0.0
    top = np.nanmax(c.values)
    candidates = np.flatnonzero(finite & (c.values == top))
    return float(c.inside[candidates[np.argmin(c.first[candidates])]])
