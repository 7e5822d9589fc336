"""Scoring one heatmap against one sample's boxes under a protocol.

Two routes give the same numbers on the original grid: `score_dense` upsamples to the full
evaluation grid and applies `bench.evaluation.metrics` pixel by pixel (the reference, and the route for
bilinear protocols); `score_cells` works on the native-grid rectangles of `bench.evaluation.cells` (exact for
nearest upsampling, and the default whenever the protocol allows it). Protocols evaluated in the
512 centre-crop space of the diffusion-model papers, with or without GMM binary masks, always take
the dense route (`bench.evaluation.crop_grid`, `bench.evaluation.gmm_mask`).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from ..core.errors import SampleError
from ..core.geometry import box_mask
from ..core.heatmap import Heatmap
from ..core.samples import Sample
from . import metrics as dense
from . import weighted_metrics as weighted
from .cells import Cells, build_cells
from .crop_grid import CropSpace, gt_mask, sample_bilinear, sampling
from .gmm_mask import GmmError, PreviousMask, mask_on_grid, native_mask
from .label_crop import surviving_boxes
from .protocols import Protocol, ValuePolicy, iou_column
from .resample import to_original


class ExcludedSample(SampleError):
    """The protocol leaves this sample out (none of its boxes survives the model's crop)."""


def check_values(heatmap: Heatmap, sample_id: str) -> None:
    """Reject maps that cannot be scored: infinite values, or no finite value at all."""
    values = heatmap.values
    if not np.issubdtype(values.dtype, np.number):
        raise SampleError(sample_id, f"heatmap has non-numeric dtype {values.dtype}")
    if np.iscomplexobj(values):
        raise SampleError(sample_id, f"heatmap has complex dtype {values.dtype}; a heatmap holds real values")
    if np.isinf(values).any():
        raise SampleError(sample_id, "heatmap has infinite values")
    if not np.isfinite(values).any():
        raise SampleError(sample_id, "heatmap is all NaN")
    g = heatmap.geometry
    if g.image_height <= 0 or g.image_width <= 0:
        raise SampleError(sample_id, "heatmap geometry has an empty image")


def apply_policy(values: np.ndarray, policy: ValuePolicy) -> np.ndarray:
    """Clip, then min-max over the finite values (a constant map becomes all zeros); NaN stays NaN.

    Under `precision = "float16"` the result is rounded to the nearest half-precision value, as a
    map stored in float16 after its min-max (Nützel et al.) is; ties at the maximum become possible.
    """
    v = np.array(values, dtype=np.float64)
    if policy.clip_min is not None or policy.clip_max is not None:
        v = np.clip(v, policy.clip_min, policy.clip_max)
    if policy.normalise == "minmax":
        finite = np.isfinite(v)
        lo, hi = v[finite].min(), v[finite].max()
        v = (v - lo) / (hi - lo) if hi > lo else np.where(finite, 0.0, np.nan)
    if policy.precision == "float16":
        v = v.astype(np.float16).astype(np.float64)
    return v


def prepare_values(values: np.ndarray, protocol: Protocol, backend: str | None = None) -> np.ndarray:
    """Apply the protocol's value policy for `backend`; NaN marks 'no value' (outside the field of view).

    Clip, then min-max over the finite values, then fill NaN with 0 when the protocol puts zero
    outside the field of view.
    """
    v = apply_policy(values, protocol.value_policy(backend))
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


def protocol_sample(heatmap: Heatmap, sample: Sample, protocol: Protocol) -> Sample:
    """The sample with only the boxes the protocol scores against this heatmap.

    Under `drop_boxes = "label_crop"` boxes outside the model's crop leave the ground truth
    (`bench.evaluation.label_crop`); ExcludedSample when none is left.
    """
    if protocol.drop_boxes == "none":
        return sample
    kept = surviving_boxes(sample.boxes, heatmap.geometry, protocol.model_input)
    if not kept:
        raise ExcludedSample(sample.sample_id, "no box survives the model's input crop (drop_boxes = label_crop)")
    if len(kept) == len(sample.boxes):
        return sample
    return dataclasses.replace(sample, boxes=tuple(sample.boxes[i] for i in kept))


def _cnr_columns(per_box: Callable[[], list[float]], union: Callable[[], float],
                 protocol: Protocol) -> dict[str, float]:
    """`cnr` (signed) and `cnr_abs`: |CNR| of the union, or the mean |CNR| over boxes."""
    if protocol.cnr_boxes == "union":
        value = union()
        return {"cnr": value, "cnr_abs": abs(value)}
    values = per_box()
    if not values:
        return {"cnr": 0.0, "cnr_abs": 0.0}
    return {"cnr": float(np.mean(values)), "cnr_abs": float(np.mean(np.abs(values)))}


def _dense_scores(h: np.ndarray, gt: np.ndarray, box_masks: Callable[[], Sequence[np.ndarray]],
                  binary: np.ndarray | None, protocol: Protocol, n_boxes: int = 1) -> dict[str, float]:
    scores: dict[str, float] = OrderedDict()
    inf = protocol.zero_variance_value
    for metric in protocol.metrics:
        if metric in ("cnr", "cnr_abs"):
            if "cnr" not in scores:
                scores.update(_cnr_columns(lambda: dense.cnr_per_box_values(h, box_masks(), protocol.ddof, inf),
                                           lambda: dense.cnr(h, gt, protocol.ddof, inf), protocol))
        elif metric == "iou":
            for t in protocol.thresholds:
                scores[iou_column(t)] = dense.iou_at(h, gt, t, protocol.strict)
        elif metric == "miou":
            scores["miou"] = dense.miou(h, gt, protocol.thresholds, protocol.strict)
        elif metric == "auc_roc":
            hq = dense.quantise_bins(h, protocol.auc_bins) if protocol.auc == "binned" else h
            scores["auc_roc"] = dense.auc_roc(hq, gt)
        elif metric == "auc_roc_binned":
            scores["auc_roc_binned"] = dense.auc_roc(dense.quantise_bins(h, protocol.auc_bins), gt)
        elif metric == "pointing_game":
            scores["pointing_game"] = dense.pointing_game(h, gt)
        elif metric == "iou_fg":
            scores["iou_fg"] = dense.iou_fg(binary, gt)
        elif metric == "miou_fgbg":
            scores["miou_fgbg"] = dense.miou_fgbg(binary, gt)
        elif metric in ("bbox_iou_fg", "bbox_miou_fgbg"):
            rect = dense.bounding_rect(binary, inclusive=protocol.bbox_rect == "inclusive")
            scores[metric] = dense.iou_fg(rect, gt) if metric == "bbox_iou_fg" else dense.miou_fgbg(rect, gt)
        elif metric == "distance":
            # one centre per sample: undefined (NaN) when the finding has several boxes, as published
            scores["distance"] = dense.centre_distance(binary, gt) if n_boxes == 1 else float("nan")
    return scores


def score_dense(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None) -> dict[str, float]:
    """All metric columns by brute force on the full evaluation grid."""
    check_values(heatmap, sample.sample_id)
    _check_size(heatmap, sample)
    if protocol.eval_grid == "centre_crop":
        return _score_crop(heatmap, sample, protocol, backend)
    sample = protocol_sample(heatmap, sample, protocol)
    h = prepare_values(to_original(heatmap, protocol.interpolation), protocol, backend)
    gt = box_mask(sample.boxes, sample.height, sample.width)
    masks = lambda: [box_mask([b], sample.height, sample.width) for b in sample.boxes]  # noqa: E731
    return _finish(_dense_scores(h, gt, masks, None, protocol), protocol)


def _binary_mask(native: np.ndarray, where, protocol: Protocol) -> np.ndarray:
    """The protocol's GMM mask on the crop grid; a failed fit gives an empty or the previous mask."""
    shape = (where.rows.size, where.cols.size)
    try:
        mask = native_mask(native, protocol.seed if protocol.gmm_seed == "fixed" else None, protocol.gmm_majority)
    except GmmError:
        return PreviousMask.recall(shape) if protocol.on_gmm_error == "previous" else np.zeros(shape, dtype=bool)
    return PreviousMask.remember(mask_on_grid(mask, where))


def _score_crop(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> dict[str, float]:
    """Metrics in the centre-crop space: min-max on the native grid, then bilinear to the crop."""
    space = CropSpace.for_image(sample.height, sample.width, protocol.crop_size)
    native = apply_policy(heatmap.values, protocol.value_policy(backend))
    where = sampling(heatmap.geometry, native.shape, space)
    h = sample_bilinear(native, where)
    if protocol.outside == "zero":
        h = np.where(np.isfinite(h), h, 0.0)
    gt = gt_mask(sample.boxes, space, protocol.gt_antialias)
    binary = _binary_mask(native, where, protocol) if protocol.binary_mask == "gmm" else None
    if binary is not None and not binary.any() and protocol.on_empty_mask == "zero":
        return OrderedDict((c, 0.0) for c in protocol.columns)
    masks = lambda: [gt_mask([b], space, protocol.gt_antialias) for b in sample.boxes]  # noqa: E731
    return _finish(_dense_scores(h, gt, masks, binary, protocol, len(sample.boxes)), protocol)


def score_cells(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None) -> dict[str, float]:
    """All metric columns on native-grid rectangles (nearest upsampling on the original grid only)."""
    if protocol.interpolation != "nearest" or protocol.eval_grid != "original":
        raise ValueError("the cell route is exact only for nearest upsampling on the original grid")
    check_values(heatmap, sample.sample_id)
    _check_size(heatmap, sample)
    sample = protocol_sample(heatmap, sample, protocol)
    raw = build_cells(heatmap.values, heatmap.geometry, sample.boxes)
    c = Cells(prepare_values(raw.values, protocol, backend), raw.weights, raw.inside, raw.first, raw.members)
    inf = protocol.zero_variance_value
    scores: dict[str, float] = OrderedDict()
    for metric in protocol.metrics:
        if metric in ("cnr", "cnr_abs"):
            if "cnr" not in scores:
                scores.update(_cnr_columns(lambda: weighted.cnr_per_box_values(c, protocol.ddof, inf),
                                           lambda: weighted.cnr(c, protocol.ddof, inf), protocol))
        elif metric == "iou":
            for t in protocol.thresholds:
                scores[iou_column(t)] = weighted.iou_at(c, t, protocol.strict)
        elif metric == "miou":
            scores["miou"] = weighted.miou(c, protocol.thresholds, protocol.strict)
        elif metric == "auc_roc":
            cq = weighted.quantise_bins(c, protocol.auc_bins) if protocol.auc == "binned" else c
            scores["auc_roc"] = weighted.auc_roc(cq)
        elif metric == "auc_roc_binned":
            scores["auc_roc_binned"] = weighted.auc_roc(weighted.quantise_bins(c, protocol.auc_bins))
        elif metric == "pointing_game":
            scores["pointing_game"] = weighted.pointing_game(c)
    return _finish(scores, protocol)


def _finish(scores: dict[str, float], protocol: Protocol) -> dict[str, float]:
    """The columns in the order the protocol lists them."""
    out: dict[str, float] = OrderedDict()
    for col in protocol.columns:
        out[col] = scores[col]
    return out


def score(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None) -> dict[str, float]:
    """Score by the fastest exact route the protocol allows; `backend` picks a per-backend value policy."""
    if protocol.interpolation == "nearest" and protocol.eval_grid == "original":
        return score_cells(heatmap, sample, protocol, backend)
    return score_dense(heatmap, sample, protocol, backend)


def select_samples(samples: Sequence[Sample], protocol: Protocol) -> list[Sample]:
    """The protocol's sample set: its split, grouped per phrase or per (image, category), then filtered.

    Grouping per category unites the boxes of every phrase of one finding on one image and keeps
    the first phrase, as the (dicom_id, category) unit of Nützel et al. and Dombrowski et al.
    `require_category_in_phrase` keeps a sample only when the category name (lower case) occurs in
    one of its phrases (Dombrowski et al.'s `--filter_bad_impressions`).
    """
    chosen = [s for s in samples if protocol.split == "all" or s.split == protocol.split]
    if protocol.grouping == "phrase":
        groups = [(s, [s.phrase]) for s in chosen]
    else:
        merged: OrderedDict[tuple[str, str], tuple[Sample, list[str]]] = OrderedDict()
        for s in chosen:
            key = (s.image_path, s.category)
            if key not in merged:
                merged[key] = (s, [s.phrase])
                continue
            first, phrases = merged[key]
            boxes = first.boxes + tuple(b for b in s.boxes if b not in first.boxes)
            merged[key] = (Sample(first.sample_id, first.image_path, first.width, first.height, first.category,
                                  first.phrase, boxes, first.split, first.extra), phrases + [s.phrase])
        groups = list(merged.values())
    if protocol.require_category_in_phrase:
        groups = [(s, phrases) for s, phrases in groups
                  if any(s.category.lower() in p.lower() for p in phrases)]
    return [s for s, _ in groups]


__all__ = ["ExcludedSample", "apply_policy", "check_values", "prepare_values", "protocol_sample", "score",
           "score_cells", "score_dense", "select_samples"]
