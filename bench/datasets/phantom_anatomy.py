"""The phantom's anatomy as boxes of the 27 anatomical locations, from the generator's own geometry.

Lung locations are parts of each lung ellipse, cut in its unit-disc coordinates (a across,
positive towards the lateral chest wall; b down, -1 apex, +1 base): zones are bands of b around
the heights where the generator puts a zone's findings, the apex its top, the hilum the medial
middle where it puts perihilar findings, the costophrenic angle its lateral base, the hemidiaphragm its
lowest part. Midline structures are rectangles of the chest frame (u across, v down, both 0..1),
the cardiac silhouette is the heart ellipse. Boxes are tight around the interior points, so the
table built from them (`phantom_lut`) is exact for the generator: no annotation enters it.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..core.samples import Box
from .anatomy_lut import AnatomyLut, box_gaussian, build_lut
from .phantom import _ZONE_B, Case, Ellipse, make_case

#: lung zones: bands of b around the generator's own zone centres (`_ZONE_B`), split half-way between them
_CUTS = ((_ZONE_B["upper"] + _ZONE_B["mid"]) / 2, (_ZONE_B["mid"] + _ZONE_B["lower"]) / 2)
_HALF = _CUTS[0] - _ZONE_B["upper"]
#: lung parts: (a_lateral, b) -> inside, on the unit disc of the lung
_LUNG_PARTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "lung": lambda a, b: np.ones_like(a, dtype=bool),
    "upper_lung_zone": lambda a, b: (b >= _ZONE_B["upper"] - _HALF) & (b < _CUTS[0]),
    "mid_lung_zone": lambda a, b: (b >= _CUTS[0]) & (b < _CUTS[1]),
    "lower_lung_zone": lambda a, b: (b >= _CUTS[1]) & (b < _ZONE_B["lower"] + 0.3),
    "apical_zone": lambda a, b: b < -0.7,
    "hilar_structures": lambda a, b: (a > -0.8) & (a < 0.1) & (np.abs(b + 0.05) < 0.35),  # perihilar findings sit at a = -0.35
    "costophrenic_angle": lambda a, b: (a > 0.25) & (b > 0.55),
    "hemidiaphragm": lambda a, b: b > 0.8,
}
#: midline structures: (u0, v0, u1, v1) of the chest frame
_FRAME_PARTS: dict[str, tuple[float, float, float, float]] = {
    "trachea": (0.475, 0.02, 0.525, 0.30),
    "carina": (0.46, 0.28, 0.54, 0.34),
    "spine": (0.458, 0.02, 0.542, 0.92),
    "aortic_arch": (0.50, 0.22, 0.60, 0.32),
    "mediastinum": (0.40, 0.15, 0.62, 0.75),
    "upper_mediastinum": (0.42, 0.12, 0.58, 0.38),
    "svc": (0.42, 0.22, 0.48, 0.42),
    "abdomen": (0.15, 0.86, 0.85, 1.0),
}
_DISC = 161  # unit-disc samples per axis


def _lateral(side: str) -> int:
    return -1 if side == "right" else 1


def _part_box(lung: Ellipse, side: str, inside: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Box:
    t = np.linspace(-1, 1, _DISC)
    a, b = np.meshgrid(t, t)
    disc = a * a + b * b < 1
    keep = disc & inside(a * _lateral(side), b)
    c, s = math.cos(lung.angle), math.sin(lung.angle)
    px, py = a[keep] * lung.rx, b[keep] * lung.ry
    x, y = lung.cx + px * c - py * s, lung.cy + px * s + py * c
    return float(x.min()), float(y.min()), float(x.max() - x.min()), float(y.max() - y.min())


def _clavicle(case: Case, side: str) -> Box:
    lung, f = case.lungs[side], case.frame
    x0, x1 = lung.x_range()
    top = lung.y_extent()[0]
    return x0, top - 0.06 * f.h, x1 - x0, 0.08 * f.h


def anatomy_boxes(case: Case) -> dict[str, Box]:
    """location key -> (x, y, w, h) box in the case's pixels, for all 27 locations."""
    out: dict[str, Box] = {}
    for side in ("right", "left"):
        lung = case.lungs[side]
        for part, inside in _LUNG_PARTS.items():
            out[f"{side}_{part}"] = _part_box(lung, side, inside)
        out[f"{side}_clavicle"] = _clavicle(case, side)
    f = case.frame
    for key, (u0, v0, u1, v1) in _FRAME_PARTS.items():
        out[key] = (f.x0 + u0 * f.w, f.y0 + v0 * f.h, (u1 - u0) * f.w, (v1 - v0) * f.h)
    h = case.heart
    x0, x1 = h.x_range()
    y0, y1 = h.y_extent()
    out["cardiac_silhouette"] = (x0, y0, x1 - x0, y1 - y0)
    return out


def phantom_lut(n_train: int = 400, seed: int = 0) -> AnatomyLut:
    """The table averaged over the first `n_train` phantom train cases (dataset seed `seed`)."""
    records = []
    for i in range(n_train):
        case = make_case(seed, "train", i)
        for key, (x, y, w, h) in anatomy_boxes(case).items():
            records.append((key, box_gaussian(x, y, x + w, y + h, case.width, case.height)))
    provenance = {"source": "phantom generator anatomy (bench.datasets.phantom_anatomy)", "split": "train",
                  "cases": n_train, "dataset_seed": seed, "statistics": "mu = box centre, sigma = box side / 6, "
                  "averaged per location (Vilouras et al. 2025, eq. 6)"}
    return build_lut(records, provenance=provenance)


__all__ = ["anatomy_boxes", "phantom_lut"]
