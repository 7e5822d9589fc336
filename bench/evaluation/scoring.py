"""Scoring one heatmap against one sample's boxes under a protocol.

Three routes give the same numbers on the original grid: `score_dense` upsamples to the full
evaluation grid and applies `bench.evaluation.metrics` pixel by pixel (the reference: box dropping
from the full-resolution label mask, the GMM fitted on every pixel); `score_cells` works on the
native-grid rectangles of `bench.evaluation.cells` (exact for nearest upsampling); `score_pixels`
sorts the full-grid values once (`bench.evaluation.sorted_pixels`), the fast route for maps with
about one native cell per pixel, such as bring-your-own maps at the original size. `score` picks
the fastest exact route for the map's grid. Protocols evaluated in the 512 centre-crop space of the
diffusion-model papers take the crop route (`bench.evaluation.crop_grid`, `bench.evaluation.gmm_mask`),
with the GMM fitted on the value histogram under `score` and on every pixel under `score_dense`.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

from ..core.errors import BenchError, SampleError
from ..core.geometry import box_mask, truncated_box
from ..core.ground_truth import load_mask
from ..core.heatmap import Heatmap
from ..core.samples import Sample
from .cells import Cells, build_cells
from .crop_grid import CropSpace, gt_mask, sample_bilinear, sampling
from .gmm_mask import GmmError, PreviousMask, fast_threshold, gmm_threshold, mask_on_grid, native_mask
from .gt_kinds import check_gt_kind
from .label_crop import stated_crop_geometry, surviving_boxes, surviving_boxes_mask
from .point_route import PointRoute
from .protocols import Protocol, ValuePolicy, round_to
from .resample import to_original
from .route_scores import route_scores
from .routes import CellRoute, DenseRoute, Parts, SortedPixelRoute
from .seed_spread import extra_seeds, seed_column, seed_dependent
from .stored_precision import DTYPES, held_at

#: a map with at least this share of native cells per field-of-view pixel takes the sorted-pixel route
PIXEL_ROUTE_SHARE = 0.25


class ExcludedSample(SampleError):
    """The protocol leaves this sample out (none of its boxes survives the model's crop, or lies in the centre crop).

    Its reason starts with PREFIX, so a run's list of skipped samples tells these apart (`is_exclusion`).
    """

    PREFIX = "excluded by the protocol: "

    def __init__(self, sample_id: str, reason: str) -> None:
        super().__init__(sample_id, reason if reason.startswith(self.PREFIX) else self.PREFIX + reason)


def is_exclusion(reason: str) -> bool:
    """True for the reason of an ExcludedSample (the protocol's own choice, not a bad input)."""
    return reason.startswith(ExcludedSample.PREFIX)


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

    Both steps run in `minmax_precision` arithmetic, the map cast to it first: G2G casts its map to
    float16 and min-maxes it in float16, Vilouras et al.'s LDM path min-maxes in float32. The result
    is rounded to `precision` (float16: as a map stored in half precision after its min-max is; ties
    at the maximum become possible). Returns float64.
    """
    dtype = DTYPES[policy.minmax_precision]
    v = np.array(values, dtype=dtype)
    if policy.clip_min is not None or policy.clip_max is not None:
        lo_clip = None if policy.clip_min is None else dtype(policy.clip_min)
        hi_clip = None if policy.clip_max is None else dtype(policy.clip_max)
        v = np.clip(v, lo_clip, hi_clip)
    if policy.normalise == "minmax":
        finite = np.isfinite(v)
        lo, hi = v[finite].min(), v[finite].max()
        v = (v - lo) / (hi - lo) if hi > lo else np.where(finite, dtype(0), dtype(np.nan))
    return held_at(v, policy.precision)


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


def protocol_sample(heatmap: Heatmap, sample: Sample, protocol: Protocol, reference: bool = False,
                    model_crop: int | None = None) -> Sample:
    """The sample with the boxes the protocol scores against this heatmap.

    Under `box_coords = "truncate"` every coordinate is first cast to int, as the published scorers
    do before rasterising. Under `drop_boxes = "label_crop"` boxes outside the model's crop then
    leave the ground truth (`bench.evaluation.label_crop`): the crop stated for the run
    (`model_crop`, WHOLE_IMAGE for none), else the one the map records (its geometry, or the
    rectangle of an original-size map's finite values); BenchError when neither tells it.
    ExcludedSample when no box is left. `reference` uses the full-resolution label mask.
    A sample scored against a mask or points is refused where the protocol cannot score it
    (`bench.evaluation.gt_kinds`: geometry defined on boxes only; points without a point metric);
    `box_coords` does not apply to them.
    """
    check_gt_kind(sample, protocol)
    if sample.gt_kind != "boxes":
        return sample
    if protocol.box_coords == "truncate":
        boxes = tuple(truncated_box(b) for b in sample.boxes)
        if boxes != tuple(tuple(b) for b in sample.boxes):
            sample = dataclasses.replace(sample, boxes=boxes)
    if protocol.drop_boxes == "none":
        return sample
    rule = surviving_boxes_mask if reference else surviving_boxes
    seen = stated_crop_geometry(heatmap.values, heatmap.geometry, protocol.model_input, model_crop,
                                f"sample {sample.sample_id}: ")
    kept = rule(sample.boxes, seen, protocol.model_input, model_crop)
    if not kept:
        raise ExcludedSample(sample.sample_id, "no box survives the model's input crop (drop_boxes = label_crop)")
    if len(kept) == len(sample.boxes):
        return sample
    return dataclasses.replace(sample, boxes=tuple(sample.boxes[i] for i in kept))


def _gt(sample: Sample) -> tuple[np.ndarray, Parts, int]:
    """The GT union at the original size, its parts (one per box, or the mask's 8-connected components) and their count."""
    if sample.gt_kind == "points":
        raise SampleError(sample.sample_id, "ground truth given as points only has no region; the point route "
                                            "scores it (score, score_dense)")
    if sample.gt_kind == "mask":
        from scipy import ndimage

        gt = load_mask(sample.mask, sample.height, sample.width, sample.sample_id)
        labels, n = ndimage.label(gt, structure=np.ones((3, 3), dtype=bool))
        return gt, (lambda: [labels == i for i in range(1, n + 1)]), n
    return box_mask(sample.boxes, sample.height, sample.width), _box_parts(sample), len(sample.boxes)


def _checked(heatmap: Heatmap, sample: Sample) -> None:
    check_values(heatmap, sample.sample_id)
    _check_size(heatmap, sample)


def score_dense(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None,
                model_crop: int | None = None) -> dict[str, float]:
    """All metric columns by brute force on the full evaluation grid (the reference every route is tested against)."""
    _checked(heatmap, sample)
    sample = protocol_sample(heatmap, sample, protocol, reference=True, model_crop=model_crop)
    if protocol.segmentation != "none":
        return _segmented(heatmap, sample, protocol, backend)
    if protocol.eval_grid == "centre_crop":
        return _score_crop_seeds(heatmap, sample, protocol, backend, gmm_threshold)
    if sample.gt_kind == "points":
        return _score_points(heatmap, sample, protocol, backend)
    return _score_dense(heatmap, sample, protocol, backend)


def _box_parts(sample: Sample) -> Parts:
    """One full-resolution mask per box, built when a metric asks for them."""
    return lambda: [box_mask([b], sample.height, sample.width) for b in sample.boxes]


def _dense_route(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> DenseRoute:
    """The map upsampled by the protocol's interpolation and the box union, on the full original grid."""
    h = prepare_values(to_original(heatmap, protocol.interpolation), protocol, backend)
    return DenseRoute(h, *_gt(sample))


def _score_dense(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> dict[str, float]:
    return route_scores(_dense_route(heatmap, sample, protocol, backend), protocol)


def _score_points(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> dict[str, float]:
    """A points-only sample on the point route (`bench.evaluation.point_route`): the map on the original grid
    as the dense route makes it, its peak against the GT points within `point_radius`."""
    h = prepare_values(to_original(heatmap, protocol.interpolation), protocol, backend)
    return route_scores(PointRoute(h, sample.points, protocol.point_radius), protocol)


def _binary_mask(native: np.ndarray, where, protocol: Protocol,
                 fit: Callable[[np.ndarray, int | None], float]) -> np.ndarray:
    """The protocol's GMM mask on the crop grid; a failed fit gives an empty or the previous mask.

    The threshold is rounded to `gmm_precision` before `value > threshold`, as the published
    comparison of a half-precision tensor with a Python float does (torch keeps the scalar at the
    tensor's dtype).
    """
    shape = (where.rows.size, where.cols.size)
    precision = protocol.gmm_dtype

    def rounded_fit(values: np.ndarray, seed: int | None) -> float:
        return round_to(fit(values, seed), precision)

    try:
        mask = native_mask(native, protocol.seed if protocol.gmm_seed == "fixed" else None, protocol.gmm_majority,
                           rounded_fit)
    except GmmError:
        return PreviousMask.recall(shape) if protocol.on_gmm_error == "previous" else np.zeros(shape, dtype=bool)
    return PreviousMask.remember(mask_on_grid(mask, where))


def gmm_values(heatmap: Heatmap, protocol: Protocol, normalised: np.ndarray) -> np.ndarray:
    """What the GMM is fitted on: the min-maxed map, or under `gmm_input = "stored"` the map as saved.

    The published codes fit the map they stored (G2G's `+bbm` merged map raw, Dombrowski et al.'s
    un-normalised attention map), while the continuous map of the other metrics is min-maxed
    first. Either is held at the dtype of the published tensor (`stored_precision`, or `gmm_precision`).
    """
    v = normalised if protocol.gmm_input == "normalised" else np.asarray(heatmap.values, dtype=np.float64)
    return held_at(v, protocol.gmm_dtype)


def _score_crop(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None,
                fit: Callable[[np.ndarray, int | None], float]) -> dict[str, float]:
    """Metrics in the centre-crop space: min-max on the native grid, then bilinear to the crop."""
    space = CropSpace.for_image(sample.height, sample.width, protocol.crop_size)
    gt = gt_mask(sample.boxes, space, protocol.gt_antialias)
    if protocol.on_no_box_in_crop == "exclude" and not gt.any():
        raise ExcludedSample(sample.sample_id, "no box lies inside the centre crop (on_no_box_in_crop = exclude)")
    native = apply_policy(heatmap.values, protocol.value_policy(backend))
    where = sampling(heatmap.geometry, native.shape, space)
    h = held_at(sample_bilinear(native, where), protocol.stored_precision)
    if protocol.outside == "zero":
        h = np.where(np.isfinite(h), h, 0.0)
    binary = None
    if protocol.binary_mask == "gmm":
        binary = _binary_mask(gmm_values(heatmap, protocol, native), where, protocol, fit)
    if binary is not None and not binary.any() and protocol.on_empty_mask == "zero":
        return OrderedDict((c, 0.0) for c in protocol.columns)
    parts = lambda: [gt_mask([b], space, protocol.gt_antialias) for b in sample.boxes]  # noqa: E731
    return route_scores(DenseRoute(h, gt, parts, len(sample.boxes), binary, sorted_auc=fit is not gmm_threshold),
                        protocol)


def _score_crop_seeds(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None,
                      fit: Callable[[np.ndarray, int | None], float]) -> dict[str, float]:
    """`_score_crop`, then the seed-dependent metrics refitted with each extra seed (`METRIC@seedS` columns)."""
    scores = _score_crop(heatmap, sample, protocol, backend, fit)
    seeds = extra_seeds(protocol)
    if seeds:
        dependent = seed_dependent(protocol)
        stale = PreviousMask.last  # the mask a failed fit reuses (on_gmm_error = "previous") is the protocol seed's
        for seed in seeds:
            other = _score_crop(heatmap, sample, dataclasses.replace(protocol, seed=seed, gmm_seeds=1), backend, fit)
            scores.update((seed_column(m, seed), other[m]) for m in dependent)
        PreviousMask.last = stale
    return scores


def _segmented(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> dict[str, float]:
    """The route of the protocols that make a mask of the map first (`bench.evaluation.segmentation_route`)."""
    from .segmentation_route import score_segmented

    return score_segmented(heatmap, sample, protocol, backend)


def _require_nearest_original(protocol: Protocol, route: str) -> None:
    if protocol.interpolation != "nearest" or protocol.eval_grid != "original":
        raise ValueError(f"the {route} route is exact only for nearest upsampling on the original grid")


def score_cells(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None,
                model_crop: int | None = None) -> dict[str, float]:
    """All metric columns on native-grid rectangles (nearest upsampling on the original grid only)."""
    _require_nearest_original(protocol, "cell")
    _checked(heatmap, sample)
    return _score_cells(heatmap, protocol_sample(heatmap, sample, protocol, model_crop=model_crop), protocol, backend)


def _cell_route(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> CellRoute:
    """The map's native cells cut along the boxes, with the protocol's value policy applied."""
    if sample.gt_kind != "boxes":
        raise SampleError(sample.sample_id, f"the cell route cuts along boxes; this sample's ground truth is a "
                                            f"{sample.gt_kind}")
    raw = build_cells(heatmap.values, heatmap.geometry, sample.boxes)
    return CellRoute(Cells(prepare_values(raw.values, protocol, backend), raw.weights, raw.inside, raw.first,
                           raw.members))


def _score_cells(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> dict[str, float]:
    return route_scores(_cell_route(heatmap, sample, protocol, backend), protocol)


def score_pixels(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None,
                 model_crop: int | None = None) -> dict[str, float]:
    """All metric columns on the full original grid from sorted values (nearest upsampling on the original grid only)."""
    _require_nearest_original(protocol, "sorted-pixel")
    _checked(heatmap, sample)
    return _score_pixels(heatmap, protocol_sample(heatmap, sample, protocol, model_crop=model_crop), protocol, backend)


def _on_original(heatmap: Heatmap) -> np.ndarray:
    """The map on the original grid (nearest); a map already at the image size is used as it is."""
    g = heatmap.geometry
    if g.covers_whole_image and heatmap.values.shape == (g.image_height, g.image_width):
        return heatmap.values
    return to_original(heatmap, "nearest")


def _pixel_route(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> SortedPixelRoute:
    """The map on the original grid (nearest) and the box union, each GT side sorted."""
    h = prepare_values(_on_original(heatmap), protocol, backend)
    return SortedPixelRoute(h, *_gt(sample))


def _score_pixels(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None) -> dict[str, float]:
    return route_scores(_pixel_route(heatmap, sample, protocol, backend), protocol)


def prefers_pixels(heatmap: Heatmap) -> bool:
    """True when the map has so many native cells per field-of-view pixel that sorting pixels beats cutting cells."""
    g = heatmap.geometry
    return heatmap.values.size >= PIXEL_ROUTE_SHARE * g.height * g.width


def score(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None,
          model_crop: int | None = None) -> dict[str, float]:
    """Score by the fastest exact route for the protocol and the map's grid; `backend` picks a per-backend value
    policy, `model_crop` states the model's crop for `drop_boxes` (see `protocol_sample`)."""
    return score_with_boxes(heatmap, sample, protocol, backend, model_crop)[0]


def score_with_boxes(heatmap: Heatmap, sample: Sample, protocol: Protocol, backend: str | None = None,
                     model_crop: int | None = None) -> tuple[dict[str, float], Sample]:
    """`score`, and the sample with the boxes it was scored against (after `box_coords` and `drop_boxes`)."""
    _checked(heatmap, sample)
    sample = protocol_sample(heatmap, sample, protocol, model_crop=model_crop)
    if protocol.segmentation != "none":
        return _segmented(heatmap, sample, protocol, backend), sample
    if protocol.eval_grid == "centre_crop":
        return _score_crop_seeds(heatmap, sample, protocol, backend, fast_threshold), sample
    if sample.gt_kind == "points":
        return _score_points(heatmap, sample, protocol, backend), sample
    if protocol.interpolation == "nearest":
        if sample.gt_kind == "mask" or prefers_pixels(heatmap):  # a mask is not rectangles: no cell route
            return _score_pixels(heatmap, sample, protocol, backend), sample
        return _score_cells(heatmap, sample, protocol, backend), sample
    return _score_dense(heatmap, sample, protocol, backend), sample


def select_samples(samples: Sequence[Sample], protocol: Protocol) -> list[Sample]:
    """The protocol's sample set: its split, grouped per phrase or per (image, category), then filtered.

    Grouping per category unites the boxes (and points) of every phrase of one finding on one image and
    keeps the first phrase (BenchError for samples with a mask, which are not united), as the (dicom_id, category) unit of Nützel et al. and Dombrowski et al.
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
            if first.mask is not None or s.mask is not None:
                raise BenchError(f"protocol {protocol.name!r} has grouping = 'category', which unites the ground truth "
                                 f"of samples {first.sample_id!r} and {s.sample_id!r} (one image, one category); "
                                 "masks are not united: use grouping = \"phrase\"")
            boxes = first.boxes + tuple(b for b in s.boxes if b not in first.boxes)
            points = first.points + tuple(p for p in s.points if p not in first.points)
            merged[key] = (dataclasses.replace(first, boxes=boxes, points=points), phrases + [s.phrase])
        groups = list(merged.values())
    if protocol.require_category_in_phrase:
        groups = [(s, phrases) for s, phrases in groups
                  if any(s.category.lower() in p.lower() for p in phrases)]
    return [s for s, _ in groups]


__all__ = ["ExcludedSample", "apply_policy", "check_values", "gmm_values", "is_exclusion", "prefers_pixels",
           "prepare_values", "protocol_sample", "score", "score_cells", "score_dense", "score_pixels",
           "score_with_boxes", "select_samples"]
