"""Which GT boxes survive the model's input crop, by Vilouras et al.'s label-mask rule.

Their loader paints box v (counting from 1, later boxes over earlier ones) with the value 5v into
an int64 mask at the original size, pushes it through the model's input transform (torchvision
bilinear `Resize(resize)` of the short side without antialias, rounded back to int64, then a
`crop` x `crop` centre crop) and keeps box v only if the value 5v still occurs. A dropped box
leaves the ground truth of every metric; a sample left without boxes is not scored.

The crop is the one the heatmap's geometry records (`short_side_crop(H, W, resize, crop)`): 512
for their LDM (MONAI centre crop: start = n // 2 - crop // 2) and 480 / 448 for BioViL / BioViL-T
(torchvision `CenterCrop`: start = round((n - crop) / 2)). A map over the whole image is treated
as resize only, without a crop. For any other field of view a box is kept if it overlaps it.

`surviving_boxes_mask` builds that label mask at full resolution (the reference);
`surviving_boxes` evaluates the same bilinear resize only at the output pixels next to each box,
from the crop geometry and the boxes, and hands the rare pixel whose rounding it cannot decide
(an interpolated value within 1e-4 of a half) to the reference.

The crop is a fact of the run, not of the map: a scorer states it (`crop`, from `--model-crop` or
the method's spec; WHOLE_IMAGE for a model that sees the whole image resized) and every sample's
boxes are dropped by that crop, whatever the map holds. Without a stated crop it is read from the
map: its geometry, or for a map given at the original size with NaN outside its field of view
(`Heatmap.from_original`, the published code's own format) the rectangle of its finite values
(`field_of_view`). An original-size map finite everywhere tells nothing (a method that fills its
margins, or one that does not crop): `stated_crop_geometry` refuses to guess.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.errors import BenchError
from ..core.geometry import Box, Geometry, box_ranges
from .crop_grid import bilinear_axis, centre_offset, model_crop, resized_size

#: a stated crop meaning "the model sees the whole image, resized only"
WHOLE_IMAGE = 0
#: "the maps come from the method that made them: the crop is the one their geometry records" (a
#: whole-image map then means the whole image)
FROM_MAP = -1


def _crop_start(length: int, crop: int, resize: int) -> int:
    if crop == resize:
        return length // 2 - crop // 2
    return centre_offset(length, crop)


def _resized_labels(boxes: Sequence[Box], height: int, width: int, resize: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    labels = np.zeros((height, width), dtype=np.float32)
    for v, box in enumerate(boxes, 1):
        r0, r1, c0, c1 = box_ranges(box, height, width)
        labels[r0:r1, c0:c1] = 5 * v
    rh, rw = resized_size(height, width, resize)
    out = F.interpolate(torch.from_numpy(labels)[None, None], size=(rh, rw), mode="bilinear",
                        align_corners=False, antialias=False)
    return torch.round(out[0, 0]).to(torch.int64).numpy()


def field_of_view(values: np.ndarray, geometry: Geometry) -> Geometry:
    """The geometry, or for a whole-image map at the image size the bounding rectangle of its finite values."""
    g = geometry
    if not g.covers_whole_image or values.shape != (g.image_height, g.image_width):
        return g
    finite = np.isfinite(values)
    rows = np.flatnonzero(finite.any(axis=1))
    cols = np.flatnonzero(finite.any(axis=0))
    if rows.size == 0 or (rows.size == g.image_height and cols.size == g.image_width):
        return g
    return Geometry(g.image_height, g.image_width, int(rows[0]), int(cols[0]), int(rows[-1] - rows[0] + 1),
                    int(cols[-1] - cols[0] + 1), "finite region of an original-size map")


def crop_geometry(height: int, width: int, resize: int, crop: int) -> Geometry:
    """The field of view of a model that resizes the short side to `resize` and crops `crop` (or sees it whole)."""
    if crop == WHOLE_IMAGE:
        return Geometry.whole(height, width)
    return Geometry.short_side_crop(height, width, resize, crop)


def stated_crop_geometry(values: np.ndarray, geometry: Geometry, resize: int, crop: int | None,
                         what: str = "") -> Geometry:
    """The model's field of view the label-mask rule drops boxes by.

    A stated `crop` wins, but must agree with a crop the map itself records; without one the map's
    (finite) field of view is used, and a BenchError asks for the crop when the map is at the
    original size and finite everywhere.
    """
    g = field_of_view(values, geometry)
    at_original = g.covers_whole_image and values.shape == (g.image_height, g.image_width)
    if crop == FROM_MAP:
        return g
    if crop is None:
        if at_original:
            raise BenchError(f"{what}a map at the original image size that is finite everywhere does not show the "
                             "model's crop, which decides the boxes vilouras2024-style protocols drop: state it "
                             f"(--model-crop SIZE or model_crop=SIZE, the crop at the protocol's model_input {resize}; "
                             f"{WHOLE_IMAGE}: the model sees the whole image)")
        return g
    if crop < 0 or crop > resize:
        raise BenchError(f"model crop {crop} must be between 0 (whole image) and model_input {resize}")
    stated = crop_geometry(g.image_height, g.image_width, resize, crop)
    if not g.covers_whole_image and (g.top, g.left, g.height, g.width) != (stated.top, stated.left, stated.height,
                                                                         stated.width):
        raise BenchError(f"{what}the map covers {g.width}x{g.height} pixels at ({g.left}, {g.top}), not the "
                         f"{'whole image' if crop == WHOLE_IMAGE else f'{crop} crop'} stated for the model")
    return stated


def _kept_overlapping(boxes: Sequence[Box], g: Geometry) -> list[int]:
    kept = []
    for i, box in enumerate(boxes):
        r0, r1, c0, c1 = box_ranges(box, g.image_height, g.image_width)
        if max(r0, g.top) < min(r1, g.top + g.height) and max(c0, g.left) < min(c1, g.left + g.width):
            kept.append(i)
    return kept


def _crop_of(g: Geometry, resize: int, crop: int | None) -> int | None:
    """The crop to cut after the resize (None: resize only); -1 when the geometry is no model crop."""
    if crop is not None and crop != FROM_MAP:
        return None if crop == WHOLE_IMAGE else crop
    found = model_crop(g, resize)
    if found is None and not g.covers_whole_image:
        return -1
    return found


def surviving_boxes_mask(boxes: Sequence[Box], geometry: Geometry, resize: int = 512,
                         crop: int | None = None) -> list[int]:
    """Indices of the boxes kept under the label-mask rule, from the full-resolution label mask (reference).

    `crop` is the model's crop (WHOLE_IMAGE: none); None or FROM_MAP reads it from `geometry`.
    """
    g = geometry
    crop = _crop_of(g, resize, crop)
    if crop == -1:
        return _kept_overlapping(boxes, g)
    labels = _resized_labels(boxes, g.image_height, g.image_width, resize)
    if crop is not None:
        top = _crop_start(labels.shape[0], crop, resize)
        left = _crop_start(labels.shape[1], crop, resize)
        labels = labels[top:top + crop, left:left + crop]
    present = set(np.unique(labels).tolist())
    return [v - 1 for v in range(1, len(boxes) + 1) if 5 * v in present]


class _Undecided(Exception):
    pass


def _labels_at(ranges: list[tuple[int, int, int, int]], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Label values 5v (later boxes over earlier ones) at the source pixels rows x cols."""
    out = np.zeros((rows.size, cols.size))
    for v, (r0, r1, c0, c1) in enumerate(ranges, 1):
        rin = (rows >= r0) & (rows < r1)
        cin = (cols >= c0) & (cols < c1)
        out[np.ix_(rin, cin)] = 5 * v
    return out


