"""Bring-your-own maps on their own grid: the `.npz` format `bench score` reads beside `.npy`.

A `.npy` map must be at the original image size, so a 16 x 16 or 512 x 512 map has to be upsampled
first, and how (nearest, bilinear, where the crop lay) is then baked into the numbers. Under the
paper protocols that resample into a 512 crop or fit a GMM, the score depends on that grid. A
native map keeps its own grid and says where it lies on the image (a `Geometry`); the protocol
then does the resampling, exactly as for the harness's own methods.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.geometry import Geometry
from ..core.heatmap import Heatmap
from .rundir import file_name


def write_native_map(folder: Path, sample_id: str, values: np.ndarray, geometry: Geometry) -> Path:
    """Write FOLDER/<sample_id>.npz: `values` on the method's grid (NaN: no value) and its `geometry`.

    `geometry` is the rectangle of the original image the grid spans, e.g. `Geometry.whole(height,
    width)` for a map over the whole image, or `Geometry.short_side_crop(height, width, 512, 448)`
    for a map of the centre crop of an image whose short side was resized to 512.
    """
    path = Path(folder) / f"{file_name(sample_id)}.npz"
    Heatmap(np.asarray(values), geometry, {"source": "bring-your-own"}).save(path)
    return path
