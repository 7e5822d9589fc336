"""MS-CXR: the official phrase-grounding CSV (v1.0.0 or v1.1.0) with MIMIC-CXR-JPG images."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import pandas as pd

from ..errors import BenchError
from ..samples import Sample
from .base import Dataset

COLUMNS = ("dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height")


class MsCxrDataset(Dataset):
    """One sample per (dicom_id, label_text), the union of that phrase's boxes."""

    name = "ms-cxr"
    description = "MS-CXR phrase grounding (official CSV v1.0.0/v1.1.0 + MIMIC-CXR-JPG under --data-root or BENCH_MS_CXR_ROOT)"
    options_help = {"csv": "path of the MS-CXR CSV (default: newest MS_CXR_Local_Alignment_v*.csv under the data root)",
                    "images": "image root the CSV's `path` column is relative to (default: the data root)"}

    def root(self) -> Path:
        root = self.data_root or (Path(os.environ["BENCH_MS_CXR_ROOT"]) if os.environ.get("BENCH_MS_CXR_ROOT") else None)
        if root is None:
            raise BenchError("ms-cxr needs --data-root (the MIMIC-CXR-JPG root holding files/) or BENCH_MS_CXR_ROOT")
        return root

    def csv_path(self) -> Path:
        if "csv" in self.options:
            path = Path(self.options["csv"])
            if not path.is_file():
                raise BenchError(f"MS-CXR CSV {path} not found")
            return path
        root = self.root()
        found = [p for pattern in ("MS_CXR_Local_Alignment_v*.csv", "*/MS_CXR_Local_Alignment_v*.csv",
                                   "*/*/MS_CXR_Local_Alignment_v*.csv") for p in root.glob(pattern)]
        if not found:
            raise BenchError(f"no MS_CXR_Local_Alignment_v*.csv under {root}; give it with -O csv=PATH")
        return max(found, key=lambda p: tuple(int(v) for v in p.stem.rsplit("_v", 1)[1].split(".") if v.isdigit()))

    def samples(self) -> list[Sample]:
        csv = self.csv_path()
        images = Path(self.options.get("images") or self.root())
        try:
            table = pd.read_csv(csv, dtype={"dicom_id": str, "label_text": str, "path": str})
        except (OSError, pd.errors.ParserError) as exc:
            raise BenchError(f"cannot read {csv}: {exc}") from None
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise BenchError(f"{csv}: missing column {missing[0]!r}")
        for col in ("x", "y", "w", "h", "image_width", "image_height"):
            if not pd.api.types.is_numeric_dtype(table[col]):
                raise BenchError(f"{csv}: column {col!r} has non-numeric values")
        groups: OrderedDict[tuple[str, str], list] = OrderedDict()
        for row in table.itertuples(index=False):
            groups.setdefault((row.dicom_id, row.label_text), []).append(row)
        out = []
        for (dicom_id, text), rows in groups.items():
            first = rows[0]
            boxes = tuple((float(r.x), float(r.y), float(r.w), float(r.h)) for r in rows)
            split = str(getattr(first, "split", "test")) if "split" in table.columns else "test"
            digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
            out.append(Sample(f"{dicom_id}-{digest}", str(images / first.path), int(first.image_width),
                              int(first.image_height), str(first.category_name).strip().lower(), text, boxes,
                              split, {"dicom_id": dicom_id}))
        return out
