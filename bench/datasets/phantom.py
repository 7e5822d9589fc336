"""`phantom`: procedural chest-like radiographs with lesions of the 8 MS-CXR categories.

Everything is a pure function of (seed, split, index): the same options give identical samples
and identical pixels. Listing samples renders nothing; an image is drawn on first use and cached
as an 8-bit PNG. Phrases follow the radiological convention: the patient's right is the image's
left, so "right lower lobe consolidation" has its box in the left half of the image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import atomic
from ..errors import BenchError
from ..samples import Sample
from .base import Dataset

CATEGORIES = ("atelectasis", "cardiomegaly", "consolidation", "edema", "lung opacity", "pleural effusion",
              "pneumonia", "pneumothorax")
SPLITS = {"train": 1, "test": 2}
MIMIC_SIZE = (3056, 2544)  # (height, width) of a MIMIC-CXR radiograph
# lung centres (u, v) on the image: the patient's right lung is on the image's left
LUNG_CENTRE = {"right": (0.31, 0.47), "left": (0.69, 0.47)}
LUNG_RADII = (0.15, 0.29)
ZONE_V = {"upper": 0.30, "mid": 0.47, "lower": 0.63}


def flip_side(phrase: str) -> str:
    """Swap the words left and right (the mirrored finding)."""
    return re.sub(r"\b(left|right)\b", lambda m: "right" if m.group(1) == "left" else "left", phrase)


def _rng(seed: int, split: str, index: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS[split], index, salt])


def _image_size(rng: np.random.Generator, size: str) -> tuple[int, int]:
    if size == "mimic":
        return MIMIC_SIZE
    width = int(rng.integers(384, 1025))
    aspect = float(rng.choice([0.8, 0.9, 1.0, 1.0, 1.15, 1.25]))  # height / width
    height = int(np.clip(round(width * aspect), 384, 1024))
    return height, width


def _lesion(category: str, rng: np.random.Generator) -> tuple[str, list[tuple[float, float, float, float]], dict]:
    """Phrase, boxes in unit image coordinates (u, v, w, h), and structured facts."""
    side = str(rng.choice(["right", "left"]))
    size_word = str(rng.choice(["small", "moderate", "large"]))
    scale = {"small": 0.75, "moderate": 1.0, "large": 1.3}[size_word]

    def in_lung(side: str, v: float, w: float, h: float, lateral: float = 0.0) -> tuple[float, float, float, float]:
        cu, _ = LUNG_CENTRE[side]
        offset = lateral * (-1 if side == "right" else 1)
        u = cu + offset + rng.uniform(-0.03, 0.03)
        return (u - w / 2, v - h / 2, w, h)

    if category == "cardiomegaly":
        w, h = 0.36 * rng.uniform(0.95, 1.1), 0.28 * rng.uniform(0.95, 1.1)
        box = (0.56 - w / 2, 0.63 - h / 2, w, h)
        phrase = str(rng.choice(["cardiomegaly", "enlarged cardiac silhouette", "moderate cardiomegaly"]))
        return phrase, [box], {"side": "none", "zone": "heart", "size": size_word}
    if category == "edema":
        boxes = [in_lung(s, ZONE_V["mid"], 0.16 * scale, 0.2 * scale, -0.03) for s in ("right", "left")]
        phrase = str(rng.choice(["bilateral perihilar edema", "pulmonary edema", "mild interstitial edema"]))
        return phrase, boxes, {"side": "bilateral", "zone": "perihilar", "size": size_word}
    if category == "pleural effusion":
        w, h = 0.2 * scale, 0.1 * scale
        box = in_lung(side, 0.74 - h / 2, w, h, 0.02)
        return f"{size_word} {side} pleural effusion", [box], {"side": side, "zone": "base", "size": size_word}
    if category == "pneumothorax":
        w, h = 0.12 * scale, 0.12 * scale
        box = in_lung(side, 0.24, w, h, 0.05)
        return f"{size_word} {side} apical pneumothorax", [box], {"side": side, "zone": "apex", "size": size_word}
    if category == "atelectasis":
        w, h = 0.16 * scale, 0.05 * scale
        box = in_lung(side, ZONE_V["lower"] + 0.02, w, h)
        phrase = str(rng.choice([f"{side} basilar atelectasis", f"linear atelectasis at the {side} base"]))
        return phrase, [box], {"side": side, "zone": "lower", "size": size_word}
    zone = str(rng.choice(list(ZONE_V)))
    if category == "pneumonia" and rng.random() < 0.3:
        boxes = [in_lung(s, ZONE_V[zone], 0.1 * scale, 0.1 * scale) for s in ("right", "left")]
        return f"bilateral {zone} lobe pneumonia", boxes, {"side": "bilateral", "zone": zone, "size": size_word}
    if category == "lung opacity":
        w = h = 0.07 * scale
        return f"opacity in the {side} {zone} lung", [in_lung(side, ZONE_V[zone], w, h)], \
            {"side": side, "zone": zone, "size": size_word}
    w, h = 0.12 * scale, 0.1 * scale
    return f"{side} {zone} lobe {category}", [in_lung(side, ZONE_V[zone], w, h)], \
        {"side": side, "zone": zone, "size": size_word}


def _to_pixels(box: tuple[float, float, float, float], height: int, width: int) -> tuple[float, float, float, float]:
    u, v, w, h = box
    x0, y0 = int(round(u * width)), int(round(v * height))
    x1, y1 = int(round((u + w) * width)), int(round((v + h) * height))
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(width, max(x1, x0 + 2)), min(height, max(y1, y0 + 2))
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def make_sample(seed: int, split: str, index: int, size: str, folder: Path) -> Sample:
    """The sample (index) of a split: category cycles through the 8 categories."""
    rng = _rng(seed, split, index)
    category = CATEGORIES[index % len(CATEGORIES)]
    height, width = _image_size(rng, size)
    phrase, unit_boxes, facts = _lesion(category, rng)
    boxes = tuple(_to_pixels(b, height, width) for b in unit_boxes)
    sid = f"phantom-{split}-{index:05d}"
    return Sample(sid, str(folder / f"{sid}.png"), width, height, category, phrase, boxes, split,
                  {**facts, "index": index})


def _ellipse(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def render(sample: Sample, seed: int) -> np.ndarray:
    """Draw the sample's radiograph as a 2-D uint8 array (body, lungs, heart, spine, ribs, lesion)."""
    H, W = sample.height, sample.width
    rng = _rng(seed, sample.split, sample.extra["index"], salt=1)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    v, u = yy / H, xx / W
    img = np.full((H, W), 0.06, np.float32)
    img[_ellipse(v, u, 0.52, 0.5, 0.5, 0.44) < 1] = 0.42
    lungs = np.zeros((H, W), bool)
    for cu, cv in LUNG_CENTRE.values():
        lungs |= _ellipse(v, u, cv, cu, LUNG_RADII[1], LUNG_RADII[0]) < 1
    img[lungs] = 0.16
    heart_scale = 1.35 if sample.category == "cardiomegaly" else 1.0
    heart = _ellipse(v, u, 0.63, 0.56, 0.11 * heart_scale, 0.13 * heart_scale) < 1
    img[heart] = 0.58
    img[np.abs(u - 0.5) < 0.035] = np.maximum(img[np.abs(u - 0.5) < 0.035], 0.55)
    rib_phase = rng.uniform(0, 2 * np.pi)
    ribs = (np.sin((v * 28 + 3 * (u - 0.5) ** 2 * 10) + rib_phase) > 0.85) & lungs
    img[ribs] += 0.12
    lesion = np.zeros((H, W), np.float32)
    for x, y, w, h in sample.boxes:
        d = _ellipse(yy + 0.5, xx + 0.5, y + h / 2, x + w / 2, h / 2, w / 2)
        lesion = np.maximum(lesion, np.clip(1.0 - d, 0.0, 1.0) ** 0.5)
    if sample.category == "pneumothorax":
        img = np.where(lesion > 0, 0.1 * lesion + img * (1 - lesion), img)
    elif sample.category == "edema":
        img += 0.22 * lesion
    elif sample.category != "cardiomegaly":
        img += 0.34 * lesion
    img += rng.normal(0.0, 0.025, size=(H, W)).astype(np.float32)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


