"""SIIM-ACR Pneumothorax Segmentation (Kaggle 2019): pneumothorax masks in its run-length CSV, DICOM images.

Files as distributed: `stage_2_train.csv` (or stage 1's `train-rle.csv`, whose header spells
` EncodedPixels` with a leading space) with columns `ImageId` (the DICOM SOPInstanceUID) and
`EncodedPixels`, and the DICOM images (`<ImageId>.dcm`, nested `<study>/<series>/` in stage 1)
anywhere below the data root (`stage_2_images/`, `dicom-images-train/`). One CSV row per
pneumothorax instance; the rows of one image are united; `-1` marks an image without one.

The run-length text is relative and column-major (`mask_formats.py`); it is converted into COCO
RLE and decoded by pycocotools. Masks are given on the 1024 x 1024 release images, so every sample
has that size and an image of another size is a sample error. One sample per image with a
pneumothorax: id `<ImageId>`, category `pneumothorax`, phrase from `-O prompt` (default
"{finding}" = "pneumothorax"), split `test` (the stage-2 training labels are the public ones).
`-O negatives=keep` also yields the images without one, with an empty mask (for protocols that
score them). Not verified against the Kaggle data page: the row counts of `stage_2_train.csv`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import BenchError
from ..core.ground_truth import MaskSource
from ..core.params import Param
from ..core.samples import Sample
from . import mask_formats
from .paths import index_files
from .public_dataset import PathologyDataset
from .tables import read_csv, require_columns

CSV_NAMES = ("stage_2_train.csv", "train-rle.csv")
RELEASE_SIZE = (1024, 1024)
CATEGORY = "pneumothorax"


class SiimAcrDataset(PathologyDataset):
    """One sample per image with a pneumothorax: the union of its instances' masks."""

    name = "siim-acr-pneumothorax"
    description = ("SIIM-ACR Pneumothorax masks (stage_2_train.csv or train-rle.csv run-length CSV + DICOM images "
                   "under --data-root)")
    options_schema = {
        "negatives": Param(str, "drop", choices=("drop", "keep"),
                           help="'drop' (default): only images with a pneumothorax; 'keep': also the others, "
                                "with an empty mask"),
        "csv": Param(str, help="path of the run-length CSV (default: stage_2_train.csv, else train-rle.csv, "
                               "in the data root)"),
    }
    path_options = frozenset({"csv"})
    root_holds = f"the folder with {CSV_NAMES[0]} and the DICOM images"

    def csv_path(self) -> Path:
        if self.options.get("csv"):
            path = Path(self.options["csv"]).expanduser()
            if not path.is_file():
                raise BenchError(f"SIIM-ACR CSV {path} not found (option csv)")
            return path
        root = self.root()
        for name in CSV_NAMES:
            if (root / name).is_file():
                return root / name
        raise BenchError(f"no {' or '.join(CSV_NAMES)} in {root}; give it with -O csv=PATH")

    def samples(self) -> list[Sample]:
        """Samples in the order of each image's first row in the CSV."""
        csv = self.csv_path()
        table = read_csv(csv)
        table.columns = [c.strip() for c in table.columns]
        require_columns(table, csv, ("ImageId", "EncodedPixels"))
        width, height = RELEASE_SIZE
        runs: dict[str, list[list[int]]] = {}
        for number, (image, text) in enumerate(zip(table["ImageId"].str.strip(), table["EncodedPixels"]), 1):
            if not image:
                raise BenchError(f"{csv}: data row {number}: ImageId is empty")
            try:
                tokens = mask_formats.siim_tokens(text)
                if tokens is not None:
                    mask_formats.siim_counts(tokens, width, height)
            except ValueError as exc:
                raise BenchError(f"{csv}: data row {number} ({image}): {exc}") from None
            runs.setdefault(image, [])
            if tokens is not None:
                runs[image].append(tokens)
        root = self.root()
        files = index_files(root, (".dcm",))
        out = []
        text = self.phrase(CATEGORY)
        for image, instances in runs.items():
            if not instances and self.settings["negatives"] == "drop":
                continue
            if instances:
                mask = np.zeros((height, width), dtype=bool)
                for tokens in instances:
                    mask |= mask_formats.siim_mask(tokens, width, height)
                rle = mask_formats.encode(mask)
            else:
                rle = mask_formats.empty(width, height)
            path = self.image_path(root, f"{image}.dcm", f"{csv}: ImageId", files.get(f"{image}.dcm"))
            out.append(Sample(image, str(path), width, height, CATEGORY, text, (), "test",
                              {"image_id": image, "instances": len(instances)}, MaskSource(rle=rle)))
        return out
