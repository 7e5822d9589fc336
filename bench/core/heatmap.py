"""The heatmap contract: a method's native map plus the geometry that places it on the image."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import atomic
from .geometry import Geometry


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
    def load(cls, path: Path) -> "Heatmap":
        """Read a map written by `save`; ValueError (one line naming the file) for anything else."""
        try:
            with np.load(Path(path), allow_pickle=False) as data:
                missing = [k for k in ("values", "record") if k not in data.files]
                if missing:
                    raise ValueError(f"{path} has no {' or '.join(repr(k) for k in missing)} array (found: "
                                     f"{', '.join(data.files) or 'none'}); a heatmap written by `bench run` holds "
                                     "both, and maps at the original size go in as .npy files")
                record = json.loads(str(data["record"]))
                values = data["values"]
            geometry = Geometry.from_dict(record["geometry"])
        except (OSError, EOFError, zipfile.BadZipFile, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read heatmap {path}: {exc or type(exc).__name__}") from None
        return cls(values, geometry, record.get("meta", {}))

    @classmethod
    def from_original(cls, values: np.ndarray, description: str = "original size") -> "Heatmap":
        """A map already at the original image size (NaN outside the field of view)."""
        values = np.asarray(values)
        return cls(values, Geometry.whole(values.shape[0], values.shape[1], description))
