"""Reference methods that need no model: an oracle upper bound, a location prior, a constant."""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from ..core.geometry import Geometry, box_mask
from ..core.heatmap import Heatmap
from ..core.params import Param
from ..core.samples import Sample
from ..datasets.base import Dataset
from .base import Method


def native_shape(height: int, width: int, max_side: int) -> tuple[int, int]:
    """A grid of at most `max_side` cells on the long side, with the image's aspect ratio."""
    scale = min(1.0, max_side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def cell_centres(size: int, cells: int) -> np.ndarray:
    """Original-pixel coordinate of each cell centre along one axis (pixel centres at k + 0.5)."""
    return (np.arange(cells) + 0.5) * size / cells


class OracleGaussian(Method):
    """Upper bound from the GT: a Gaussian at each box centre, sigma = box side / 3, max over boxes."""

    known_params = {"grid": Param(int, 256, ge=1, help="native cells on the long side (at most the image's)"),
                    "sigma_fraction": Param(float, 1.0 / 3.0, gt=0, help="sigma = box side * fraction, per axis")}

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        grid = self.params["grid"]
        fraction = self.params["sigma_fraction"]
        out = []
        for s in samples:
            h, w = native_shape(s.height, s.width, grid)
            ys = cell_centres(s.height, h)[:, None]
            xs = cell_centres(s.width, w)[None, :]
            values = np.zeros((h, w))
            for x, y, bw, bh in s.boxes:
                sx, sy = bw * fraction, bh * fraction
                g = np.exp(-0.5 * (((xs - (x + bw / 2)) / sx) ** 2 + ((ys - (y + bh / 2)) / sy) ** 2))
                values = np.maximum(values, g)
            out.append(Heatmap(values.astype(np.float32), Geometry.whole(s.height, s.width, f"{h}x{w} grid over the whole image")))
        return out


class BoxPrior(Method):
    """Per-category mean of GT box masks over the train split, on a normalised image grid.

    Datasets without a train split get a leave-one-out prior: each sample's map is the mean of
    the other evaluated samples of its category. A protocol that also scores the train split leaves
    each train sample out of its own prior the same way, so no sample ever sees its own boxes.
    """

    known_params = {"grid": Param(int, 64, ge=1, le=1024, help="side of the normalised grid the masks are averaged on")}

    def prepare(self, dataset: Dataset) -> None:
        self.grid = self.params["grid"]
        train = [s for s in self.context.all_samples if s.split == "train"]
        self.leave_one_out = not train
        source = list(self.context.eval_samples) if self.leave_one_out else train
        evaluated = {s.sample_id for s in self.context.eval_samples}
        self.sums: dict[str, np.ndarray] = defaultdict(lambda: np.zeros((self.grid, self.grid)))
        self.counts: dict[str, int] = defaultdict(int)
        self.own: dict[str, np.ndarray] = {}
        for s in source:
            mask = self._mask(s)
            self.sums[s.category] += mask
            self.counts[s.category] += 1
            if s.sample_id in evaluated:
                self.own[s.sample_id] = mask
        self.total = sum(self.sums.values(), np.zeros((self.grid, self.grid)))
        self.total_count = sum(self.counts.values())

    def _mask(self, s: Sample) -> np.ndarray:
        sx, sy = self.grid / s.width, self.grid / s.height
        boxes = [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in s.boxes]
        return box_mask(boxes, self.grid, self.grid).astype(np.float64)

    def _prior(self, s: Sample) -> np.ndarray:
        own = self.own.get(s.sample_id)
        total, count = self.sums[s.category], self.counts[s.category]
        if own is not None:
            total, count = total - own, count - 1
        if count <= 0:  # no other sample of this category: fall back to all categories
            total, count = self.total - (own if own is not None else 0), self.total_count - (own is not None)
        return total / count if count > 0 else np.ones((self.grid, self.grid))

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        return [Heatmap(self._prior(s).astype(np.float32),
                        Geometry.whole(s.height, s.width, f"{self.grid}x{self.grid} grid over the whole image"))
                for s in samples]

    def provenance(self) -> dict:
        fit = "train split" + (", evaluated train samples left out of their own prior" if self.own else "")
        return {"fit": "leave-one-out over evaluated samples" if self.leave_one_out else fit,
                "fit_samples": {k: v for k, v in sorted(self.counts.items())}}


class Uniform(Method):
    """A constant map: the floor every method must beat (miou 0, cnr 0, auc 0.5)."""

    known_params: dict[str, Param] = {}

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        return [Heatmap(np.ones((1, 1), np.float32), Geometry.whole(s.height, s.width, "constant")) for s in samples]


__all__ = ["BoxPrior", "OracleGaussian", "Uniform", "native_shape"]
