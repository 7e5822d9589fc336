"""The box oracle: each phrase's ground-truth boxes, shifted by a seeded jitter.

Every box keeps its size and moves by `jitter` times its own width along x and times its own
height along y, each in a direction drawn from a generator seeded by the run's seed and the
sample id (so a sample's boxes never depend on the batch it ran in). A box moved by the fraction j
on both axes overlaps its ground truth with IoU (1 - j)^2 / (2 - (1 - j)^2) exactly, whatever the
directions (0.681 at j = 0.1, 0.566 at 0.15, 0.391 at 0.25), so its Acc@0.5 is known by hand; a
moved box that would leave the image is clipped to it. The boxes come in the order of the ground
truth's, without scores.
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from ..core.params import Param
from ..core.predictions import BoxPrediction
from ..core.samples import Box, Sample
from ..datasets.base import Dataset
from .base import Method


def jittered_box(box: Box, jitter: float, signs: tuple[float, float], width: int, height: int) -> Box:
    """`box` moved by `jitter` of its width and height in the directions `signs`, clipped to the image."""
    x, y, w, h = box
    x0, y0 = x + signs[0] * jitter * w, y + signs[1] * jitter * h
    x1, y1 = min(x0 + w, width), min(y0 + h, height)
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def jitter_iou(jitter: float) -> float:
    """The IoU of a box with itself moved by `jitter` of its sides along both axes (no clipping)."""
    kept = (1.0 - min(jitter, 1.0)) ** 2
    return kept / (2.0 - kept)


class OracleBox(Method):
    """Upper bound for box methods: the ground-truth boxes, each moved by a seeded jitter."""

    known_params = {"jitter": Param(float, 0.1, ge=0, le=0.9, help="shift of each box as a fraction of its own width "
                                                                 "and height, in a seeded direction per axis")}

    def boxes(self, samples: Sequence[Sample], dataset: Dataset) -> list[BoxPrediction]:
        jitter = self.params["jitter"]
        out = []
        for s in samples:
            rng = np.random.default_rng([self.context.seed, zlib.crc32(s.sample_id.encode("utf-8"))])
            signs = rng.choice([-1.0, 1.0], size=(len(s.boxes), 2))
            out.append(BoxPrediction(tuple(jittered_box(b, jitter, (sx, sy), s.width, s.height)
                                           for b, (sx, sy) in zip(s.boxes, signs))))
        return out


__all__ = ["OracleBox", "jitter_iou", "jittered_box"]
