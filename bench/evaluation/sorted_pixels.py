"""The metrics of `bench.evaluation.metrics` on the full grid from one sort of each GT side.

For maps with (about) one native cell per original pixel, such as bring-your-own maps at the
original size, cutting into native cells saves nothing. Here the finite values inside and outside
the GT union are each sorted once; every threshold IoU is then two binary searches, the exact AUC
is the Mann-Whitney count of negatives below (and tied with) each positive, and the binned AUC
reads its level counts off the same sorted arrays. No per-threshold image-sized temporaries are
made. The CNR takes the same inside and outside arrays as the brute-force route (same elements,
same order), so it is identical to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import metrics as dense


@dataclass
class SortedPixels:
    """Finite values inside (`pos`) and outside (`neg`) the GT union, in row-major order and sorted."""

    pos: np.ndarray
    neg: np.ndarray
    pos_sorted: np.ndarray
    neg_sorted: np.ndarray
    n_gt: int

    @classmethod
    def build(cls, h: np.ndarray, gt: np.ndarray) -> "SortedPixels":
        finite = np.isfinite(h)
        if finite.all():
            pos, neg = h[gt], h[~gt]
        else:
            pos, neg = h[gt & finite], h[~gt & finite]
        return cls(pos, neg, np.sort(pos), np.sort(neg), int(np.count_nonzero(gt)))


def _above(sorted_values: np.ndarray, t: float, strict: bool) -> int:
    return int(sorted_values.size - np.searchsorted(sorted_values, t, side="right" if strict else "left"))


def iou_at(p: SortedPixels, t: float, strict: bool = True) -> float:
    """`metrics.iou_at`: |pred & G| / |pred | G| with pred = H > t (or >=); NaN pixels never predicted."""
    tp = _above(p.pos_sorted, t, strict)
    union = _above(p.neg_sorted, t, strict) + p.n_gt
    return dense._ratio(tp, union)


def dice_at(p: SortedPixels, t: float, strict: bool = True) -> float:
    """`metrics.dice_at`: 2|pred & G| / (|pred| + |G|) from the two sorted sides."""
    tp = _above(p.pos_sorted, t, strict)
    return dense._ratio(2 * tp, tp + _above(p.neg_sorted, t, strict) + p.n_gt)


def miou(p: SortedPixels, thresholds: Sequence[float], strict: bool = True) -> float:
    return float(np.mean([iou_at(p, t, strict) for t in thresholds]))


def auc_roc(p: SortedPixels) -> float:
    """`metrics.auc_roc`: exact AUC with ties one half, as an integer count of (negative below, tie) pairs."""
    n_pos, n_neg = p.pos_sorted.size, p.neg_sorted.size
    if n_pos == 0 or n_neg == 0:
        return 0.5
    below = np.searchsorted(p.neg_sorted, p.pos_sorted, side="left")
    upto = np.searchsorted(p.neg_sorted, p.pos_sorted, side="right")
    twice = int(below.sum(dtype=np.int64)) + int(upto.sum(dtype=np.int64))
    return twice / (2.0 * n_pos * n_neg)


def auc_roc_binned(p: SortedPixels, bins: int) -> float:
    """`metrics.auc_roc` of `metrics.quantise_bins`: the AUC over the levels linspace(0, 1, bins) reached (>=).

    Negative values take no level and leave both classes, as NaN does.
    """
    thresholds = np.linspace(0.0, 1.0, bins)
    reach_pos = p.pos_sorted.size - np.searchsorted(p.pos_sorted, thresholds, side="left")
    reach_neg = p.neg_sorted.size - np.searchsorted(p.neg_sorted, thresholds, side="left")
    n_pos, n_neg = int(reach_pos[0]), int(reach_neg[0])
    if n_pos == 0 or n_neg == 0:
        return 0.5
    pos_level = reach_pos - np.append(reach_pos[1:], 0)
    neg_level = reach_neg - np.append(reach_neg[1:], 0)
    below = np.cumsum(neg_level) - neg_level
    twice = int((pos_level * (2 * below + neg_level)).sum())
    return twice / (2.0 * n_pos * n_neg)


def cnr(p: SortedPixels, ddof: int = 0, inf_value: float = 0.0, floor: float = 0.0) -> float:
    """`metrics.cnr` on the same inside and outside arrays."""
    return dense._contrast(p.pos, p.neg, ddof, inf_value, floor)


__all__ = ["SortedPixels", "auc_roc", "auc_roc_binned", "cnr", "dice_at", "iou_at", "miou"]
