"""The human reference: a dataset's second, independent reading scored as a method (`reader2`).

Datasets with a second reading (CheXlocalize's benchmark radiologists on its test set) carry it per
sample as `extra["reader2"] = {"mask": <COCO RLE JSON text or None>, "points": [[x, y], ...]}`.
The map is that reader's mask at the original size (1 inside, 0 outside; all 0 when the reader drew
nothing), marked as a binary mask, with the reader's most representative points in its `meta`: the
segmentation protocols take the mask itself as the segmentation and score the hit rate from the
points (any point inside the GT), as CheXlocalize scores its human benchmark; every other protocol
scores the map like any method's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..core.errors import BenchError, SampleError
from ..core.geometry import Geometry
from ..core.ground_truth import MaskSource, load_mask
from ..core.heatmap import Heatmap
from ..core.samples import Sample
from ..datasets.base import Dataset
from .base import Method

KEY = "reader2"


def second_reading(sample: Sample) -> dict | None:
    """The sample's second reading (`extra["reader2"]`), or None."""
    reading = sample.extra.get(KEY) if isinstance(sample.extra, dict) else None
    if reading is None:
        return None
    if not isinstance(reading, dict):
        raise SampleError(sample.sample_id, f"extra[{KEY!r}] is not a table with 'mask' and 'points'")
    return reading


def reading_points(sample: Sample, reading: dict) -> list[list[float]]:
    """The reader's points as [x, y] lists (checked: two finite numbers inside the image)."""
    points = reading.get("points") or []
    out = []
    for p in points:
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError, IndexError):
            raise SampleError(sample.sample_id, f"second reading point {p!r} is not [x, y]") from None
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x < sample.width and 0 <= y < sample.height):
            raise SampleError(sample.sample_id, f"second reading point {[x, y]} lies outside the "
                                                f"{sample.width}x{sample.height} image")
        out.append([x, y])
    return out


class SecondReader(Method):
    """The second reading of the sample as its map: the human bar every method is measured against."""

    known_params: dict = {}

    def prepare(self, dataset: Dataset) -> None:
        samples = list(self.context.eval_samples)
        if samples and not any(second_reading(s) is not None for s in samples):
            raise BenchError(f"dataset {dataset.name} carries no second reading (extra['reader2']) on the samples "
                             "this run scores; reader2 needs a dataset with one (chexlocalize's test split)")

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        out = []
        for s in samples:
            reading = second_reading(s) or {}
            rle = reading.get("mask")
            mask = (load_mask(MaskSource(rle=rle), s.height, s.width, s.sample_id) if rle
                    else np.zeros((s.height, s.width), dtype=bool))
            meta = {"source": "second reading", "binary": True, "points": reading_points(s, reading)}
            out.append(Heatmap(mask.astype(np.uint8), Geometry.whole(s.height, s.width, "second reader's mask"), meta))
        return out


__all__ = ["KEY", "SecondReader", "reading_points", "second_reading"]
