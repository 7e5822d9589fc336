"""MS-CXR: the official phrase-grounding CSV (v1.0.0 or v1.1.0) with MIMIC-CXR-JPG images.

One CSV row per box; a sample is one (dicom_id, label_text) group with its boxes united. v1.1.0
adds a `split` column (train/val/test); with v1.0.0 every sample is "test". Boxes are parsed as
given: a zero-area or outside box is left for `validate_sample` to report, never dropped here.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..core.params import Param
from ..core.samples import Box, Sample
from .base import Dataset
from .tables import read_csv, require_columns

COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height")
NUMERIC = ("x", "y", "w", "h", "image_width", "image_height")
SPLITS = ("train", "val", "test")
CSV_PATTERN = re.compile(r"^MS_CXR_Local_Alignment_v(\d+(?:\.\d+)*)\.csv$")
#: folders never searched for the CSV (MIMIC-CXR-JPG's image tree is huge)
_SKIP = {"files"}


def sample_id(dicom_id: str, label_text: str) -> str:
    """`<dicom_id>-<first 8 hex digits of sha1(label_text)>`: stable and unique per phrase."""
    return f"{dicom_id}-{hashlib.sha1(label_text.encode('utf-8')).hexdigest()[:8]}"


def find_csv(root: Path, depth: int = 3) -> Path | None:
    """The newest MS_CXR_Local_Alignment_v*.csv in `root` or below it (up to `depth` levels)."""
    found: list[tuple[tuple[int, ...], str, Path]] = []
    level = [root]
    for _ in range(depth + 1):
        below = []
        for folder in level:
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                m = CSV_PATTERN.match(entry.name)
                if m and entry.is_file():
                    found.append((tuple(int(v) for v in m.group(1).split(".")), entry.path, Path(entry.path)))
                elif entry.is_dir() and entry.name not in _SKIP and not entry.name.startswith("."):
                    below.append(Path(entry.path))
        level = below
    return max(found)[2] if found else None


def read_table(csv: Path) -> pd.DataFrame:
    """The CSV with its columns checked; BenchError naming the file and the column at fault."""
    table = read_csv(csv)
    table.columns = [c.strip() for c in table.columns]
    require_columns(table, csv, COLUMNS)
    for col in ("dicom_id", "path", "category_name", *NUMERIC):
        table[col] = table[col].str.strip()
    for col in COLUMNS:
        empty = (table[col].str.strip() == "").to_numpy()
        if empty.any():
            raise BenchError(f"{csv}: column {col!r} is empty in data row {int(empty.argmax()) + 1}")
    for col in NUMERIC:
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(bad.argmax())
            raise BenchError(f"{csv}: column {col!r} is not a number in data row {i + 1}: {table[col].iloc[i]!r}")
        table[col] = values
    if "split" in table.columns:
        table["split"] = table["split"].str.strip().str.lower()
        bad = ~table["split"].isin(SPLITS).to_numpy()
        if bad.any():
            i = int(bad.argmax())
            raise BenchError(f"{csv}: column 'split' has {table['split'].iloc[i]!r} in data row {i + 1} "
                             f"(expected train, val or test)")
    return table


class MsCxrDataset(Dataset):
    """One sample per (dicom_id, label_text), the union of that phrase's boxes."""

    name = "ms-cxr"
    description = ("MS-CXR phrase grounding (official CSV v1.0.0/v1.1.0 + MIMIC-CXR-JPG under --data-root "
                   "or BENCH_MS_CXR_ROOT)")
    options_schema = {"csv": Param(str, help="path of the MS-CXR CSV (default: newest MS_CXR_Local_Alignment_v*.csv "
                                             "under the data root)"),
                      "images": Param(str, help="image root the CSV's `path` column is relative to (default: the data root)")}
    path_options = frozenset({"csv", "images"})

    def root(self) -> Path:
        """The MIMIC-CXR-JPG root: --data-root, else BENCH_MS_CXR_ROOT."""
        if self.data_root is not None:
            return self.data_root
        env = os.environ.get("BENCH_MS_CXR_ROOT")
        if not env:
            raise BenchError("ms-cxr needs --data-root (the MIMIC-CXR-JPG root holding files/) or BENCH_MS_CXR_ROOT")
        return Path(env)

    def csv_path(self) -> Path:
        """Option csv, else the newest MS_CXR_Local_Alignment_v*.csv in the data root or below it."""
        if "csv" in self.options:
            path = Path(self.options["csv"]).expanduser()
            if not path.is_file():
                raise BenchError(f"MS-CXR CSV {path} not found (option csv)")
            return path
        root = self.root()
        if not root.is_dir():
            raise BenchError(f"ms-cxr data root {root} is not a folder")
        found = find_csv(root)
        if found is None:
            raise BenchError(f"no MS_CXR_Local_Alignment_v*.csv in {root} or below it; give it with -O csv=PATH")
        return found

    def image_root(self) -> Path:
        """Option images, else the data root."""
        images = self.options.get("images")
        return Path(images).expanduser() if images else self.root()

    def samples(self) -> list[Sample]:
        """Samples in the order of their first row in the CSV."""
        csv = self.csv_path()
        table = read_table(csv)
        images = self.image_root()
        has_split = "split" in table.columns
        groups: dict[tuple[str, str], list[Box]] = {}
        firsts: dict[tuple[str, str], tuple] = {}
        for row in table.itertuples(index=False):
            key = (row.dicom_id, row.label_text)
            groups.setdefault(key, []).append((row.x, row.y, row.w, row.h))
            firsts.setdefault(key, row)
        self.merge_duplicates(groups, str(csv))
        out = []
        for (dicom_id, text), boxes in groups.items():
            first = firsts[(dicom_id, text)]
            path = self.image_path(images, first.path, f"{csv}: path")
            out.append(Sample(sample_id(dicom_id, text), str(path), int(round(first.image_width)),
                              int(round(first.image_height)), first.category_name.lower(), text, tuple(boxes),
                              first.split if has_split else "test", {"dicom_id": dicom_id}))
        return out
