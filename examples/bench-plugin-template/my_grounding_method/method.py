"""An example method backend: the image's own brightness, smoothed on a coarse grid.

Not a good grounding method (it ignores the phrase); it shows the contract a backend meets: one
heatmap per sample, on the method's native grid, with the geometry that places that grid on the
original image. The harness resizes, normalises and scores it under the chosen protocol.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from bench import Dataset, Geometry, Heatmap, Method, Param, Sample


class IntensityMap(Method):
    """Mean grey value per cell of a `grid` x `grid` lattice over the whole image, then smoothed."""

    # the [params] fields, with type, default and range: a bad value is refused before the run starts
    known_params = {"grid": Param(int, 32, ge=1, le=512), "sigma": Param(float, 1.0, ge=0)}

    def prepare(self, dataset: Dataset) -> None:
        # load weights here; raise bench.BenchError with a one-line message when they are missing
        self.grid = self.params["grid"]
        self.sigma = self.params["sigma"]

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        out = []
        for s in samples:
            image = dataset.load_image(s).astype(np.float64)
            rows = np.array_split(np.arange(image.shape[0]), self.grid)
            cols = np.array_split(np.arange(image.shape[1]), self.grid)
            cells = np.array([[image[np.ix_(r, c)].mean() for c in cols] for r in rows])
            values = gaussian_filter(cells, self.sigma) if self.sigma > 0 else cells
            out.append(Heatmap(values.astype(np.float32),
                               Geometry.whole(s.height, s.width, f"{self.grid}x{self.grid} cells over the image")))
        return out

    def provenance(self) -> dict:
        return {"model": "none (image intensity)", "grid": self.grid, "sigma": self.sigma}
