"""CheXlocalize's map-to-mask rules and metrics (Saporta et al., Nature Machine Intelligence 2022).

What the published evaluation (rajpurkarlab/cheXlocalize: `heatmap_to_segmentation.py`, `eval.py`)
does, step by step, and how this module does the same with NumPy and SciPy (no OpenCV):

1. The map is resized to the original image (bilinear, half-pixel centres, no antialias:
   `F.interpolate(..., mode="bilinear", align_corners=False)`) and min-max normalised over the whole
   resized map. The protocol's grid and value policy do both (`interpolation = "bilinear"`,
   `normalise = "minmax"`); the published code does it in float32, the harness in float64.
2. Otsu rule (the default there): the normalised map is cast to 8 bits by truncation
   (`np.uint8(255 * m)`), Otsu's threshold is found on its 256-bin histogram (`cv2.threshold` with
   `THRESH_OTSU`: the first level that maximises the between-class variance, classes `<= t` and
   `> t`), and the pixels above it are the foreground (`to_uint8`, `otsu_threshold`).
   Then every contour of the foreground (`cv2.findContours`, `RETR_TREE`, `CHAIN_APPROX_SIMPLE`)
   with more than one point is drawn as a filled polygon with its outline (PIL `ImageDraw.polygon`,
   `fill=1, outline=1`). That fills every hole of a component (its outer contour encloses them)
   and drops every component of a single pixel (its contour has one point). `fill_contours` does
   exactly this: SciPy's `binary_fill_holes` (background 4-connected, as OpenCV traces holes), then
   the 8-connected components of one pixel removed (OpenCV traces foreground 8-connected).
3. Threshold rule (`--threshold_path`): `m > t` on the normalised map with a per-pathology `t`
   tuned on the validation split (`bench.evaluation.chexlocalize_tuning`), no contour filling.
4. IoU (`calculate_iou` with `true_pos_only=True`, the default): |P and G| / |P or G| when both
   the predicted mask P and the GT mask G are non-empty, else undefined (NaN: left out of means).
5. Hit rate (`get_hitrates`): 1 when the GT holds the first maximum (row-major, `np.argmax`) of the
   resized map, 0 when not, undefined when the GT is empty. For the human benchmark
   (`get_hb_hitrates`): 1 when any of the reader's points `(x, y)` lies in the GT at
   `[int(y), int(x)]`, 0 when none does or the reader gave no point, undefined when the GT is empty.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

#: OpenCV's FLT_EPSILON guard of its Otsu loop: levels leaving a class (almost) empty are skipped
_FLT_EPSILON = float(np.finfo(np.float32).eps)
#: the 8-neighbourhood: OpenCV follows the foreground's outer borders 8-connected
_EIGHT = np.ones((3, 3), dtype=bool)


def to_uint8(normalised: np.ndarray) -> np.ndarray:
    """A [0, 1] map as 8-bit levels by truncation, `np.uint8(255 * m)` as published (1.0 -> 255)."""
    return np.floor(255.0 * np.clip(np.nan_to_num(normalised, nan=0.0), 0.0, 1.0)).astype(np.uint8)


def otsu_threshold(levels: np.ndarray) -> int:
    """Otsu's threshold of an 8-bit image, as OpenCV's `THRESH_OTSU` computes it (`getThreshVal_Otsu_8u`).

    For every level t the two classes are `<= t` and `> t`; levels where either class holds less
    than FLT_EPSILON of the pixels are skipped; the first t with the largest between-class variance
    q1 q2 (mu1 - mu2)^2 wins, and 0 when no level has a positive variance (a constant image). The
    256-step loop keeps OpenCV's running update in double precision, operation for operation (a
    skipped leading level is left out of mu1 there too).
    """
    hist = np.bincount(np.asarray(levels, dtype=np.uint8).ravel(), minlength=256).tolist()
    scale = 1.0 / sum(hist)
    mu = 0.0
    for i, count in enumerate(hist):
        mu += i * float(count)
    mu *= scale
    mu1 = q1 = 0.0
    max_sigma, max_val = 0.0, 0
    for i, count in enumerate(hist):
        p_i = count * scale
        mu1 *= q1
        q1 += p_i
        q2 = 1.0 - q1
        if min(q1, q2) < _FLT_EPSILON or max(q1, q2) > 1.0 - _FLT_EPSILON:
            continue
        mu1 = (mu1 + i * p_i) / q1
        mu2 = (mu - q1 * mu1) / q2
        sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2)
        if sigma > max_sigma:
            max_sigma, max_val = sigma, i
    return max_val


def fill_contours(binary: np.ndarray) -> np.ndarray:
    """Every foreground component filled, holes included; components of a single pixel dropped.

    What drawing each OpenCV contour with more than one point as a filled PIL polygon gives.
    """
    filled = ndimage.binary_fill_holes(np.asarray(binary, dtype=bool))
    labels, n = ndimage.label(filled, structure=_EIGHT)
    if n == 0:
        return filled
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    single = sizes == 1
    single[0] = False
    return filled & ~single[labels]


def otsu_segmentation(normalised: np.ndarray) -> np.ndarray:
    """CheXlocalize's default mask of a min-max normalised map: 8-bit levels above Otsu's threshold, filled."""
    levels = to_uint8(normalised)
    if levels.max() == 0:  # cv2.threshold's maxval is the image's maximum: an all-zero image stays empty
        return np.zeros(levels.shape, dtype=bool)
    return fill_contours(levels > otsu_threshold(levels))


def threshold_segmentation(normalised: np.ndarray, threshold: float) -> np.ndarray:
    """CheXlocalize's tuned-threshold mask: `m > t` on the normalised map (NaN is never above)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(normalised) > threshold


def seg_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two masks when both are non-empty, else NaN (CheXlocalize's `true_pos_only` IoU)."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if not pred.any() or not gt.any():
        return float("nan")
    return float(np.logical_and(pred, gt).sum() / np.logical_or(pred, gt).sum())


def argmax_hit(values: np.ndarray, gt: np.ndarray) -> float:
    """1.0 when the GT holds the map's first maximum (row-major; NaN never wins), 0.0 when not, NaN for an empty GT."""
    gt = np.asarray(gt, dtype=bool)
    if not gt.any():
        return float("nan")
    v = np.asarray(values, dtype=np.float64)
    flat = np.where(np.isnan(v), -np.inf, v).ravel()
    return float(gt.ravel()[int(np.argmax(flat))])


def points_hit(points: Sequence[Sequence[float]], gt: np.ndarray) -> float:
    """1.0 when any (x, y) point lies in the GT at [int(y), int(x)], 0.0 when none does (or none is given),
    NaN for an empty GT: the human benchmark's hit."""
    gt = np.asarray(gt, dtype=bool)
    if not gt.any():
        return float("nan")
    h, w = gt.shape
    for x, y in points:
        r, c = int(y), int(x)
        if 0 <= r < h and 0 <= c < w and gt[r, c]:
            return 1.0
    return 0.0


__all__ = ["argmax_hit", "fill_contours", "otsu_segmentation", "otsu_threshold", "points_hit", "seg_iou",
           "threshold_segmentation", "to_uint8"]
