"""Scoring one heatmap against one sample's boxes under a protocol.

Two routes give the same numbers: `score_dense` upsamples to the full evaluation grid and
applies `bench.metrics` pixel by pixel (the reference, and the route for bilinear protocols);
`score_cells` works on the native-grid rectangles of `bench.cells` (exact for nearest
upsampling, and the default whenever the protocol allows it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import numpy as np

from . import metrics as dense
from . import weighted_metrics as weighted
from .cells import Cells, build_cells
from .errors import SampleError
from .geometry import box_mask
from .heatmap import Heatmap
from .protocols import Protocol, iou_column
from .resample import to_original
from .samples import Sample


def check_values(heatmap: Heatmap, sample_id: str) -> None:
    """Reject maps that cannot be scored: infinite values, or no finite value at all."""
    values = heatmap.values
    if not np.issubdtype(values.dtype, np.number):
        raise SampleError(sample_id, f"heatmap has non-numeric dtype {values.dtype}")
    if np.isinf(values).any():
        raise SampleError(sample_id, "heatmap has infinite values")
    if not np.isfinite(values).any():
        raise SampleError(sample_id, "heatmap is all NaN")
    g = heatmap.geometry
    if g.image_height <= 0 or g.image_width <= 0:
        raise SampleError(sample_id, "heatmap geometry has an empty image")


def prepare_values(values: np.ndarray, protocol: Protocol) -> np.ndarray:
    """Apply the protocol's value policy; NaN marks 'no value' (outside the field of view).

    Clip, then min-max over the finite values (a constant map becomes all zeros), then fill
    NaN with 0 when the protocol puts zero outside the field of view.
    """
    v = np.array(values, dtype=np.float64)
    if protocol.clip_min is not None or protocol.clip_max is not None:
        v = np.clip(v, protocol.clip_min, protocol.clip_max)
    if protocol.normalise == "minmax":
        finite = np.isfinite(v)
        lo, hi = v[finite].min(), v[finite].max()
        v = (v - lo) / (hi - lo) if hi > lo else np.where(finite, 0.0, np.nan)
    if protocol.outside == "zero":
        v = np.where(np.isfinite(v), v, 0.0)
    return v


def _check_size(heatmap: Heatmap, sample: Sample) -> None:
    g = heatmap.geometry
    if (g.image_height, g.image_width) != (sample.height, sample.width):
        raise SampleError(
            sample.sample_id,
            f"heatmap is for a {g.image_width}x{g.image_height} image, sample is {sample.width}x{sample.height}",
        )


def score_dense(heatmap: Heatmap, sample: Sample, protocol: Protocol) -> dict[str, float]:
    """All metric columns by brute force on the full evaluation grid."""
    check_values(heatmap, sample.sample_id)
    _check_size(heatmap, sample)
    h = prepare_values(to_original(heatmap, protocol.interpolation), protocol)
    gt = box_mask(sample.boxes, sample.height, sample.width)
    scores: dict[str, float] = OrderedDict()
    for metric in protocol.metrics:
        if metric in ("cnr", "cnr_abs"):
            if "cnr" not in scores:
                if protocol.cnr_boxes == "union":
                    scores["cnr"] = dense.cnr(h, gt, protocol.ddof)
                else:
                    masks = [box_mask([b], sample.height, sample.width) for b in sample.boxes]
                    scores["cnr"] = dense.cnr_per_box(h, masks, protocol.ddof)
        elif metric == "iou":
            for t in protocol.thresholds:
                scores[iou_column(t)] = dense.iou_at(h, gt, t, protocol.strict)
        elif metric == "miou":
            scores["miou"] = dense.miou(h, gt, protocol.thresholds, protocol.strict)
        elif metric == "auc_roc":
            hq = dense.quantise_bins(h, protocol.auc_bins) if protocol.auc == "binned" else h
            scores["auc_roc"] = dense.auc_roc(hq, gt)
        elif metric == "pointing_game":
            scores["pointing_game"] = dense.pointing_game(h, gt)
    return _finish(scores, protocol)


def score_cells(heatmap: Heatmap, sample: Sample, protocol: Protocol) -> dict[str, float]:
    """All metric columns on native-grid rectangles (nearest-upsampling protocols only)."""
    if protocol.interpolation != "nearest":
        raise ValueError("the cell route is exact only for nearest upsampling")
    check_values(heatmap, sample.sample_id)
    _check_size(heatmap, sample)
    raw = build_cells(heatmap.values, heatmap.geometry, sample.boxes)
    c = Cells(prepare_values(raw.values, protocol), raw.weights, raw.inside, raw.first, raw.members)
    scores: dict[str, float] = OrderedDict()
    for metric in protocol.metrics:
        if metric in ("cnr", "cnr_abs"):
            if "cnr" not in scores:
                scores["cnr"] = weighted.cnr(c, protocol.ddof) if protocol.cnr_boxes == "union" \
                    else weighted.cnr_per_box(c, protocol.ddof)
        elif metric == "iou":
            for t in protocol.thresholds:
                scores[iou_column(t)] = weighted.iou_at(c, t, protocol.strict)
        elif metric == "miou":
            scores["miou"] = weighted.miou(c, protocol.thresholds, protocol.strict)
        elif metric == "auc_roc":
            cq = weighted.quantise_bins(c, protocol.auc_bins) if protocol.auc == "binned" else c
            scores["auc_roc"] = weighted.auc_roc(cq)
        elif metric == "pointing_game":
            scores["pointing_game"] = weighted.pointing_game(c)
    return _finish(scores, protocol)


def _finish(scores: dict[str, float], protocol: Protocol) -> dict[str, float]:
    """Order the columns as the protocol lists them; derive cnr_abs from cnr."""
    out: dict[str, float] = OrderedDict()
    for col in protocol.columns:
        out[col] = abs(scores["cnr"]) if col == "cnr_abs" else scores[col]
    return out


def score(heatmap: Heatmap, sample: Sample, protocol: Protocol) -> dict[str, float]:
    """Score by the fastest exact route the protocol allows."""
    if protocol.interpolation == "nearest":
        return score_cells(heatmap, sample, protocol)
    return score_dense(heatmap, sample, protocol)


def select_samples(samples: Sequence[Sample], protocol: Protocol) -> list[Sample]:
    """The protocol's sample set: its split, grouped per phrase or per (image, category).

    Grouping per category unites the boxes of every phrase of one finding on one image and keeps
    the first phrase, as the (dicom_id, category) unit of Nützel et al. and Dombrowski et al.
    """
    chosen = [s for s in samples if protocol.split == "all" or s.split == protocol.split]
    if protocol.grouping == "phrase":
        return chosen
    merged: OrderedDict[tuple[str, str], Sample] = OrderedDict()
    for s in chosen:
        key = (s.image_path, s.category)
        if key not in merged:
            merged[key] = s
            continue
        first = merged[key]
        boxes = first.boxes + tuple(b for b in s.boxes if b not in first.boxes)
        merged[key] = Sample(first.sample_id, first.image_path, first.width, first.height, first.category,
                             first.phrase, boxes, first.split, first.extra)
    return list(merged.values())


__all__ = ["check_values", "prepare_values", "score", "score_cells", "score_dense", "select_samples"]
