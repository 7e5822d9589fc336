"""NIH ChestX-ray14 box subset: `BBox_List_2017.csv` and the PNG images.

The official box list's header is `Image Index,Finding Label,Bbox [x,y,w,h],,,` (the box header
split over four names, three empty names after it), so columns are read by position: image,
finding, x, y, w, h. A cleaned header, or none, reads the same. There are no report sentences:
the phrase is built from the finding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..core.samples import Box, Sample
from .base import Dataset

CSV_NAME = "BBox_List_2017.csv"
#: size of every released ChestX-ray14 image, used when an image file is missing
RELEASE_SIZE = (1024, 1024)
#: readable phrase of each (lower-cased) NIH finding label
PHRASES: Mapping[str, str] = {
    "atelectasis": "atelectasis",
    "cardiomegaly": "cardiomegaly",
    "effusion": "pleural effusion",
    "infiltrate": "pulmonary infiltrate",
    "mass": "lung mass",
    "nodule": "lung nodule",
    "pneumonia": "pneumonia",
    "pneumothorax": "pneumothorax",
}


def read_box_list(csv: Path) -> pd.DataFrame:
    """The box list as columns image, finding, x, y, w, h (floats); BenchError naming the problem."""
    if not csv.is_file():
        raise BenchError(f"{csv} not found (expected the ChestX-ray14 box list {CSV_NAME})")
    try:
        raw = pd.read_csv(csv, header=None, dtype=str, skip_blank_lines=True, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise BenchError(f"cannot read {csv}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if raw.shape[1] < 6:
        raise BenchError(f"{csv}: expected 6 columns (Image Index, Finding Label, x, y, w, h), found {raw.shape[1]}")
    table = raw.iloc[:, :6].copy()
    table.columns = ["image", "finding", "x", "y", "w", "h"]
    table = table.apply(lambda col: col.str.strip())
    if len(table) and not _is_number(table.iloc[0]["x"]):
        table = table.iloc[1:]  # the header row
    table = table[(table["image"] != "") | (table["finding"] != "")].reset_index(drop=True)
    for col, label in (("image", "Image Index"), ("finding", "Finding Label")):
        empty = (table[col] == "").to_numpy()
        if empty.any():
            raise BenchError(f"{csv}: column {label} is empty in data row {int(empty.argmax()) + 1}")
    for col in ("x", "y", "w", "h"):
        values = pd.to_numeric(table[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(bad.argmax())
            raise BenchError(f"{csv}: box column {col} is not a number in data row {i + 1} "
                             f"({table['image'].iloc[i]}): {table[col].iloc[i]!r}")
        table[col] = values
    return table.reset_index(drop=True)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header without decoding pixels; the release size if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError):
        return RELEASE_SIZE


class ChestXray14Dataset(Dataset):
    """One sample per (image, finding): the union of that finding's boxes, phrase from a template."""

    name = "chestx-ray14"
    description = "NIH ChestX-ray14 box subset (BBox_List_2017.csv + PNGs under --data-root or BENCH_NIH_ROOT)"
    options_help = {"template": "phrase template over {finding} (default '{finding}', with readable names "
                                "such as 'pleural effusion' for Effusion)"}

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, options)
        self.template = self.option("template", "{finding}")
        try:
            probe = self.template.format(finding="\0")
        except (KeyError, IndexError, ValueError) as exc:
            raise BenchError(f"dataset chestx-ray14: template {self.template!r} is not valid: "
                             f"use {{finding}} as its only field ({exc})") from None
        if "\0" not in probe:
            raise BenchError(f"dataset chestx-ray14: template {self.template!r} does not contain {{finding}}")

    def root(self) -> Path:
        """The folder holding BBox_List_2017.csv: --data-root, else BENCH_NIH_ROOT."""
        if self.data_root is not None:
            return self.data_root
        env = os.environ.get("BENCH_NIH_ROOT")
        if not env:
            raise BenchError("chestx-ray14 needs --data-root (the folder with BBox_List_2017.csv) or BENCH_NIH_ROOT")
        return Path(env)

    def phrase(self, finding: str) -> str:
        """The phrase of a lower-cased finding label under the template."""
        return self.template.format(finding=PHRASES.get(finding, finding))

    def samples(self) -> list[Sample]:
        """One test sample per (image, finding), in the order of first appearance in the box list."""
        root = self.root()
        table = read_box_list(root / CSV_NAME)
        folders = [root / "images", root, *sorted(p for p in root.glob("images_*/images") if p.is_dir())]
        groups: dict[tuple[str, str], list[Box]] = {}
        labels: dict[tuple[str, str], str] = {}
        for image, finding, x, y, w, h in table.itertuples(index=False):
            key = (image, finding.lower())
            groups.setdefault(key, []).append((x, y, w, h))
            labels.setdefault(key, finding)
        out = []
        for (image, category), boxes in groups.items():
            path = next((f / image for f in folders if (f / image).is_file()), root / "images" / image)
            width, height = image_size(path) if path.is_file() else RELEASE_SIZE
            out.append(Sample(f"{Path(image).stem}-{category.replace(' ', '_')}", str(path), width, height,
                              category, self.phrase(category), tuple(boxes), "test",
                              {"image": image, "finding_label": labels[(image, category)]}))
        return out