def _values_near(u: int, ranges: list[tuple[int, int, int, int]], row_axis, col_axis,
                 out_rows: np.ndarray, out_cols: np.ndarray) -> np.ndarray:
    """Interpolated labels at the crop's output pixels whose source neighbourhood touches box u."""
    r0, r1, c0, c1 = ranges[u]
    ri0, ri1, rw0, rw1 = (a[out_rows] for a in row_axis)
    ci0, ci1, cw0, cw1 = (a[out_cols] for a in col_axis)
    near_r = ((ri0 >= r0) & (ri0 < r1)) | ((ri1 >= r0) & (ri1 < r1))
    near_c = ((ci0 >= c0) & (ci0 < c1)) | ((ci1 >= c0) & (ci1 < c1))
    if not near_r.any() or not near_c.any():
        return np.zeros(0)
    ri0, ri1, rw0, rw1 = ri0[near_r], ri1[near_r], rw0[near_r], rw1[near_r]
    ci0, ci1, cw0, cw1 = ci0[near_c], ci1[near_c], cw0[near_c], cw1[near_c]
    top = _labels_at(ranges, ri0, ci0) * cw0 + _labels_at(ranges, ri0, ci1) * cw1
    bottom = _labels_at(ranges, ri1, ci0) * cw0 + _labels_at(ranges, ri1, ci1) * cw1
    return (top * rw0[:, None] + bottom * rw1[:, None]).ravel()


