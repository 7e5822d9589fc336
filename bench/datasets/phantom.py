"""`phantom`: procedural chest-like radiographs with lesions of the 8 MS-CXR categories.

Everything is a pure function of (seed, split, index): the same options give identical samples
and identical pixels. Listing samples renders nothing (boxes come from the lesion geometry in
closed form); an image is drawn on first use and cached as an 8-bit PNG. A lesion changes pixels
only inside its boxes, so the boxes are exact and tight. Phrases follow the radiological
convention: the patient's right is the image's left, so "right lower lobe consolidation" has its
box in the left half of the image.
"""

from __future__ import annotations

import functools
import io
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import numpy as np

from ..core import atomic
from ..core.cache import cache_root
from ..core.errors import BenchError
from ..core.ground_truth import MaskSource, rle_text
from ..core.params import Param
from ..core.samples import Box, Sample
from .base import Dataset
from .images import check_images

CATEGORIES = ("atelectasis", "cardiomegaly", "consolidation", "edema", "lung opacity", "pleural effusion",
              "pneumonia", "pneumothorax")
RENDER_VERSION = 2
MIMIC_SIZE = (2544, 3056)  # (width, height) of a MIMIC-CXR radiograph
_SPLIT_CODE = {"train": 1, "test": 2}

SIZE_WORDS: Mapping[str, tuple[str, str, str]] = {
    "cardiomegaly": ("mild", "moderate", "severe"),
    "edema": ("mild", "moderate", "severe"),
}
_DEFAULT_SIZES = ("small", "moderate", "large")
_SCALE = {"small": 0.75, "mild": 0.8, "moderate": 1.0, "large": 1.3, "severe": 1.25}
#: where on the lung's vertical axis (-1 apex, +1 base) each zone lies
_ZONE_B = {"upper": -0.5, "mid": -0.02, "lower": 0.42}

_TEMPLATES: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("atelectasis", "one"): ("{side} basilar atelectasis", "linear atelectasis at the {side} lung base",
                             "{size} {side} lower lobe atelectasis"),
    ("atelectasis", "both"): ("bibasilar atelectasis", "{size} bibasilar linear atelectasis"),
    ("cardiomegaly", "none"): ("cardiomegaly", "{size} cardiomegaly", "enlarged cardiac silhouette",
                               "{size} enlargement of the cardiac silhouette"),
    ("consolidation", "one"): ("{region} consolidation", "consolidation in the {region}",
                               "{size} area of consolidation in the {region}"),
    ("edema", "both"): ("bilateral perihilar edema", "{size} pulmonary edema",
                        "{size} perihilar haziness consistent with edema"),
    ("lung opacity", "one"): ("{size} rounded opacity in the {side} {zone} lung", "{side} {zone} lung opacity",
                              "opacity in the {region}"),
    ("pleural effusion", "one"): ("{size} {side} pleural effusion",
                                  "{side} pleural effusion with blunting of the costophrenic angle",
                                  "{size} {side} effusion"),
    ("pneumonia", "one"): ("{region} pneumonia", "patchy opacity in the {region} consistent with pneumonia",
                           "{side} {zone} lung pneumonia"),
    ("pneumonia", "both"): ("bilateral {zone} lung pneumonia", "multifocal pneumonia in both {zone} lungs"),
    ("pneumothorax", "apical"): ("{size} {side} apical pneumothorax", "{side} apical pneumothorax",
                                 "{size} pneumothorax at the {side} apex"),
    ("pneumothorax", "lateral"): ("{size} {side} lateral pneumothorax",
                                  "{side} pneumothorax along the lateral chest wall"),
}


def sizes_for(category: str) -> tuple[str, str, str]:
    """The size words phrases of `category` use, smallest first."""
    return SIZE_WORDS.get(category, _DEFAULT_SIZES)


