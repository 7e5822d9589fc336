"""NIH ChestX-ray14 box subset: `BBox_List_2017.csv` and the PNG images."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pandas as pd

from ..errors import BenchError
from ..samples import Sample
from .base import Dataset

PHRASES = {
    "atelectasis": "atelectasis",
    "cardiomegaly": "cardiomegaly",
    "effusion": "pleural effusion",
    "infiltrate": "pulmonary infiltrate",
    "mass": "lung mass",
    "nodule": "lung nodule",
    "pneumonia": "pneumonia",
    "pneumothorax": "pneumothorax",
}


class ChestXray14Dataset(Dataset):
    """One sample per (image, finding): the union of that finding's boxes, phrase from a template."""

    name = "chestx-ray14"
    description = "NIH ChestX-ray14 box subset (BBox_List_2017.csv + PNGs under --data-root or BENCH_NIH_ROOT)"
    options_help = {"template": "phrase template over {finding} (default: '{finding}' with readable finding names)"}

    def root(self) -> Path:
        root = self.data_root or (Path(os.environ["BENCH_NIH_ROOT"]) if os.environ.get("BENCH_NIH_ROOT") else None)
        if root is None:
            raise BenchError("chestx-ray14 needs --data-root (the folder with BBox_List_2017.csv) or BENCH_NIH_ROOT")
        return root

    def _image_path(self, root: Path, name: str) -> Path:
        for candidate in (root / "images" / name, root / name):
            if candidate.is_file():
                return candidate
        for candidate in sorted(root.glob(f"images_*/images/{name}")):
            return candidate
        return root / "images" / name

    def samples(self) -> list[Sample]:
        root = self.root()
        csv = root / "BBox_List_2017.csv"
        if not csv.is_file():
            raise BenchError(f"{csv} not found")
        raw = pd.read_csv(csv, header=0)
        if raw.shape[1] < 6:
            raise BenchError(f"{csv}: expected columns Image Index, Finding Label, x, y, w, h; found {raw.shape[1]} columns")
        table = raw.iloc[:, :6]
        table.columns = ["image", "finding", "x", "y", "w", "h"]
        try:
            boxes = table[["x", "y", "w", "h"]].astype(float)
        except ValueError:
            raise BenchError(f"{csv}: box columns x, y, w, h are not all numbers") from None
        template = self.option("template", "{finding}")
        groups: OrderedDict[tuple[str, str], list] = OrderedDict()
        for (image, finding), box in zip(table[["image", "finding"]].itertuples(index=False), boxes.itertuples(index=False)):
            groups.setdefault((str(image), str(finding).strip().lower()), []).append(tuple(box))
        out = []
        for (image, finding), bxs in groups.items():
            path = self._image_path(root, image)
            width, height = _size(path)
            phrase = template.format(finding=PHRASES.get(finding, finding))
            out.append(Sample(f"{Path(image).stem}-{finding.replace(' ', '_')}", str(path), width, height,
                              finding, phrase, tuple(bxs), "test", {"image": image}))
        return out


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header; the release's 1024 x 1024 when the file is missing."""
    from PIL import Image

    if not path.is_file():
        return 1024, 1024
    try:
        with Image.open(path) as img:
            return img.size
    except OSError:
        return 1024, 1024