def _present_labels(values: np.ndarray, n_boxes: int) -> set[int]:
    """Box numbers v whose value 5v occurs after rounding; _Undecided when a near-half value could decide one."""
    present = {int(x) // 5 for x in np.unique(np.round(values)) if x > 0 and x % 5 == 0 and x <= 5 * n_boxes}
    low = np.floor(values)
    doubtful = np.abs(values - low - 0.5) < 1e-4
    for candidate in np.unique(np.concatenate([low[doubtful], low[doubtful] + 1])):
        if candidate > 0 and candidate % 5 == 0 and candidate <= 5 * n_boxes and int(candidate) // 5 not in present:
            raise _Undecided
    return present


def surviving_boxes(boxes: Sequence[Box], geometry: Geometry, resize: int = 512,
                    crop: int | None = None) -> list[int]:
    """Indices of the boxes kept under the label-mask rule for a map with this geometry.

    Equal to `surviving_boxes_mask`. Every non-zero output pixel has a box pixel among its four
    bilinear sources, so the resized label mask is evaluated only next to the boxes (where
    interpolation between two labels can also produce a third box's value).
    """
    g = geometry
    stated = crop
    crop = _crop_of(g, resize, crop)
    if crop == -1:
        return _kept_overlapping(boxes, g)
    ranges = [box_ranges(b, g.image_height, g.image_width) for b in boxes]
    rh, rw = resized_size(g.image_height, g.image_width, resize)
    if crop is not None:
        top, left = _crop_start(rh, crop, resize), _crop_start(rw, crop, resize)
        out_rows = np.arange(top, min(top + crop, rh))
        out_cols = np.arange(left, min(left + crop, rw))
    else:
        out_rows, out_cols = np.arange(rh), np.arange(rw)
    row_axis, col_axis = bilinear_axis(rh, g.image_height), bilinear_axis(rw, g.image_width)
    near = [_values_near(u, ranges, row_axis, col_axis, out_rows, out_cols) for u in range(len(ranges))]
    try:
        present = _present_labels(np.concatenate(near) if near else np.zeros(0), len(ranges))
        return [v - 1 for v in range(1, len(boxes) + 1) if v in present]
    except _Undecided:
        return surviving_boxes_mask(boxes, geometry, resize, stated)


__all__ = ["FROM_MAP", "WHOLE_IMAGE", "crop_geometry", "field_of_view", "stated_crop_geometry", "surviving_boxes",
           "surviving_boxes_mask"]
