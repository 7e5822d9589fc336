"""An example dataset: the harness's procedural phantom, small, under a name of its own.

A real dataset subclasses bench.Dataset, sets `name`, `description` and `options_help`, and
returns bench.Sample records (image path, size, category, phrase, boxes in original pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from bench.datasets.phantom import PhantomDataset


class TinyPhantom(PhantomDataset):
    """Twelve test and twelve train phantom images (options as the phantom's)."""

    name = "tiny-phantom"
    description = "Example plugin dataset: a small procedural phantom (12 test, 12 train images)."

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, {"n_test": "12", "n_train": "12", **dict(options or {})})
