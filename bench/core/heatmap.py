"""The heatmap contract: a method's native map plus the geometry that places it on the image."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic, limits, npyfile
from .geometry import Geometry

#: added to the message of a .npz without the two arrays of a heatmap
_HINT = ("; a heatmap written by `bench run` holds 'values' and 'record', and maps at the original size go in "
         "as .npy files")


@dataclass
class Heatmap:
    """A 2-D map on the method's native grid and where that grid lies on the original image.

    NaN values mark pixels the method says nothing about (outside its field of view), the same
    as the area outside the geometry's rectangle. `meta` holds method-specific provenance.
    """

    values: np.ndarray
    geometry: Geometry
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values)
        if self.values.ndim != 2 or 0 in self.values.shape:
            raise ValueError(f"heatmap must be a non-empty 2-D array, got shape {self.values.shape}")

    def save(self, path: Path) -> None:
        """Write as .npz atomically (values and a JSON geometry record); equal maps give equal files."""
        record = json.dumps({"geometry": self.geometry.to_dict(), "meta": self.meta})

        def writer(fh) -> None:
            np.savez_compressed(fh, values=self.values, record=np.array(record))

        atomic.write_with(Path(path), writer)

    @classmethod
    def load(cls, path: Path, image_size: tuple[int, int] | None = None) -> "Heatmap":
        """Read a map written by `save`; ValueError (one line naming the file) for anything else.

        The geometry record is read first and the grid's header checked against it before the
        values are: a grid finer than its field of view (beyond `limits.MODEL_GRID_SIDE`) is
        refused, and so is a map for another image size than `image_size` (height, width).
        """
        path = Path(path)

        def record_header(shape: tuple, dtype: np.dtype) -> None:
            if shape != () or dtype.kind != "U" or dtype.itemsize > 4 * limits.MAX_RECORD_CHARS:
                raise ValueError(f"{path}: 'record' is not a JSON text of at most {limits.MAX_RECORD_CHARS:,} "
                                 "characters")

        try:
            record = json.loads(str(npyfile.read_npz(path, {"record": record_header}, _HINT)["record"]))
            geometry = Geometry.from_dict(record["geometry"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read heatmap {path}: its record is not a geometry ({exc or type(exc).__name__})"
                             ) from None
        too_large = limits.image_too_large(geometry.image_width, geometry.image_height)
        if too_large:
            raise ValueError(f"heatmap {path} is for an image of {too_large}")
        if image_size is not None and (geometry.image_height, geometry.image_width) != tuple(image_size):
            raise ValueError(f"heatmap {path} is for a {geometry.image_width}x{geometry.image_height} image, sample is "
                             f"{image_size[1]}x{image_size[0]}")

        def values_header(shape: tuple, dtype: np.dtype) -> None:
            if len(shape) != 2 or 0 in shape:
                raise ValueError(f"heatmap {path} holds an array of shape {shape}, not a non-empty 2-D grid")
            npyfile.numeric(dtype, f"heatmap {path}")
            reason = limits.grid_too_large(shape[0], shape[1], geometry.height, geometry.width)
            if reason:
                raise ValueError(f"heatmap {path}: {reason}")

        values = npyfile.read_npz(path, {"values": values_header})["values"]
        meta = record.get("meta", {}) if isinstance(record, dict) else {}
        return cls(values, geometry, meta if isinstance(meta, dict) else {})

    @classmethod
    def from_original(cls, values: np.ndarray, description: str = "original size") -> "Heatmap":
        """A map already at the original image size (NaN outside the field of view)."""
        values = np.asarray(values)
        return cls(values, Geometry.whole(values.shape[0], values.shape[1], description))


def read_original_map(path: Path, height: int | None = None, width: int | None = None) -> np.ndarray:
    """A bring-your-own `.npy` map at the original image size; its header is checked before its data is read.

    With `height` and `width` the shape must be (height, width); without, the map is bounded by the
    image pixel limit. ValueError (one line naming the file) otherwise.
    """
    path = Path(path)

    def check(shape: tuple, dtype: np.dtype) -> None:
        npyfile.numeric(dtype, str(path))
        if height is not None and width is not None:
            if shape != (height, width):
                raise ValueError(f"{path} has shape {shape}, expected ({height}, {width})")
        elif len(shape) != 2 or 0 in shape:
            raise ValueError(f"{path} holds an array of shape {shape}, not a non-empty 2-D map")
        else:
            reason = limits.image_too_large(shape[1], shape[0])
            if reason:
                raise ValueError(f"{path} is a map of {reason}")

    return npyfile.read_npy(path, check)
