"""Grounding metrics on a dense heatmap at evaluation resolution: the brute-force reference.

Every function takes H (float array, NaN = no value: excluded from CNR and AUC, never above a
threshold, never the maximum) and G (boolean GT mask of the same shape). These are the
definitions of the README's metric list (section "Metrics") computed pixel by pixel; `bench.evaluation.cells` computes the same numbers on
native-grid cells and is tested against these.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_THRESHOLDS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5)


def _ratio(num: float, den: float, inf_value: float = 0.0) -> float:
    """num / den; a zero denominator gives 0, or +-inf_value when the numerator is not zero."""
    if den > 0:
        return float(num / den)
    return float(np.sign(num) * inf_value) if num != 0 else 0.0


def _side(values: np.ndarray, ddof: int) -> tuple[float, float]:
    """Mean and variance, exact for constant input (float summation would leave ~1e-33 noise)."""
    if values.min() == values.max():
        return float(values[0]), 0.0
    return float(values.mean()), float(values.var(ddof=ddof))


def _contrast(inside: np.ndarray, outside: np.ndarray, ddof: int, inf_value: float = 0.0, floor: float = 0.0) -> float:
    if inside.size <= ddof or outside.size <= ddof:
        return 0.0
    m_in, v_in = _side(inside, ddof)
    m_out, v_out = _side(outside, ddof)
    return _ratio(m_in - m_out, np.sqrt(max(v_in + v_out, floor)), inf_value)


def cnr(h: np.ndarray, g: np.ndarray, ddof: int = 0, inf_value: float = 0.0, floor: float = 0.0) -> float:
    """Signed contrast-to-noise ratio (mean_in - mean_out) / sqrt(max(var_in + var_out, floor)).

    `ddof` 0 is the population variance, 1 the sample variance. An empty side gives 0; equal means
    give 0 (a constant map); a zero denominator gives 0, or +-`inf_value` when the means differ
    (Vilouras et al.'s float32 nan_to_num turns that +inf into 3.4e38). A variance `floor` > 0
    (the default protocol's `cnr_variance_floor`) bounds |CNR| by |mean_in - mean_out| / sqrt(floor),
    which a perfect binary map of the GT (means 1 and 0, no variance) attains, so no map of values
    in [0, 1] scores above it.
    """
    finite = np.isfinite(h)
    return _contrast(h[g & finite], h[~g & finite], ddof, inf_value, floor)


def cnr_per_box_values(h: np.ndarray, box_masks: Sequence[np.ndarray], ddof: int = 0,
                       inf_value: float = 0.0, floor: float = 0.0) -> list[float]:
    """Signed CNR of each box, taken in order with cumulative exclusion.

    Box k's inside is its pixels not already used by boxes 1..k-1; its outside is the rest of the
    map minus boxes 1..k (Vilouras et al.'s sequential NaN masking).
    """
    work = np.asarray(h, dtype=np.float64).copy()
    values = []
    for mask in box_masks:
        inside = work[mask & np.isfinite(work)]
        work[mask] = np.nan
        values.append(_contrast(inside, work[np.isfinite(work)], ddof, inf_value, floor))
    return values


def cnr_per_box(h: np.ndarray, box_masks: Sequence[np.ndarray], ddof: int = 0, inf_value: float = 0.0,
                floor: float = 0.0) -> float:
    """Mean over boxes of `cnr_per_box_values` (0 without boxes)."""
    values = cnr_per_box_values(h, box_masks, ddof, inf_value, floor)
    return float(np.mean(values)) if values else 0.0


def iou_at(h: np.ndarray, g: np.ndarray, t: float, strict: bool = True) -> float:
    """Pixel IoU of the thresholded map (H > t, or H >= t) with G; 0 when both are empty."""
    with np.errstate(invalid="ignore"):
        pred = (h > t) if strict else (h >= t)
    union = np.count_nonzero(pred | g)
    return _ratio(np.count_nonzero(pred & g), union)


def dice_at(h: np.ndarray, g: np.ndarray, t: float, strict: bool = True) -> float:
    """Dice of the thresholded map (H > t, or H >= t) with G: 2|pred & G| / (|pred| + |G|); 0 when both are empty."""
    with np.errstate(invalid="ignore"):
        pred = (h > t) if strict else (h >= t)
    return _ratio(2 * np.count_nonzero(pred & g), np.count_nonzero(pred) + np.count_nonzero(g))


def miou(h: np.ndarray, g: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS, strict: bool = True) -> float:
    """Mean of `iou_at` over the thresholds (the BioViL / Vilouras multi-threshold mIoU)."""
    return float(np.mean([iou_at(h, g, t, strict) for t in thresholds]))


def auc_roc(h: np.ndarray, g: np.ndarray) -> float:
    """Exact pixel ROC AUC (ties count one half, as scikit-learn), NaN pixels excluded.

    Computed as the Mann-Whitney statistic from average ranks; 0.5 when a class is empty.
    """
    finite = np.isfinite(h)
    values = h[finite]
    labels = g[finite]
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return 0.5
    from scipy.stats import (
        rankdata,  # imported here: scipy.stats costs a process ~0.5 s, the fast routes never need it
    )

    ranks = rankdata(values)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def quantise_bins(h: np.ndarray, bins: int) -> np.ndarray:
    """Number of the thresholds linspace(0, 1, bins) that each value reaches (>=).

    NaN and negative values become NaN (excluded), matching the binned AUC of torcheval, whose
    ROC over `bins` thresholds equals the exact AUC of this quantised map.
    """
    thresholds = np.linspace(0.0, 1.0, bins)
    with np.errstate(invalid="ignore"):
        q = (h[..., None] >= thresholds).sum(axis=-1).astype(np.float64)
        q[~(h >= 0)] = np.nan
    return q


def peak(h: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first maximum of H in row-major order, NaN never winning; None when no value is finite."""
    v = np.asarray(h)
    flat = v.ravel()
    if not np.isfinite(flat).any():
        return None
    return divmod(int(np.nanargmax(flat)), v.shape[1])


def pointing_game(h: np.ndarray, g: np.ndarray) -> float:
    """1 if the first maximum of H in row-major order (`peak`) lies in G, else 0 (0 when H is all NaN)."""
    at = peak(h)
    return 0.0 if at is None else float(g[at])


def iou_fg(pred: np.ndarray, g: np.ndarray) -> float:
    """Foreground IoU of a binary prediction with G (scikit-learn's jaccard_score; 0 when both are empty)."""
    return _ratio(np.count_nonzero(pred & g), np.count_nonzero(pred | g))


def miou_fgbg(pred: np.ndarray, g: np.ndarray) -> float:
    """Mean of foreground and background IoU of one binary mask: the G2G / Dombrowski "mIoU".

    A two-class segmentation mIoU; not the multi-threshold `miou` of BioViL and Vilouras et al.
    """
    return (iou_fg(pred, g) + iou_fg(~pred, ~g)) / 2.0


def _extent(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(first row, last row, first column, last column) of a mask's foreground, ends included; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])


def bounding_rect(pred: np.ndarray, inclusive: bool = True) -> np.ndarray:
    """The filled bounding rectangle of a binary mask's foreground (empty for an empty mask).

    `inclusive=False` reproduces the published off-by-one: the last foreground row and column
    are used as exclusive ends, so the rectangle loses its last row and column.
    """
    out = np.zeros_like(pred, dtype=bool)
    extent = _extent(pred)
    if extent is None:
        return out
    r0, r1, c0, c1 = extent
    end = 1 if inclusive else 0
    out[r0:r1 + end, c0:c1 + end] = True
    return out


def rect_centre(mask: np.ndarray) -> tuple[float, float] | None:
    """(x, y) centre of a mask's bounding rectangle in pixel-index coordinates; None when empty.

    The rectangle runs from the first to the last foreground row and column, both included, so a
    single pixel at column 3 has centre x = 3.0.
    """
    extent = _extent(mask)
    if extent is None:
        return None
    r0, r1, c0, c1 = extent
    return (c0 + c1) / 2.0, (r0 + r1) / 2.0


def centre_distance(pred: np.ndarray, g: np.ndarray) -> float:
    """Euclidean distance in pixels between the bounding-rectangle centres of a binary prediction and G.

    The `distance` of Nützel et al. and Dombrowski et al.; NaN when either mask is empty (no
    rectangle to take a centre of).
    """
    a, b = rect_centre(pred), rect_centre(g)
    if a is None or b is None:
        return float("nan")
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))
