"""CheXlocalize (Saporta et al., Nat. Mach. Intell. 2022): radiologists' masks of 10 pathologies on CheXpert.

Files as distributed (Stanford AIMI), under `--data-root`:

- `CheXlocalize/gt_segmentations_val.json`, `CheXlocalize/gt_segmentations_test.json`: the
  ground truth of two radiologists, `{cxr_id: {task: {"size": [h, w], "counts": "..."}}}`, COCO
  compressed RLE at the original image size, all 10 tasks for every CXR (an absent finding is an
  empty mask);
- `CheXlocalize/hb_segmentations_test.json` (same layout) and `CheXlocalize/hb_salient_pt_test.json`
  (`{cxr_id: {task: [[x, y], ...]}}`, x the column): the benchmark reading of three other
  radiologists, test set only;
- the CheXpert images `CheXpert/val/<patient>/<study>/<view>.jpg` and `CheXpert/test/...` (also
  found under `CheXpert/valid/`, `CheXpert-v1.0/valid/` or `val/` / `test/` in the data root).

A CXR id is `patient<N>_study<M>_view<K>_<frontal|lateral>`, the image path with `/` as `_`.
The JSONs name the pathology "Airspace Opacity" where the README and CheXpert's `valid.csv` say
"Lung Opacity": the JSON name is kept (category `airspace opacity`), and `extra["task"]` holds it
as spelled.

One sample per (CXR, task) whose ground-truth mask is not empty (`-O negatives=keep`: every pair,
the empty masks too): id `<cxr_id>-<Task with _>`, e.g. `patient64541_study1_view1_frontal-Airspace_Opacity`;
category the task in lower case; phrase from `-O prompt` (default "{finding}" with the task in
lower case); split `val` or `test`; the image size is the mask's.

The second reading. Every test sample carries `extra["reader2"] = {"mask": <RLE JSON text or None>,
"points": [[x, y], ...], "boxes": []}`: the benchmark radiologists' mask of that CXR and task
(`rle_text` form, decoded with `bench.core.ground_truth.MaskSource(rle=...)`; None when the CXR
is not in `hb_segmentations_test.json`) and their most-representative points (empty when they
gave none: CheXlocalize counts that as a miss). Validation samples have no `reader2`. The second
reading is not part of the dataset fingerprint (the ground truth is).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.errors import BenchError
from ..core.ground_truth import MaskSource, compressed_counts, rle_text
from ..core.params import Param
from ..core.samples import Sample
from .public_dataset import PathologyDataset, read_json

#: eval_constants.LOCALIZATION_TASKS of the published code, as the JSON keys spell them
TASKS = ("Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Lesion", "Airspace Opacity", "Edema",
         "Consolidation", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Support Devices")
FOLDER = "CheXlocalize"
GT_FILES = {"val": "gt_segmentations_val.json", "test": "gt_segmentations_test.json"}
HB_MASKS = "hb_segmentations_test.json"
HB_POINTS = "hb_salient_pt_test.json"
#: folders (relative to the data root) searched for each split's images, first match wins
IMAGE_FOLDERS = {"val": ("CheXpert/val", "CheXpert/valid", "CheXpert-v1.0/valid", "val", "valid"),
                 "test": ("CheXpert/test", "CheXpert-v1.0/test", "test")}
CXR_ID = re.compile(r"^(patient\d+)_(study\d+)_(view\d+_(?:frontal|lateral))$")


def image_name(cxr_id: str) -> str:
    """`patient64541/study1/view1_frontal.jpg` for `patient64541_study1_view1_frontal`; ValueError otherwise."""
    match = CXR_ID.match(cxr_id)
    if match is None:
        raise ValueError(f"CXR id {cxr_id!r} is not patient<N>_study<M>_view<K>_<frontal|lateral>")
    return "/".join(match.groups()) + ".jpg"


def _rle(value: object, where: str) -> tuple[str, tuple[int, int], int]:
    """(RLE text, (height, width), foreground pixels) of one mask entry; BenchError naming `where` when malformed."""
    if not isinstance(value, dict) or not isinstance(value.get("counts"), str) or not isinstance(value.get("size"), list):
        raise BenchError(f"{where}: not an RLE object {{'size': [h, w], 'counts': '...'}}")
    size = value["size"]
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise BenchError(f"{where}: RLE size {size!r} is not a positive [h, w]")
    try:
        runs = compressed_counts(value["counts"])
    except ValueError as exc:
        raise BenchError(f"{where}: RLE counts are malformed: {exc}") from None
    if any(c < 0 for c in runs) or sum(runs) != size[0] * size[1]:
        raise BenchError(f"{where}: RLE counts do not add up to its {size[0]}x{size[1]} size")
    return rle_text(value), (size[0], size[1]), sum(runs[1::2])


class ChexlocalizeDataset(PathologyDataset):
    """One sample per (CXR, task) with a non-empty ground-truth mask; the benchmark reading as `reader2`."""

    name = "chexlocalize"
    description = ("CheXlocalize radiologist masks of 10 pathologies on CheXpert val/test (CheXlocalize/*.json + "
                   "CheXpert images under --data-root), benchmark readers as reader2")
    options_schema = {
        "negatives": Param(str, "drop", choices=("drop", "keep"),
                           help="'drop' (default): only (CXR, task) pairs with a non-empty mask; 'keep': every pair"),
    }
    root_holds = f"the folder holding {FOLDER}/ and CheXpert/"

    def _annotations(self, name: str) -> Path:
        root = self.root()
        return root / FOLDER / name if (root / FOLDER / name).is_file() else root / name

    def samples(self) -> list[Sample]:
        """Validation then test samples, CXRs in file order, tasks in the published task order."""
        paths = {split: self._annotations(name) for split, name in GT_FILES.items()}
        if not any(p.is_file() for p in paths.values()):
            raise BenchError(f"no {GT_FILES['val']} or {GT_FILES['test']} in {self.root() / FOLDER}")
        out: list[Sample] = []
        for split, path in paths.items():
            if path.is_file():
                out.extend(self._split(split, path))
        return out

    def _second_reading(self) -> tuple[dict, dict]:
        masks_path, points_path = self._annotations(HB_MASKS), self._annotations(HB_POINTS)
        masks = read_json(masks_path, "CheXlocalize benchmark masks") if masks_path.is_file() else {}
        points = read_json(points_path, "CheXlocalize benchmark points") if points_path.is_file() else {}
        for path, data in ((masks_path, masks), (points_path, points)):
            if not isinstance(data, dict):
                raise BenchError(f"{path}: expected a JSON object of CXR ids")
        return masks, points

    def _points(self, value: object, where: str) -> list[list[float]]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise BenchError(f"{where}: points are not a list of [x, y]")
        out = []
        for point in value:
            if (not isinstance(point, list) or len(point) != 2
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in point)):
                raise BenchError(f"{where}: point {point!r} is not [x, y] numbers")
            out.append([float(point[0]), float(point[1])])
        return out

    def _split(self, split: str, path: Path) -> list[Sample]:
        data = read_json(path, f"CheXlocalize {split} masks")
        if not isinstance(data, dict):
            raise BenchError(f"{path}: expected a JSON object of CXR ids")
        hb_masks, hb_points = self._second_reading() if split == "test" else ({}, {})
        root = self.root()
        folders = IMAGE_FOLDERS[split]
        default = next((f for f in folders if (root / f).is_dir()), folders[0])
        out = []
        for cxr_id, tasks in data.items():
            where = f"{path}: {cxr_id}"
            try:
                name = image_name(cxr_id)
            except ValueError as exc:
                raise BenchError(f"{path}: {exc}") from None
            if not isinstance(tasks, dict):
                raise BenchError(f"{where}: expected an object of tasks")
            unknown = sorted(set(tasks) - set(TASKS))
            if unknown:
                raise BenchError(f"{where}: unknown task {unknown[0]!r} (expected {', '.join(TASKS)})")
            folder = next((f for f in folders if (root / f / name).is_file()), default)
            image = self.image_path(root, f"{folder}/{name}", f"{where}: image")
            for task in TASKS:
                if task not in tasks:
                    continue
                rle, (height, width), area = _rle(tasks[task], f"{where}: {task}")
                if area == 0 and self.settings["negatives"] == "drop":
                    continue
                extra: dict = {"cxr_id": cxr_id, "task": task}
                if split == "test":
                    hb = hb_masks.get(cxr_id, {})
                    hb_mask = None
                    if isinstance(hb, dict) and task in hb:
                        hb_mask, hb_size, _ = _rle(hb[task], f"{self._annotations(HB_MASKS)}: {cxr_id}: {task}")
                        if hb_size != (height, width):
                            raise BenchError(f"{self._annotations(HB_MASKS)}: {cxr_id}: {task}: size {list(hb_size)} "
                                             f"differs from the ground truth's {[height, width]}")
                    pts = hb_points.get(cxr_id, {})
                    pts = pts.get(task) if isinstance(pts, dict) else None
                    extra["reader2"] = {"mask": hb_mask, "boxes": [],
                                        "points": self._points(pts, f"{self._annotations(HB_POINTS)}: {cxr_id}: {task}")}
                category = task.lower()
                out.append(Sample(f"{cxr_id}-{task.replace(' ', '_')}", str(image), width, height, category,
                                  self.phrase(category), (), split, extra, MaskSource(rle=rle)))
        return out
