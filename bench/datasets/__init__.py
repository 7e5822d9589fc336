"""Dataset registry: names map to lazily imported classes.

Installed packages add datasets under the entry-point group `bench.datasets`
(`name = "package.module:Class"`, a `bench.datasets.base.Dataset` subclass). A name ending in
`.csv` or `.jsonl` is a sample table read as a dataset (`file_dataset.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from ..core.registry import registered, resolve
from .base import Dataset

ENTRY_POINTS = "bench.datasets"

DATASETS: dict[str, str] = {
    "phantom": "bench.datasets.phantom:PhantomDataset",
    "chestx-ray14": "bench.datasets.chestxray14:ChestXray14Dataset",
    "ms-cxr": "bench.datasets.ms_cxr:MsCxrDataset",
    "ms-cxr-loc": "bench.datasets.ms_cxr_loc:MsCxrLocDataset",
    "vindr-cxr": "bench.datasets.vindr_cxr:VindrCxrDataset",
    "chexlocalize": "bench.datasets.chexlocalize:ChexlocalizeDataset",
    "rsna-pneumonia": "bench.datasets.rsna_pneumonia:RsnaPneumoniaDataset",
    "siim-acr-pneumothorax": "bench.datasets.siim_acr:SiimAcrDataset",
    "chestx-det": "bench.datasets.chestx_det:ChestXDetDataset",
    "padchest-gr": "bench.datasets.padchest_gr:PadchestGrDataset",
}


def dataset_class(name: str) -> type[Dataset]:
    """The class registered under `name` (built in or by an installed package); BenchError for an unknown name."""
    return resolve(DATASETS, name, "dataset", ENTRY_POINTS, Dataset)


def dataset_names() -> list[str]:
    """Every dataset name: built in, and registered by installed packages."""
    return sorted(registered(DATASETS, ENTRY_POINTS))


def get_dataset(name: str, data_root: Path | None = None, options: Mapping[str, str] | None = None,
                allow_outside_root: bool = False) -> Dataset:
    """Instantiate the dataset `name` with its data root and options.

    `allow_outside_root` lets its table name images outside the data root (absolute paths, `..`,
    links leading elsewhere), which are refused otherwise. A `name` ending in .csv or .jsonl is the
    path of a sample table (`bench.datasets.file_dataset`).
    """
    from .file_dataset import FileDataset, is_dataset_file

    if is_dataset_file(name):
        dataset: Dataset = FileDataset(Path(name).expanduser(), data_root, options)
        dataset.allow_outside_root = bool(allow_outside_root)
        return dataset
    dataset = dataset_class(name)(data_root, options)
    dataset.allow_outside_root = bool(allow_outside_root)
    return dataset
