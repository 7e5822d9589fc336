"""NIH ChestX-ray14 box subset: `BBox_List_2017.csv` and the PNG images.

The official box list's header is `Image Index,Finding Label,Bbox [x,y,w,h],,,` (the box header
split over four names, three empty names after it); columns are found by their header names, so a
cleaned header with its columns in another order reads the same. The boxes are given on the
1024 x 1024 release images, so every sample has that size and an image of another size is a
sample error. A Finding Label outside the dataset's eight is an error (option labels=any accepts
it as its own category). There are no report sentences: the phrase is built from the finding.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..core.params import Param
from ..core.samples import Box, Sample
from .base import Dataset
from .tables import read_csv

CSV_NAME = "BBox_List_2017.csv"
#: size of every released ChestX-ray14 image: the boxes are given in its pixels
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


#: accepted (normalised) header names of the image and finding columns
_IMAGE_NAMES = ("image index", "image", "image name", "image id")
_FINDING_NAMES = ("finding label", "finding", "label", "finding labels")
#: accepted (normalised) header names of the box columns
_BOX_NAMES = {"x": ("x", "bbox x", "box x"), "y": ("y", "bbox y", "box y"),
              "w": ("w", "width", "bbox w", "box w"), "h": ("h", "height", "bbox h", "box h")}


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").strip().lower().split())


def _columns(header: list[str], csv: Path) -> list[int]:
    """Positions of image, finding, x, y, w, h from the header row; BenchError if they are not there."""
    names = [_norm(h) for h in header]

    def find(accepted: tuple[str, ...], what: str) -> int:
        hits = [i for i, n in enumerate(names) if n in accepted]
        if len(hits) != 1:
            raise BenchError(f"{csv}: header {','.join(header)!r} has {'no' if not hits else 'more than one'} "
                             f"{what} column (expected Image Index, Finding Label, Bbox [x,y,w,h])")
        return hits[0]

    image, finding = find(_IMAGE_NAMES, "Image Index"), find(_FINDING_NAMES, "Finding Label")
    official = [i for i, n in enumerate(names) if n.startswith("bbox [")]  # split over 4 names, or 1 and 3 empty
    if len(official) == 1:  # the release's header: the box's four values from the "Bbox [x,y,w,h]" column on
        start = official[0]
        if names[start + 1:start + 4] not in (["y", "w", "h]"], ["", "", ""]):
            raise BenchError(f"{csv}: header {','.join(header)!r}: the box columns after {header[start]!r} "
                             "must be y, w, h")
        return [image, finding, start, start + 1, start + 2, start + 3]
    return [image, finding, *(find(_BOX_NAMES[k], f"box {k}") for k in ("x", "y", "w", "h"))]


def read_box_list(csv: Path) -> pd.DataFrame:
    """The box list as columns image, finding, x, y, w, h (floats); BenchError naming the problem.

    Columns are found by their header names (the release's `Bbox [x,y,w,h],,,` split header, or
    one name per value: x, y, w, h); a file without a header is read in the release's order.
    """
    if not csv.is_file():
        raise BenchError(f"{csv} not found (expected the ChestX-ray14 box list {CSV_NAME})")
    raw = read_csv(csv, header=None, skip_blank_lines=True)
    if raw.shape[1] < 6:
        raise BenchError(f"{csv}: expected 6 columns (Image Index, Finding Label, x, y, w, h), found {raw.shape[1]}")
    raw = raw.apply(lambda col: col.str.strip())
    positions = list(range(6))
    if len(raw) and not all(_is_number(v) for v in raw.iloc[0, 2:6]):
        positions = _columns(list(raw.iloc[0]), csv)
        raw = raw.iloc[1:]
    table = raw.iloc[:, positions].copy()
    table.columns = ["image", "finding", "x", "y", "w", "h"]
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


def category_of(label: str) -> str:
    """The category of a Finding Label: lower case, `_` read as a space (`Pleural_Effusion`)."""
    return _norm(label)


#: the Finding Labels as the box list spells them
_LABELS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltrate", "Mass", "Nodule", "Pneumonia", "Pneumothorax")


class ChestXray14Dataset(Dataset):
    """One sample per (image, finding): the union of that finding's boxes, phrase from a template."""

    name = "chestx-ray14"
    description = "NIH ChestX-ray14 box subset (BBox_List_2017.csv + PNGs under --data-root or BENCH_NIH_ROOT)"
    options_schema = {"template": Param(str, "{finding}", help="phrase template over {finding} (default '{finding}', "
                                                                "with readable names such as 'pleural effusion' for Effusion)"),
                      "labels": Param(str, "known", choices=("known", "any"),
                                      help="'known' (default: a Finding Label outside the 8 of the box list is an error) "
                                           "or 'any' (each other label becomes its own category)")}

    def __init__(self, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, options)
        self.template = self.settings["template"]
        try:
            probe = self.template.format(finding="\0")
        except (KeyError, IndexError, ValueError) as exc:
            raise BenchError(f"dataset chestx-ray14: template {self.template!r} is not valid: "
                             f"use {{finding}} as its only field ({exc})") from None
        if "\0" not in probe:
            raise BenchError(f"dataset chestx-ray14: template {self.template!r} does not contain {{finding}}")
        self.labels = self.settings["labels"]

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
        for row, (image, finding, x, y, w, h) in enumerate(table.itertuples(index=False), start=1):
            key = (image, category_of(finding))
            if key[1] not in PHRASES and self.labels == "known":
                raise BenchError(f"{root / CSV_NAME}: data row {row} ({image}) has Finding Label {finding!r}, not one "
                                 f"of {', '.join(_LABELS)}; fix the row, or accept other labels with -O labels=any")
            groups.setdefault(key, []).append((x, y, w, h))
            labels.setdefault(key, finding)
        self.merge_duplicates(groups, str(root / CSV_NAME))
        out = []
        for (image, category), boxes in groups.items():
            path = next((f / image for f in folders if (f / image).is_file()), root / "images" / image)
            path = self.image_path(root, image, f"{root / CSV_NAME}: Image Index", path)
            width, height = RELEASE_SIZE
            out.append(Sample(f"{Path(image).stem}-{category.replace(' ', '_')}", str(path), width, height,
                              category, self.phrase(category), tuple(boxes), "test",
                              {"image": image, "finding_label": labels[(image, category)]}))
        return out