def phrase_for(category: str, side: str, zone: str, size: str = "moderate", variant: int = 0) -> str:
    """The phrase of a finding, in the radiological convention (side is the patient's side).

    `side` is "right", "left", "bilateral" or "none" (cardiomegaly); `zone` is "upper", "mid" or
    "lower" for lung findings, "apical" or "lateral" for pneumothorax, and otherwise the zone the
    dataset records. `variant` picks one of the category's templates (taken modulo their number).
    """
    if category not in CATEGORIES:
        raise ValueError(f"unknown phantom category {category!r}")
    if side not in ("right", "left", "bilateral", "none"):
        raise ValueError(f"side must be right, left, bilateral or none, not {side!r}")
    kind = {"bilateral": "both", "none": "none"}.get(side, zone if category == "pneumothorax" else "one")
    templates = _TEMPLATES.get((category, kind))
    if templates is None:
        raise ValueError(f"no {category} phrase for side={side!r}, zone={zone!r}")
    region = {"upper": f"{side} upper lobe", "mid": f"{side} mid lung", "lower": f"{side} lower lobe"}.get(zone, "")
    return templates[variant % len(templates)].format(side=side, zone=zone, size=size, region=region)


def flip_side(phrase: str) -> str:
    """Swap the words left and right, keeping their capitalisation (the mirrored finding)."""
    swap = {"left": "right", "right": "left"}

    def repl(m: re.Match) -> str:
        word = m.group(0)
        out = swap[word.lower()]
        return out.upper() if word.isupper() else out.capitalize() if word[0].isupper() else out

    return re.sub(r"\b(left|right)\b", repl, phrase, flags=re.IGNORECASE)


# ---- geometry: regions with closed-form pixel boxes ---------------------------------------------

_EMPTY = (math.inf, -math.inf)


