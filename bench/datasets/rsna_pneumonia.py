"""RSNA Pneumonia Detection Challenge (Kaggle 2018): lung-opacity boxes on DICOM images.

Files as distributed: `stage_2_train_labels.csv` (or stage 1's `stage_1_train_labels.csv`) with
columns `patientId,x,y,width,height,Target` and the images `stage_2_train_images/<patientId>.dcm`
(or `stage_1_train_images/`, or anywhere below the data root). A box is its upper-left corner
(x, y) with width and height, in pixels of the 1024 x 1024 release images; a patient has one row
per box, and one row with empty coordinates and `Target` 0 when there is none.

One sample per patient with a box (`Target` 1): id `<patientId>`, the union of its boxes, category
`pneumonia`, phrase from `-O prompt` (default "{finding}" = "pneumonia"), split `test` (the
training labels are the public ones). Patients without a box have no ground truth to score and
are left out. Every image must have the 1024 x 1024 release size (a sample error otherwise).
`stage_2_detailed_class_info.csv` is not read: a box is always its class "Lung Opacity".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..core.params import Param
from ..core.samples import Box, Sample
from .paths import index_files
from .public_dataset import PathologyDataset
from .tables import read_csv, require_columns

CSV_NAMES = ("stage_2_train_labels.csv", "stage_1_train_labels.csv")
IMAGE_FOLDERS = ("stage_2_train_images", "stage_1_train_images")
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
RELEASE_SIZE = (1024, 1024)
CATEGORY = "pneumonia"


class RsnaPneumoniaDataset(PathologyDataset):
    """One sample per patient with boxes: the union of its boxes."""

    name = "rsna-pneumonia"
    description = ("RSNA Pneumonia Detection boxes (stage_2_train_labels.csv + DICOM images under --data-root)")
    options_schema = {
        "csv": Param(str, help="path of the labels CSV (default: stage_2_train_labels.csv, else "
                               "stage_1_train_labels.csv, in the data root)"),
    }
    path_options = frozenset({"csv"})
    root_holds = f"the folder with {CSV_NAMES[0]} and {IMAGE_FOLDERS[0]}/"

    def csv_path(self) -> Path:
        if self.options.get("csv"):
            path = Path(self.options["csv"]).expanduser()
            if not path.is_file():
                raise BenchError(f"RSNA labels CSV {path} not found (option csv)")
            return path
        for name in CSV_NAMES:
            if (self.root() / name).is_file():
                return self.root() / name
        raise BenchError(f"no {' or '.join(CSV_NAMES)} in {self.root()}; give it with -O csv=PATH")

    def samples(self) -> list[Sample]:
        """Samples in the order of each patient's first row in the CSV."""
        csv = self.csv_path()
        table = read_csv(csv)
        table.columns = [c.strip() for c in table.columns]
        require_columns(table, csv, COLUMNS)
        target = table["Target"].str.strip()
        bad = ~target.isin(("0", "1")).to_numpy()
        if bad.any():
            i = int(bad.argmax())
            raise BenchError(f"{csv}: data row {i + 1}: Target is {table['Target'].iloc[i]!r}, not 0 or 1")
        positive = table[target == "1"]
        values = {c: pd.to_numeric(positive[c], errors="coerce").to_numpy(dtype=float) for c in COLUMNS[1:5]}
        groups: dict[str, list[Box]] = {}
        for k, (index, pid) in enumerate(zip(positive.index, positive["patientId"].str.strip())):
            box = tuple(values[c][k] for c in COLUMNS[1:5])
            if not pid:
                raise BenchError(f"{csv}: data row {index + 1}: patientId is empty")
            if not np.all(np.isfinite(box)):
                raise BenchError(f"{csv}: data row {index + 1} ({pid}): Target 1 without a numeric box "
                                 f"x, y, width, height")
            groups.setdefault(pid, []).append(box)  # type: ignore[arg-type]
        self.merge_duplicates(groups, str(csv))
        root = self.root()
        files: dict[str, Path] | None = None  # every DICOM below the root, indexed only when one is elsewhere
        width, height = RELEASE_SIZE
        text = self.phrase(CATEGORY)
        out = []
        for pid, boxes in groups.items():
            name = f"{pid}.dcm"
            found = next((root / f / name for f in IMAGE_FOLDERS if (root / f / name).is_file()), None)
            if found is None:
                files = index_files(root, (".dcm",)) if files is None else files
                found = files.get(name)
            path = self.image_path(root, name, f"{csv}: patientId", found)
            out.append(Sample(pid, str(path), width, height, CATEGORY, text, tuple(boxes), "test",
                              {"patient_id": pid}))
        return out
