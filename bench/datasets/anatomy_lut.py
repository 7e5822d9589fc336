"""Anatomical priors: a lookup table from each location to one or more 2-D Gaussians.

Vilouras et al. 2025 (appendix D) turn each anatomical box into a Gaussian with
mu = box centre and sigma = box side / 6 per axis (the +-3 sigma rule), then average these
statistics over every box of a location. Coordinates here are normalised to the image
(x / width, y / height, origin top-left), so a table serves images of any size; the paper's
512 x 512 coordinates are these times 512. The file format is documented in `anatomy_lut.md`.

Two sources ship with the code: `build_lut` over any boxes (Chest ImaGenome's gold-standard
boxes via `read_imagenome_gold`, or the phantom generator's own anatomy via
`bench.datasets.phantom_anatomy`), and the exact phantom table `PHANTOM_LUT_FILE`.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..core import atomic
from ..core.errors import BenchError
from ..core.geometry import Geometry
from .anatomy import AnatomyRules, load_rules
from .tables import read_csv, require_columns

FORMAT = 1
PHANTOM_LUT_FILE = Path(__file__).resolve().parent / "anatomy_lut_phantom.toml"


@dataclass(frozen=True)
class Gaussian:
    """An axis-aligned 2-D Gaussian in normalised image coordinates; `boxes` it was averaged over."""

    mu_x: float
    mu_y: float
    sigma_x: float
    sigma_y: float
    boxes: int = 1

    def jittered(self, rng: np.random.Generator, fraction: float) -> "Gaussian":
        """mu and sigma each moved by U(-fraction, fraction) of the image side (sigma kept positive)."""
        if fraction <= 0:
            return self
        dx, dy, ds, dt = rng.uniform(-fraction, fraction, size=4)
        floor = 1e-3
        return Gaussian(self.mu_x + dx, self.mu_y + dy, max(floor, self.sigma_x + ds), max(floor, self.sigma_y + dt),
                        self.boxes)

    def w2(self, other: "Gaussian") -> float:
        """Squared 2-Wasserstein distance of two axis-aligned Gaussians (appendix E, eq. 7)."""
        return ((self.mu_x - other.mu_x) ** 2 + (self.mu_y - other.mu_y) ** 2
                + (self.sigma_x - other.sigma_x) ** 2 + (self.sigma_y - other.sigma_y) ** 2)


def box_gaussian(x0: float, y0: float, x1: float, y1: float, width: float, height: float) -> Gaussian:
    """Eq. 6 of the paper for one box (corner coordinates in pixels of a width x height image)."""
    if not (x1 > x0 and y1 > y0 and width > 0 and height > 0):
        raise ValueError(f"box ({x0}, {y0}, {x1}, {y1}) in a {width}x{height} image is empty")
    return Gaussian((x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / 6 / width, (y1 - y0) / 6 / height)


@dataclass(frozen=True)
class AnatomyLut:
    """location key -> Gaussians, with where the table came from."""

    gaussians: Mapping[str, tuple[Gaussian, ...]]
    provenance: Mapping[str, object] = field(default_factory=dict)

    def __getitem__(self, key: str) -> tuple[Gaussian, ...]:
        try:
            return self.gaussians[key]
        except KeyError:
            raise BenchError(f"the anatomical prior table has no Gaussian for location {key!r}") from None

    def nearest(self, target: Gaussian) -> str:
        """The location whose Gaussian is closest to `target` in squared 2-Wasserstein distance
        (ties: the first location in table order)."""
        best, best_d = "", math.inf
        for key, gaussians in self.gaussians.items():
            for g in gaussians:
                d = target.w2(g)
                if d < best_d:
                    best, best_d = key, d
        return best

    def target(self, keys: Sequence[str], geometry: Geometry, grid: tuple[int, int],
               rng: np.random.Generator | None = None, jitter: float = 0.0) -> np.ndarray:
        """(gh, gw) float32 map: the pointwise maximum of the locations' Gaussians (peak 1), each
        jittered when `rng` is given, evaluated at the cell centres of a grid over the geometry's
        field of view."""
        gh, gw = grid
        xs = geometry.left + (np.arange(gw) + 0.5) * geometry.width / gw
        ys = geometry.top + (np.arange(gh) + 0.5) * geometry.height / gh
        out = np.zeros((gh, gw), dtype=np.float64)
        W, H = geometry.image_width, geometry.image_height
        for key in keys:
            for g in self[key]:
                if rng is not None:
                    g = g.jittered(rng, jitter)
                gx = np.exp(-0.5 * ((xs - g.mu_x * W) / (g.sigma_x * W)) ** 2)
                gy = np.exp(-0.5 * ((ys - g.mu_y * H) / (g.sigma_y * H)) ** 2)
                out = np.maximum(out, gy[:, None] * gx[None, :])
        return out.astype(np.float32)


def build_lut(records: Iterable[tuple[str, Gaussian]], rules: AnatomyRules | None = None,
              provenance: Mapping[str, object] | None = None) -> AnatomyLut:
    """Average the per-box statistics of each location (one Gaussian per location); every location
    of the rules must have at least one box."""
    rules = rules or load_rules()
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for key, g in records:
        if key not in rules.keys:
            raise BenchError(f"anatomical box for unknown location {key!r}")
        sums[key] = sums.get(key, np.zeros(4)) + np.array([g.mu_x, g.mu_y, g.sigma_x, g.sigma_y])
        counts[key] = counts.get(key, 0) + 1
    missing = [k for k in rules.keys if k not in counts]
    if missing:
        raise BenchError(f"no anatomical box for {len(missing)} location(s), first {missing[0]!r}: "
                         "every location needs one to get a Gaussian")
    table = {k: (Gaussian(*(float(v) for v in sums[k] / counts[k]), boxes=counts[k]),) for k in rules.keys}
    return AnatomyLut(table, dict(provenance or {}))


# ---- Chest ImaGenome gold-standard boxes ----------------------------------------------------------

GOLD_COLUMNS = ("image_id", "bbox_name", "x1", "y1", "x2", "y2")


def read_imagenome_gold(csv: Path, coordinate_size: float = 224.0,
                        rules: AnatomyRules | None = None) -> tuple[list[tuple[str, Gaussian]], dict]:
    """(location key, Gaussian) per box of a Chest ImaGenome gold-standard box table, and counts.

    Columns: image_id, bbox_name, x1, y1, x2, y2. The released table (1.0.0) also has the corners
    in the original image's pixels (original_x1, original_y1, original_x2, original_y2 with
    original_width and original_height): those are used when present, since x1 ... y2 lie on a
    224 x 224 frame that pads the image to a square. Otherwise, with image_width and image_height
    columns the corners are pixels of that image, else of a `coordinate_size` square. Box names are
    matched to locations by name
    ("right lower lung zone"); boxes of other names (devices, "right atrium") are skipped and
    counted; a box with no area is an error naming its row.
    """

    rules = rules or load_rules()
    table = read_csv(csv)
    table.columns = [c.strip() for c in table.columns]
    require_columns(table, csv, GOLD_COLUMNS, f"a Chest ImaGenome gold box table has {', '.join(GOLD_COLUMNS)}")
    original = ("original_x1", "original_y1", "original_x2", "original_y2", "original_width", "original_height")
    if set(original) <= set(table.columns):
        columns = original
    elif {"image_width", "image_height"} <= set(table.columns):
        columns = ("x1", "y1", "x2", "y2", "image_width", "image_height")
    else:
        columns = ("x1", "y1", "x2", "y2")
    names = {loc.name: loc.key for loc in rules.locations}
    records, skipped = [], 0
    for i, row in enumerate(table.itertuples(index=False), start=1):
        key = names.get(str(row.bbox_name).strip().lower())
        if key is None:
            skipped += 1
            continue
        try:
            values = [float(getattr(row, c)) for c in columns]
            records.append((key, box_gaussian(*values, *([coordinate_size] * (6 - len(values))))))
        except ValueError as exc:
            raise BenchError(f"{csv}: data row {i}: {exc}") from None
    images = table["image_id"].nunique()
    return records, {"images": int(images), "boxes": len(records), "skipped_boxes": skipped,
                     "corners": ", ".join(columns)}


# ---- the file ------------------------------------------------------------------------------------

def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(round(v, 6)) if isinstance(v, float) else str(v)
    return json.dumps(str(v))


def lut_text(lut: AnatomyLut) -> str:
    """The table as TOML (the format of `anatomy_lut.md`)."""
    lines = ["# Anatomical priors: location -> 2-D Gaussian(s), normalised image coordinates",
             "# (x / width, y / height, origin top-left). Format: bench/datasets/anatomy_lut.md",
             f"format = {FORMAT}", "", "[provenance]"]
    lines += [f"{k} = {_value(v)}" for k, v in lut.provenance.items()]
    lines += ["", "[locations]"]
    for key, gaussians in lut.gaussians.items():
        items = ", ".join("{ " + ", ".join(f"{n} = {_value(getattr(g, n))}" for n in
                                            ("mu_x", "mu_y", "sigma_x", "sigma_y", "boxes")) + " }" for g in gaussians)
        lines.append(f"{key} = [{items}]")
    return "\n".join(lines) + "\n"


def save_lut(lut: AnatomyLut, path: Path) -> None:
    """Write the table atomically."""
    atomic.write_text(Path(path), lut_text(lut))


def load_lut(path: Path = PHANTOM_LUT_FILE, rules: AnatomyRules | None = None) -> AnatomyLut:
    """Read a table; BenchError in one line when it is unreadable or lacks a location of the rules."""
    rules = rules or load_rules()
    try:
        raw = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"anatomical prior table {path}: {exc}") from None
    if raw.get("format") != FORMAT:
        raise BenchError(f"anatomical prior table {path}: format {raw.get('format')!r}, expected {FORMAT}")
    table: dict[str, tuple[Gaussian, ...]] = {}
    try:
        for key, entries in raw["locations"].items():
            gaussians = tuple(Gaussian(float(e["mu_x"]), float(e["mu_y"]), float(e["sigma_x"]), float(e["sigma_y"]),
                                       int(e.get("boxes", 1))) for e in entries)
            if not gaussians or any(g.sigma_x <= 0 or g.sigma_y <= 0 for g in gaussians):
                raise ValueError(f"location {key!r} needs Gaussians with positive sigma")
            table[key] = gaussians
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BenchError(f"anatomical prior table {path}: malformed entry ({exc})") from None
    missing = [k for k in rules.keys if k not in table]
    if missing:
        raise BenchError(f"anatomical prior table {path}: no Gaussian for location {missing[0]!r}")
    return AnatomyLut({k: table[k] for k in rules.keys}, dict(raw.get("provenance", {})))


__all__ = ["AnatomyLut", "Gaussian", "PHANTOM_LUT_FILE", "box_gaussian", "build_lut", "load_lut",
           "read_imagenome_gold", "save_lut"]