def _clean(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    empty = ~(lo < hi)
    return np.where(empty, np.inf, lo), np.where(empty, -np.inf, hi)


@dataclass(frozen=True)
class Ellipse:
    """A rotated ellipse in pixel coordinates; `angle` turns its x axis towards +y (down)."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0

    def d(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Normalised squared radius: < 1 inside."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        a = (dx * c + dy * s) / self.rx
        b = (dy * c - dx * s) / self.ry
        return a * a + b * b

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.d(x, y) < 1

    def x_range(self) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        hx = math.hypot(self.rx * c, self.ry * s)
        return self.cx - hx, self.cx + hx

    def y_extent(self) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        hy = math.hypot(self.rx * s, self.ry * c)
        return self.cy - hy, self.cy + hy

    def span(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Open y-interval of the interior on each column x (inf, -inf where empty)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        irx, iry = 1.0 / self.rx ** 2, 1.0 / self.ry ** 2
        dx = x - self.cx
        qa = s * s * irx + c * c * iry
        qb = 2.0 * dx * c * s * (irx - iry)
        qc = dx * dx * (c * c * irx + s * s * iry) - 1.0
        disc = qb * qb - 4.0 * qa * qc
        root = np.sqrt(np.maximum(disc, 0.0))
        lo = self.cy + (-qb - root) / (2.0 * qa)
        hi = self.cy + (-qb + root) / (2.0 * qa)
        return _clean(np.where(disc > 0, lo, np.inf), np.where(disc > 0, hi, -np.inf))

    def point(self, a: float, b: float) -> tuple[float, float]:
        """Pixel position of unit-disc coordinates (a along x, b along y) of this ellipse."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        px, py = a * self.rx, b * self.ry
        return self.cx + px * c - py * s, self.cy + px * s + py * c


@dataclass(frozen=True)
class Meniscus:
    """The part of a lung below a meniscus curve that rises towards the lateral chest wall."""

    lung: Ellipse
    level: float
    rise: float
    lateral: int  # -1: lateral is towards the image's left, +1: right

    def top(self, x: np.ndarray) -> np.ndarray:
        t = np.clip(0.5 + 0.5 * self.lateral * (x - self.lung.cx) / self.lung.rx, 0.0, 1.0)
        return self.level - self.rise * t * t

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.lung.inside(x, y) & (y > self.top(x))

    def x_range(self) -> tuple[float, float]:
        return self.lung.x_range()

    def span(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.lung.span(x)
        return _clean(np.maximum(lo, self.top(x)), hi)


@dataclass(frozen=True)
class Crescent:
    """The air between a lung's outline and its collapsed edge, above row `cut`."""

    lung: Ellipse
    collapsed: Ellipse
    cut: float

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.lung.inside(x, y) & ~self.collapsed.inside(x, y) & (y < self.cut)

    def x_range(self) -> tuple[float, float]:
        return self.lung.x_range()

    def span(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        l0, l1 = self.lung.span(x)
        c0, c1 = self.collapsed.span(x)
        has_c = np.isfinite(c0)
        up_lo, up_hi = _clean(l0, np.minimum(np.where(has_c, np.minimum(l1, c0), l1), self.cut))
        down_lo, down_hi = _clean(np.where(has_c, np.maximum(l0, c1), np.inf), np.minimum(l1, self.cut))
        return np.minimum(up_lo, down_lo), np.maximum(up_hi, down_hi)


Region = Union[Ellipse, Meniscus, Crescent]


def _centres(lo: float, hi: float, size: int) -> tuple[int, int]:
    """First and last pixel index whose centre k + 0.5 lies in the open interval (lo, hi), clipped."""
    return max(0, math.floor(lo - 0.5) + 1), min(size - 1, math.ceil(hi - 0.5) - 1)


def pixel_box(regions: Sequence[Region], width: int, height: int) -> Box:
    """Tight (x, y, w, h) box of the pixels whose centres lie inside any of the regions.

    Ellipses use their closed-form extent (at most one pixel looser than the pixel-exact box);
    other regions are scanned column by column. Drawing is confined to the box either way.
    """
    xs0, ys0, xs1, ys1 = [], [], [], []
    for region in regions:
        j0, j1 = _centres(*region.x_range(), width)
        if isinstance(region, Ellipse):
            i0, i1 = _centres(*region.y_extent(), height)
            if j0 <= j1 and i0 <= i1:
                xs0.append(j0), xs1.append(j1), ys0.append(i0), ys1.append(i1)
            continue
        if j1 < j0:
            continue
        cols = np.arange(j0, j1 + 1)
        lo, hi = region.span(cols + 0.5)
        ok = np.isfinite(lo) & np.isfinite(hi)
        i0 = np.full(cols.shape, height, dtype=np.int64)
        i1 = np.full(cols.shape, -1, dtype=np.int64)
        i0[ok] = np.maximum(np.floor(lo[ok] - 0.5).astype(np.int64) + 1, 0)
        i1[ok] = np.minimum(np.ceil(hi[ok] - 0.5).astype(np.int64) - 1, height - 1)
        ok &= i0 <= i1
        if ok.any():
            xs0.append(int(cols[ok].min()))
            xs1.append(int(cols[ok].max()))
            ys0.append(int(i0[ok].min()))
            ys1.append(int(i1[ok].max()))
    if not xs0:
        raise ValueError("phantom lesion region covers no pixel")
    x, y = min(xs0), min(ys0)
    return (float(x), float(y), float(max(xs1) - x + 1), float(max(ys1) - y + 1))


# ---- one case: anatomy, finding, lesion geometry ------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """The chest's bounding frame in pixels; anatomy is laid out in its unit coordinates."""

    x0: float
    y0: float
    w: float
    h: float

    def ellipse(self, u: float, v: float, ru: float, rv: float, angle: float = 0.0) -> Ellipse:
        return Ellipse(self.x0 + u * self.w, self.y0 + v * self.h, ru * self.w, rv * self.h, angle)


@dataclass(frozen=True)
class Case:
    """Everything about one phantom sample that listing needs; rendering adds only pixels."""

    split: str
    index: int
    width: int
    height: int
    frame: Frame
    lungs: Mapping[str, Ellipse]  # keyed by the patient's side
    heart: Ellipse
    category: str
    side: str
    zone: str
    size: str
    variant: int
    phrase: str
    components: tuple[tuple[Region, ...], ...]  # one box per component
    boxes: tuple[Box, ...]
    lesion_seed: int


def _image_size(rng: np.random.Generator, size: str) -> tuple[int, int]:
    """(width, height): squares, portraits and landscapes between 384 and 1024 px, or MIMIC's size.

    The same draws are made for every size, so the size option changes no other fact of a case.
    """
    pick = rng.random()
    kind = 0 if pick < 0.4 else 1 if pick < 0.75 else 2
    long_side = int(rng.integers(384 if kind == 0 else 512, 1025))
    short_side = max(384, int(round(long_side * rng.uniform(0.72, 0.92))))
    if size == "mimic":
        return MIMIC_SIZE
    return [(long_side, long_side), (short_side, long_side), (long_side, short_side)][kind]


def _anatomy(rng: np.random.Generator, width: int, height: int) -> tuple[Frame, dict[str, Ellipse], Ellipse]:
    aspect = rng.uniform(1.1, 1.2)
    fw = min(width, height / aspect) * rng.uniform(0.86, 0.95)
    fh = fw * aspect
    x0 = (width - fw) / 2 + rng.uniform(-0.015, 0.015) * fw
    y0 = (height - fh) / 2 + rng.uniform(-0.02, 0.02) * fh
    frame = Frame(x0, y0, fw, fh)
    j = lambda: rng.uniform(-0.01, 0.01)  # noqa: E731
    lungs = {
        "right": frame.ellipse(0.30 + j(), 0.47 + j(), 0.155 + j() / 2, 0.30 + j(), 0.05),
        "left": frame.ellipse(0.70 + j(), 0.47 + j(), 0.145 + j() / 2, 0.29 + j(), -0.05),
    }
    heart = frame.ellipse(0.565 + j(), 0.615 + j(), 0.15, 0.11, 0.35)
    return frame, lungs, heart


def _lateral(side: str) -> int:
    """Direction of the lateral chest wall on the image: the patient's right lung is on the left."""
    return -1 if side == "right" else 1


def _blob(lung: Ellipse, a: float, b: float, radius: float) -> Ellipse:
    cx, cy = lung.point(a, b)
    return Ellipse(cx, cy, radius, radius * 0.9)


def _lesion(category: str, side: str, zone: str, size: str, frame: Frame, lungs: Mapping[str, Ellipse],
            heart: Ellipse, rng: np.random.Generator) -> tuple[tuple[Region, ...], ...]:
    """The lesion's regions, grouped into components (one box each)."""
    fw, scale = frame.w, _SCALE[size]
    sides = ("right", "left") if side == "bilateral" else (side,)
    if category == "cardiomegaly":
        grow = 1.0 + 0.3 * scale * rng.uniform(0.9, 1.1)
        cx, cy = heart.cx - 0.015 * fw, heart.cy - 0.01 * frame.h
        return ((Ellipse(cx, cy, heart.rx * grow, heart.ry * (0.5 + 0.5 * grow), heart.angle),),)
    out = []
    for s in sides:
        lung, lat = lungs[s], _lateral(s)
        if category == "edema":
            comp = (Ellipse(*lung.point(-lat * 0.35, -0.05), 0.075 * scale * fw, 0.13 * scale * frame.h),)
        elif category == "atelectasis":
            cx, cy = lung.point(lat * rng.uniform(-0.2, 0.25), rng.uniform(0.5, 0.62))
            thick = max(2.5, 0.014 * fw * scale)
            comp = (Ellipse(cx, cy, 0.085 * fw * scale, thick, rng.uniform(-0.25, 0.25)),)
        elif category == "pleural effusion":
            bottom = lung.y_extent()[1]
            depth = 2 * lung.ry * {"small": 0.14, "moderate": 0.22, "large": 0.32}[size]
            comp = (Meniscus(lung, bottom - depth, 0.1 * lung.ry * rng.uniform(0.8, 1.2), lat),)
        elif category == "pneumothorax":
            gap = rng.uniform(0.9, 1.1) * scale
            if zone == "apical":
                collapsed = Ellipse(lung.cx - lat * 0.04 * lung.rx, lung.cy + 0.16 * gap * lung.ry,
                                    lung.rx * (1 - 0.06 * gap), lung.ry * (1 - 0.04 * gap), lung.angle)
                cut = lung.cy - 0.15 * lung.ry
            else:
                collapsed = Ellipse(lung.cx - lat * 0.3 * gap * lung.rx, lung.cy + 0.06 * lung.ry,
                                    lung.rx * (1 - 0.08 * gap), lung.ry * 0.96, lung.angle)
                cut = lung.cy + 0.45 * lung.ry
            comp = (Crescent(lung, collapsed, cut),)
        elif category == "lung opacity":
            r = rng.uniform(0.035, 0.05) * scale * fw
            comp = (Ellipse(*lung.point(lat * rng.uniform(-0.25, 0.35), _ZONE_B[zone] + rng.uniform(-0.1, 0.1)),
                            r, r),)
        elif category == "consolidation":
            a0, b0 = lat * rng.uniform(-0.15, 0.3), _ZONE_B[zone] + rng.uniform(-0.08, 0.08)
            comp = tuple(_blob(lung, a0 + rng.uniform(-0.18, 0.18), b0 + rng.uniform(-0.08, 0.08),
                               rng.uniform(0.035, 0.055) * scale * fw) for _ in range(int(rng.integers(3, 5))))
        elif category == "pneumonia":
            a0, b0 = lat * rng.uniform(-0.15, 0.3), _ZONE_B[zone] + rng.uniform(-0.08, 0.08)
            comp = tuple(_blob(lung, a0 + rng.uniform(-0.3, 0.3), b0 + rng.uniform(-0.12, 0.12),
                               rng.uniform(0.018, 0.032) * scale * fw) for _ in range(int(rng.integers(4, 7))))
        else:
            raise ValueError(f"unknown phantom category {category!r}")
        out.append(comp)
    return tuple(out)


def _facts(category: str, rng: np.random.Generator) -> tuple[str, str, str, int]:
    """(side, zone, size word, template variant) of a finding."""
    side = ("right", "left")[int(rng.integers(2))]
    zone = ("upper", "mid", "lower")[int(rng.integers(3))]
    size = sizes_for(category)[int(rng.integers(3))]
    variant = int(rng.integers(12))
    bilateral = rng.random()
    if category == "cardiomegaly":
        return "none", "heart", size, variant
    if category == "edema":
        return "bilateral", "perihilar", size, variant
    if category in ("atelectasis", "pleural effusion"):
        both = category == "atelectasis" and bilateral < 0.2
        return ("bilateral" if both else side), "lower", size, variant
    if category == "pneumothorax":
        return side, ("apical" if bilateral < 0.65 else "lateral"), size, variant
    if category == "pneumonia" and bilateral < 0.3:
        return "bilateral", zone, size, variant
    return side, zone, size, variant


@functools.lru_cache(maxsize=1 << 16)
def make_case(seed: int, split: str, index: int, size: str = "default") -> Case:
    """The phantom case (split, index); the category cycles through the 8 categories.

    Cached (a case is frozen and a pure function of its arguments): a command lists the samples
    more than once (the sample set, then the fingerprint), and listing is most of a small run's start.
    """
    if split not in _SPLIT_CODE:
        raise ValueError(f"phantom split must be train or test, not {split!r}")
    rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
    width, height = _image_size(rng, size)
    category = CATEGORIES[index % len(CATEGORIES)]
    side, zone, size_word, variant = _facts(category, rng)
    frame, lungs, heart = _anatomy(rng, width, height)
    components = _lesion(category, side, zone, size_word, frame, lungs, heart, rng)
    boxes = tuple(pixel_box(c, width, height) for c in components)
    return Case(split, index, width, height, frame, lungs, heart, category, side, zone, size_word, variant,
                phrase_for(category, side, zone, size_word, variant), components, boxes,
                int(rng.integers(0, 2 ** 31)))


# ---- rendering ----------------------------------------------------------------------------------


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Smooth random field in [0, 1] with features about `cell` pixels across."""
    from PIL import Image

    gh, gw = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
    grid = rng.random((gh, gw), dtype=np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC)).clip(0, 1)


def _edge(d: np.ndarray, soft: float) -> np.ndarray:
    """1 well inside (d < 1 - soft), falling linearly to 0 at the outline d = 1."""
    return np.clip((1.0 - d) / soft, 0.0, 1.0)


def _anatomy_image(case: Case, rng: np.random.Generator) -> np.ndarray:
    H, W, f = case.height, case.width, case.frame
    x = (np.arange(W, dtype=np.float32) + 0.5)[None, :]
    y = (np.arange(H, dtype=np.float32) + 0.5)[:, None]
    u, v = (x - f.x0) / f.w, (y - f.y0) / f.h
    body_d = np.abs((u - 0.5) / 0.49) ** 3.5 + np.abs((v - 0.56) / 0.53) ** 3.5
    body = _edge(body_d, 0.15)
    img = 0.05 + body * (0.33 + 0.12 * np.clip((v - 0.55) * 2.5, 0.0, 1.0))
    lung_d = np.minimum(*(lung.d(x, y) for lung in case.lungs.values()))
    lung = _edge(lung_d, 0.12)
    markings = _smooth_noise(rng, H, W, cell=f.w / 22) - 0.5
    vessels = np.exp(-((markings / 0.06) ** 2)) * np.clip(1.1 - lung_d, 0.0, 1.0)
    phase = rng.uniform(0.0, 1.0)
    rib_wave = np.sin(2 * np.pi * (10.5 * (v - 1.1 * (np.abs(u - 0.5) - 0.2) ** 2) + phase))
    ribs = np.clip((rib_wave - 0.45) * 2.5, 0.0, 1.0) * _edge(lung_d / 1.35, 0.2) * (np.abs(u - 0.5) > 0.05)
    img = img * (1 - lung) + lung * (0.12 + 0.09 * lung_d + 0.07 * vessels)
    img += 0.11 * ribs
    spine = (np.abs(u - 0.5) < 0.042) & (v > 0.02) & (v < 0.92)
    img = np.where(spine, np.maximum(img, 0.47 + 0.04 * np.sin(v * 75.0)), img)
    heart = _edge(case.heart.d(x, y), 0.1)
    return (img * (1 - heart) + np.maximum(img, 0.56 - 0.04 * case.heart.d(x, y)) * heart).astype(np.float32)


def _towards_white(base: np.ndarray, density: np.ndarray) -> np.ndarray:
    """Added brightness of extra density: `density` over aerated lung, less over brighter tissue."""
    return (density * np.clip(0.95 - base, 0.0, None) / 0.8).astype(np.float32)


def _draw_lesion(img: np.ndarray, case: Case, rng: np.random.Generator) -> None:
    """Change `img` inside the lesion's boxes only."""
    for regions, (bx, by, bw, bh) in zip(case.components, case.boxes):
        r0, c0 = int(by), int(bx)
        win = img[r0:r0 + int(bh), c0:c0 + int(bw)]
        x = (np.arange(c0, c0 + win.shape[1], dtype=np.float32) + 0.5)[None, :]
        y = (np.arange(r0, r0 + win.shape[0], dtype=np.float32) + 0.5)[:, None]
        texture = _smooth_noise(rng, win.shape[0], win.shape[1], cell=max(4.0, case.frame.w / 60))
        cat = case.category
        if cat == "cardiomegaly":
            d = regions[0].d(x, y)
            heart = _edge(d, 0.08)
            win[:] = win * (1 - heart) + np.maximum(win, 0.56 - 0.04 * d) * heart
        elif cat == "pneumothorax":
            crescent = regions[0]
            inside = crescent.inside(x, y)
            line_width = 1.8 / max(1.0, min(crescent.collapsed.rx, crescent.collapsed.ry))
            pleura = inside & (crescent.collapsed.d(x, y) < (1 + line_width) ** 2)
            win[:] = np.where(pleura, 0.28, np.where(inside, 0.06, win))
        elif cat == "pleural effusion":
            men = regions[0]
            ramp = 0.06 * men.lung.ry
            depth = np.clip((y - men.top(x)) / ramp, 0.0, 1.0) ** 0.7
            win += _towards_white(win, 0.36 * depth * _edge(men.lung.d(x, y), 0.02))
        else:
            weight = np.zeros(win.shape, np.float32)
            for r in regions:
                weight = np.maximum(weight, np.clip(1.0 - r.d(x, y), 0.0, 1.0) ** 0.6)
            amp, patchy = {"edema": (0.17, 0.5), "atelectasis": (0.30, 0.1), "lung opacity": (0.32, 0.15),
                           "consolidation": (0.33, 0.35), "pneumonia": (0.30, 0.5)}[cat]
            win += _towards_white(win, amp * weight * (1 - patchy + patchy * texture))


def lesion_mask(case: Case) -> np.ndarray:
    """The lesion as a boolean (height, width) mask: pixels whose centres lie inside any of its regions.

    Each component lies inside its box (the box is tight, or one pixel looser for an ellipse), so
    the mask is drawn window by window; a region is the same geometry `_draw_lesion` paints.
    """
    mask = np.zeros((case.height, case.width), dtype=bool)
    for regions, (bx, by, bw, bh) in zip(case.components, case.boxes):
        r0, c0 = int(by), int(bx)
        win = mask[r0:r0 + int(bh), c0:c0 + int(bw)]
        x = (np.arange(c0, c0 + win.shape[1], dtype=np.float64) + 0.5)[None, :]
        y = (np.arange(r0, r0 + win.shape[0], dtype=np.float64) + 0.5)[:, None]
        for region in regions:
            win |= region.inside(x, y)
    return mask


@functools.lru_cache(maxsize=1 << 12)
def _mask_rle(seed: int, split: str, index: int, size: str) -> str:
    from pycocotools import mask as cocomask

    return rle_text(cocomask.encode(np.asfortranarray(lesion_mask(make_case(seed, split, index, size)), dtype=np.uint8)))


def render_case(case: Case, with_lesion: bool = True) -> np.ndarray:
    """Draw a case as a 2-D uint8 array; without the lesion every pixel outside its boxes is the same."""
    img = _anatomy_image(case, np.random.default_rng([case.lesion_seed, 1]))
    if with_lesion:
        _draw_lesion(img, case, np.random.default_rng([case.lesion_seed, 2]))
    noise = np.random.default_rng([case.lesion_seed, 3]).standard_normal(img.shape, dtype=np.float32)
    img += 0.018 * noise
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


_ID = re.compile(r"^phantom-(train|test)-(\d+)$")


#: most samples one split may have (each is drawn in memory before a run starts)
MAX_SAMPLES = 100_000


class PhantomDataset(Dataset):
    """Built-in procedural data: 8 categories, exact boxes, location phrases, train/test splits."""

    name = "phantom"
    description = "built-in procedural chest-like images, 8 MS-CXR categories, exact boxes and location phrases"
    options_schema = {
        "n_test": Param(int, 200, ge=0, le=MAX_SAMPLES, help="test samples (default 200, 25 per category)"),
        "n_train": Param(int, 400, ge=0, le=MAX_SAMPLES, help="train samples (default 400)"),
        "seed": Param(int, 0, ge=0, help="seed of the whole dataset (default 0)"),
        "size": Param(str, "default", choices=("default", "mimic"),
                      help="'default' (varied sizes 384-1024 px, square, portrait, landscape) or 'mimic' (all 2544 x 3056)"),
        "gt": Param(str, "boxes", choices=("boxes", "mask"),
                    help="'boxes' (default) or 'mask': score against the lesion's pixels (COCO RLE), its boxes kept"),
    }

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, options)
        self.seed = self.settings["seed"]
        self.size = self.settings["size"]
        self.gt = self.settings["gt"]
        self.counts = {"test": self.settings["n_test"], "train": self.settings["n_train"]}

    def fingerprint_options(self) -> dict[str, str]:
        """Every option with its value in force (defaults included), so `-O seed=0` hashes as no option."""
        options = {"n_test": str(self.counts["test"]), "n_train": str(self.counts["train"]), "seed": str(self.seed),
                   "size": self.size}
        if self.gt != "boxes":  # the default adds nothing, so runs made before the option keep their fingerprint
            options["gt"] = self.gt
        return options

    @property
    def folder(self) -> Path:
        """The PNG cache under BENCH_CACHE, keyed by everything that sets pixels: the only place images are written."""
        base = cache_root()
        return base / "phantom" / f"v{RENDER_VERSION}-seed{self.seed}-{self.size}"

    def case(self, split: str, index: int) -> Case:
        """The full description of sample (split, index) under this dataset's options."""
        return make_case(self.seed, split, index, self.size)

    def _sample(self, case: Case, folder: Path) -> Sample:
        sid = f"phantom-{case.split}-{case.index:05d}"
        extra = {"side": case.side, "zone": case.zone, "size": case.size, "variant": case.variant,
                 "lesion_seed": case.lesion_seed, "index": case.index}
        path = os.path.join(folder, f"{sid}.png")
        if self.data_root is not None and os.path.isfile(self.data_root / f"{sid}.png"):
            path = str(self.image_path(self.data_root, f"{sid}.png", "phantom image"))
        mask = MaskSource(rle=_mask_rle(self.seed, case.split, case.index, self.size)) if self.gt == "mask" else None
        return Sample(sid, path, case.width, case.height, case.category, case.phrase, case.boxes, case.split, extra,
                      mask=mask)

    def samples(self) -> list[Sample]:
        """Test samples then train samples; nothing is rendered.

        With a data root, an image found there (`<sample_id>.png`) is read from there; every other
        one is drawn into the cache.
        """
        folder = self.folder
        return [self._sample(self.case(split, i), folder)
                for split in ("test", "train") for i in range(self.counts[split])]

    def _drawn(self, sample: Sample) -> bool:
        """Whether the sample's image is the one this dataset draws into its cache (not a file of the data root)."""
        return Path(sample.image_path).parent == self.folder

    def check_images(self, samples: Sequence[Sample]) -> dict[str, str]:
        """Images read from the data root are checked as every dataset's are (they decode, at the case's
        size); images drawn into the cache come from the same case that sets their size and boxes."""
        given = [s for s in samples if not self._drawn(s)]
        return check_images(given, self.name) if given else {}

    def _case_of(self, sample: Sample) -> Case:
        m = _ID.match(sample.sample_id)
        if m is None:
            raise BenchError(f"dataset phantom: {sample.sample_id!r} is not a phantom sample id")
        return self.case(m.group(1), int(m.group(2)))

    def render(self, sample: Sample, with_lesion: bool = True) -> np.ndarray:
        """The sample's pixels, drawn now (no cache); `with_lesion=False` gives the healthy twin."""
        return render_case(self._case_of(sample), with_lesion)

    def load_image(self, sample: Sample) -> np.ndarray:
        """The PNG (of the data root or the cache), or the image rendered now and cached atomically."""
        path = Path(sample.image_path)
        if path.is_file() or not self._drawn(sample):
            return super().load_image(sample)
        pixels = self.render(sample)
        atomic.write_bytes(path, _png(pixels))
        return pixels

    def materialise(self, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> int:
        """Write every missing PNG (so a sample list's image paths exist); returns how many were written."""
        todo = [s for s in samples if self._drawn(s) and not Path(s.image_path).is_file()]
        if progress and len(todo) < len(samples):
            progress(len(samples) - len(todo))

        def one(sample: Sample) -> None:
            atomic.write_bytes(Path(sample.image_path), _png(self.render(sample)))

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for _ in pool.map(one, todo):
                if progress:
                    progress(1)
        return len(todo)
