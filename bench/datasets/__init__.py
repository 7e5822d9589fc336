"""Dataset registry: names map to lazily imported classes."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..core.registry import resolve
from .base import Dataset

DATASETS: dict[str, str] = {
    "phantom": "bench.datasets.phantom:PhantomDataset",
    "chestx-ray14": "bench.datasets.chestxray14:ChestXray14Dataset",
    "ms-cxr": "bench.datasets.ms_cxr:MsCxrDataset",
    "ms-cxr-loc": "bench.datasets.ms_cxr_loc:MsCxrLocDataset",
    "vindr-cxr": "bench.datasets.vindr_cxr:VindrCxrDataset",
}


def dataset_class(name: str) -> type[Dataset]:
    """The class registered under `name`; BenchError for an unknown name."""
    return resolve(DATASETS, name, "dataset")


def get_dataset(name: str, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> Dataset:
    """Instantiate the dataset `name` with its data root and options."""
    return dataset_class(name)(data_root, options)
