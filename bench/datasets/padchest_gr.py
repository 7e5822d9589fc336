"""PadChest-GR (BIMCV, 2024): grounded report sentences with boxes from up to two readers.

PadChest-GR is given on request (bimcv.cipf.es/bimcv-projects/padchest-gr/) and no public document
specifies its fields. This reader follows the field names that third-party loaders use, which
could NOT be verified against the official files:

- `grounded_reports_20240819.json` (or `-O json=NAME` in the data root): a JSON list of studies
  `{"StudyID", "ImageID", "findings": [{"sentence_en", "abnormal", "boxes", "extra_boxes", "labels", ...}]}`;
- `boxes` (first reader) and `extra_boxes` (second reader): lists of [x1, y1, x2, y2] normalised to
  0..1 of the image's width and height (the order and the normalisation are unverified: a value
  outside 0..1 is refused in one line, so a file in another form is not read silently wrong);
- negative sentences (`abnormal` false) carry no boxes and are left out (the run notes how many);
- `master_table.csv` (optional): columns `ImageID` and `split` (train, validation, test); without
  it every sample is `test`;
- the PNG images, named by `ImageID`, anywhere below the data root; each image's size is read from
  its header.

One sample per (image, positive sentence): id `<ImageID stem>-<first 8 hex digits of sha1(sentence_en)>`,
phrase the English sentence, category the first of its `labels` in lower case (`finding` without
labels), boxes the first reader's. When the sentence has second-reader boxes, `extra["reader2"] =
{"mask": None, "points": [], "boxes": [[x, y, w, h], ...]}` in original pixels.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..core.errors import BenchError
from ..core.params import Param
from ..core.samples import Box, Sample
from .paths import index_files
from .public_dataset import PublicDataset, image_size, read_json
from .tables import read_csv, require_columns

JSON_NAME = "grounded_reports_20240819.json"
MASTER = "master_table.csv"
SPLITS = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def sample_id(image_id: str, sentence: str) -> str:
    """`<ImageID stem>-<first 8 hex digits of sha1(sentence)>`: stable and unique per sentence."""
    return f"{Path(image_id).stem}-{hashlib.sha1(sentence.encode('utf-8')).hexdigest()[:8]}"


def pixel_boxes(value: object, width: int, height: int, where: str) -> list[Box]:
    """Normalised [x1, y1, x2, y2] boxes as (x, y, w, h) pixels; BenchError naming `where` when not that form."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BenchError(f"{where}: boxes are not a list of [x1, y1, x2, y2]")
    out = []
    for box in value:
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)):
            raise BenchError(f"{where}: box {box!r} is not [x1, y1, x2, y2] numbers")
        if not all(0 <= v <= 1 for v in box):
            raise BenchError(f"{where}: box {box!r} is not normalised to 0..1 (the format this reader expects)")
        x1, y1, x2, y2 = box
        out.append((x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height))
    return out


class PadchestGrDataset(PublicDataset):
    """One sample per (image, positive sentence) with its first reader's boxes; the second reader as reader2."""

    name = "padchest-gr"
    description = ("PadChest-GR grounded report sentences (grounded_reports_20240819.json, master_table.csv + PNGs "
                   "under --data-root; field names unverified), second reader as reader2")
    options_schema = {"json": Param(str, JSON_NAME, help=f"the grounded reports JSON in the data root (default {JSON_NAME})")}
    root_holds = f"the folder with {JSON_NAME} and the PNG images"

    def _splits(self) -> dict[str, str]:
        path = self.root() / MASTER
        if not path.is_file():
            self.notes.append(f"no {MASTER} in {self.root()}: every sample is in split test")
            return {}
        table = read_csv(path)
        require_columns(table, path, ("ImageID", "split"))
        out = {}
        for number, (image, split) in enumerate(zip(table["ImageID"].str.strip(), table["split"].str.strip()), 1):
            if split.lower() not in SPLITS:
                raise BenchError(f"{path}: data row {number}: split {split!r} is not train, validation or test")
            out[image] = SPLITS[split.lower()]
        return out

    def samples(self) -> list[Sample]:
        """Samples in the order of the studies and their sentences."""
        root = self.root()
        path = root / self.settings["json"]
        studies = read_json(path, "PadChest-GR grounded reports")
        if not isinstance(studies, list):
            raise BenchError(f"{path}: expected a JSON list of studies")
        splits = self._splits()
        files = index_files(root, (".png",))
        groups: dict[str, dict] = {}
        negatives = 0
        for number, study in enumerate(studies, 1):
            where = f"{path}: study {number}"
            if not isinstance(study, dict) or not isinstance(study.get("ImageID"), str) \
                    or not isinstance(study.get("findings"), list):
                raise BenchError(f"{where}: not an object with ImageID and a list of findings")
            image_id = study["ImageID"]
            where = f"{where} ({image_id})"
            size = None
            for k, finding in enumerate(study["findings"], 1):
                if not isinstance(finding, dict):
                    raise BenchError(f"{where}: finding {k} is not an object")
                sentence = finding.get("sentence_en")
                if not finding.get("abnormal") or not finding.get("boxes"):
                    negatives += 1
                    continue
                if not isinstance(sentence, str) or not sentence.strip():
                    raise BenchError(f"{where}: finding {k} has no sentence_en")
                if size is None:
                    image = self.image_path(root, image_id, f"{where}: ImageID", files.get(Path(image_id).name))
                    size = (image, *image_size(image, where))
                image, width, height = size
                sid = sample_id(image_id, sentence)
                labels = finding.get("labels") or []
                group = groups.setdefault(sid, {"image": image, "width": width, "height": height, "sentence": sentence,
                                                "category": str(labels[0]).strip().lower() if labels else "finding",
                                                "split": splits.get(image_id, "test"), "boxes": [], "reader2": [],
                                                "study": study.get("StudyID"), "image_id": image_id})
                group["boxes"] += pixel_boxes(finding.get("boxes"), width, height, f"{where}: finding {k}: boxes")
                group["reader2"] += pixel_boxes(finding.get("extra_boxes"), width, height,
                                                f"{where}: finding {k}: extra_boxes")
        if negatives:
            self.notes.append(f"{path}: {negatives} sentence(s) without boxes (negative findings) left out")
        out = []
        for sid, g in groups.items():
            extra: dict = {"study_id": g["study"], "image_id": g["image_id"]}
            if g["reader2"]:
                extra["reader2"] = {"mask": None, "points": [],
                                    "boxes": [list(b) for b in dict.fromkeys(g["reader2"])]}
            out.append(Sample(sid, str(g["image"]), g["width"], g["height"], g["category"], g["sentence"],
                              tuple(dict.fromkeys(g["boxes"])), g["split"], extra))
        return out
