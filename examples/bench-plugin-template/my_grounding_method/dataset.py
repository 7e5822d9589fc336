"""An example dataset: the harness's procedural phantom, small, under a name of its own.

A real dataset subclasses bench.Dataset, sets `name`, `description` and `options_schema`, and
returns bench.Sample records (image path, size, category, phrase, boxes in original pixels) from
`samples()`; `load_image` reads one radiograph (the default reads `sample.image_path`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

import bench


class TinyPhantom(bench.Dataset):
    """A few phantom images: their samples and pixels come from the built-in `phantom` dataset."""

    name = "tiny-phantom"
    description = "Example plugin dataset: a small procedural phantom (12 test and 12 train images by default)."
    options_schema = {"n_test": bench.Param(int, 12, ge=0, help="test images [12]"),
                      "n_train": bench.Param(int, 12, ge=0, help="train images [12]")}

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, options)  # checks the -O options: self.settings holds them, typed
        self.source = bench.load_dataset("phantom", data_root, {"n_test": self.settings["n_test"],
                                                                "n_train": self.settings["n_train"]})

    def samples(self) -> list[bench.Sample]:
        return self.source.samples()

    def load_image(self, sample: bench.Sample) -> np.ndarray:
        return self.source.load_image(sample)