class PhantomDataset(Dataset):
    """Built-in procedural data: 8 categories, exact boxes, location phrases, train/test splits."""

    name = "phantom"
    description = "built-in procedural chest-like images, 8 MS-CXR categories, exact boxes and location phrases"
    options_help = {
        "n_test": "test samples (default 200, 25 per category)",
        "n_train": "train samples (default 400)",
        "seed": "seed of the whole dataset (default 0)",
        "size": "'default' (varied sizes 384-1024 px) or 'mimic' (every image 2544 x 3056)",
    }

    def __init__(self, data_root: Path | None = None, options: dict | None = None) -> None:
        super().__init__(data_root, options)
        self.seed = self.int_option("seed", 0)
        self.size = self.option("size", "default")
        if self.size not in ("default", "mimic"):
            raise BenchError(f"dataset phantom: option size={self.size!r} must be 'default' or 'mimic'")
        self.counts = {"test": self.int_option("n_test", 200), "train": self.int_option("n_train", 400)}
        if min(self.counts.values()) < 0:
            raise BenchError("dataset phantom: n_test and n_train must not be negative")

    @property
    def folder(self) -> Path:
        if self.data_root is not None:
            return self.data_root
        base = Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "cxr-grounding-bench")
        return base / "phantom" / f"v1-seed{self.seed}-{self.size}"

    def samples(self) -> list[Sample]:
        return [make_sample(self.seed, split, i, self.size, self.folder)
                for split in ("test", "train") for i in range(self.counts[split])]

    def load_image(self, sample: Sample) -> np.ndarray:
        path = Path(sample.image_path)
        if path.is_file():
            return super().load_image(sample)
        pixels = render(sample, self.seed)
        self._write(path, pixels)
        return pixels

    @staticmethod
    def _write(path: Path, pixels: np.ndarray) -> None:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buf, format="PNG")
        atomic.write_bytes(path, buf.getvalue())

    def materialise(self, samples: Sequence[Sample], progress: Callable[[int], None] | None = None) -> None:
        """Write every missing PNG (so image paths in a sample list exist)."""
        for s in samples:
            if not Path(s.image_path).is_file():
                self._write(Path(s.image_path), render(s, self.seed))
            if progress:
                progress(1)
