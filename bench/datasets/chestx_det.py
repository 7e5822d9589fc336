"""ChestX-Det (Deepwise-AILab): polygons and boxes of 13 findings on a renamed ChestX-ray14 subset.

Files as distributed: `ChestX_Det_train.json` and `ChestX_Det_test.json` (in the GitHub repository
Deepwise-AILab/ChestX-Det-Dataset) and the PNG images of `train_data.zip` / `test_data.zip`,
anywhere below the data root (found by file name). Each JSON is a list of
`{"file_name": "36302.png", "syms": [...], "boxes": [[x1, y1, x2, y2], ...], "polygons": [[[x, y], ...], ...]}`
with `syms`, `boxes` and `polygons` parallel; box corners are inclusive pixels (a box of x1 = x2 is
one pixel wide), so a box becomes (x1, y1, x2 - x1 + 1, y2 - y1 + 1). File names are Deepwise's
numbers, not NIH ChestX-ray14 names.

One sample per (image, finding): id `<file stem>-<finding with _>`, category the finding in lower
case, phrase from `-O prompt` (default "{finding}" with the finding in lower case), split `train`
or `test` by file. Ground truth (`-O gt`): `mask` (default) is the union of the finding's polygons,
filled with their boundary (`mask_formats.py`), with its boxes kept as the description; `boxes`
is the union of the boxes only. ChestX-Det10's `train.json` / `test.json` (boxes, no polygons) read
with `-O gt=boxes -O train=train.json -O test=test.json`. The image size is read from each PNG's
header (the boxes span 1-1022, consistent with 1024 x 1024 images; not checked against every image).
"""

from __future__ import annotations

import math
from pathlib import Path

from ..core.errors import BenchError
from ..core.ground_truth import MaskSource
from ..core.params import Param
from ..core.samples import Box, Sample
from . import mask_formats
from .paths import index_files
from .public_dataset import PathologyDataset, image_size, read_json

FILES = {"train": "ChestX_Det_train.json", "test": "ChestX_Det_test.json"}
#: the 13 findings as the JSON spells them
FINDINGS = ("Atelectasis", "Calcification", "Cardiomegaly", "Consolidation", "Diffuse Nodule", "Effusion",
            "Emphysema", "Fibrosis", "Fracture", "Mass", "Nodule", "Pleural Thickening", "Pneumothorax")


class ChestXDetDataset(PathologyDataset):
    """One sample per (image, finding): the union of that finding's polygons (or boxes)."""

    name = "chestx-det"
    description = ("ChestX-Det polygons and boxes of 13 findings (ChestX_Det_{train,test}.json + PNG images "
                   "under --data-root)")
    options_schema = {
        "gt": Param(str, "mask", choices=("mask", "boxes"),
                    help="'mask' (default): the filled polygons; 'boxes': the boxes only"),
        "train": Param(str, FILES["train"], help=f"train annotation file in the data root (default {FILES['train']})"),
        "test": Param(str, FILES["test"], help=f"test annotation file in the data root (default {FILES['test']})"),
    }
    root_holds = f"the folder with {FILES['train']}, {FILES['test']} and the PNG images"

    def samples(self) -> list[Sample]:
        """Train samples, then test samples, each in file order, findings in order of first appearance."""
        root = self.root()
        files = index_files(root, (".png",))
        out: list[Sample] = []
        for split in ("train", "test"):
            path = root / self.settings[split]
            if not path.is_file() and split == "train" and (root / self.settings["test"]).is_file():
                continue  # the test file alone is enough to score
            entries = read_json(path, f"ChestX-Det {split} annotations")
            if not isinstance(entries, list):
                raise BenchError(f"{path}: expected a JSON list of images, found {type(entries).__name__}")
            for number, entry in enumerate(entries, 1):
                out.extend(self._entry(entry, f"{path}: entry {number}", split, root, files))
        return out

    def _entry(self, entry: object, where: str, split: str, root: Path, files: dict[str, Path]) -> list[Sample]:
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            raise BenchError(f"{where}: not an object with a file_name")
        name = entry["file_name"]
        where = f"{where} ({name})"
        syms, boxes = entry.get("syms", []), entry.get("boxes", [])
        polygons = entry.get("polygons")
        want_mask = self.settings["gt"] == "mask"
        if not isinstance(syms, list) or not isinstance(boxes, list) or len(syms) != len(boxes):
            raise BenchError(f"{where}: syms and boxes are not lists of one length")
        if want_mask and (not isinstance(polygons, list) or len(polygons) != len(syms)):
            raise BenchError(f"{where}: polygons {'missing' if polygons is None else 'not one per finding'} "
                             "(ChestX-Det10 has none: use -O gt=boxes)")
        if not syms:
            return []
        path = self.image_path(root, name, f"{where}: file_name", files.get(Path(name).name))
        width, height = image_size(path, where)
        grouped: dict[str, tuple[list[Box], list]] = {}
        for k, sym in enumerate(syms):
            if not isinstance(sym, str) or not sym.strip():
                raise BenchError(f"{where}: finding {k + 1} has no name")
            box = boxes[k]
            if (not isinstance(box, list) or len(box) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
                raise BenchError(f"{where}: box {box!r} of {sym} is not [x1, y1, x2, y2] numbers")
            x1, y1, x2, y2 = (float(v) for v in box)
            if x2 < x1 or y2 < y1:
                raise BenchError(f"{where}: box {box!r} of {sym} has x2 < x1 or y2 < y1")
            boxes_of, polys_of = grouped.setdefault(sym.strip(), ([], []))
            boxes_of.append((x1, y1, x2 - x1 + 1, y2 - y1 + 1))
            if want_mask:
                try:
                    polys_of.append(mask_formats.polygon_points(polygons[k]))
                except ValueError as exc:
                    raise BenchError(f"{where}: polygon of {sym}: {exc}") from None
        samples = []
        for sym, (boxes_of, polys_of) in grouped.items():
            mask = None
            if want_mask:
                drawn = mask_formats.polygons_mask(polys_of, width, height)
                if not drawn.any():
                    raise BenchError(f"{where}: the polygons of {sym} lie outside the {width}x{height} image")
                mask = MaskSource(rle=mask_formats.encode(drawn))
            category = sym.lower()
            samples.append(Sample(f"{Path(name).stem}-{sym.replace(' ', '_')}", str(path), width, height, category,
                                  self.phrase(category), tuple(dict.fromkeys(boxes_of)), split,
                                  {"file_name": name, "finding": sym}, mask))
        return samples
