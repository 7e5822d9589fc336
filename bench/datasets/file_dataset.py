"""A dataset that is a file: a sample table (`.csv` or `.jsonl`) in the format `bench dataset` writes.

`--dataset path/to/samples.csv` (or `.jsonl`) runs like a named dataset, so a researcher's own data
needs no plugin. Columns (CSV header, or keys of each JSON line):

- `sample_id`, `image_path`, `width`, `height`, `category`, `phrase`: required;
- `boxes`: a JSON list of [x, y, w, h] in original pixels (may be empty or absent when the row has a
  mask or points);
- `mask` (optional): a PNG/NPY file (non-zero is foreground), or COCO RLE as a JSON object
  `{"size": [h, w], "counts": ...}` (compressed string or uncompressed integer counts); in a CSV the
  object is written as its JSON text;
- `points` (optional): a JSON list of [x, y] in original pixels;
- `split` (optional): train, val or test [default: test].

Image and mask paths are relative to the file's folder, or to `--data-root` when given; a path that
leads outside that root (`..`, a link elsewhere, an absolute path elsewhere) is refused unless the
dataset allows it (`--allow-outside-root`). An absolute path inside the root is accepted, so a table
written by `bench dataset` reads back. The whole table is checked when read, every row as the
built-in datasets' samples are (sizes, boxes, points, the mask decoded at the image size, unique
ids): a bad row is one line naming the file, the row and the problem, before anything is written.
A JSON line may also carry an `extra` object, kept as the sample's `extra`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

from ..core.errors import BenchError, SampleError
from ..core.ground_truth import MaskSource, load_mask, rle_text
from ..core.samples import Sample, validate_sample
from .base import Dataset
from .paths import OPTION, inside
from .tables import read_csv

#: file suffixes that make a `--dataset` value a file rather than a registered name
SUFFIXES = (".csv", ".jsonl")
REQUIRED = ("sample_id", "image_path", "width", "height", "category", "phrase")
GROUND_TRUTH = ("boxes", "mask", "points")
SPLITS = ("train", "val", "test")
#: the fingerprint's name of every file dataset: the samples say what it is, not where the file lies
NAME = "file"


def is_dataset_file(name: str) -> bool:
    """True when a `--dataset` value names a sample table (.csv / .jsonl) rather than a registered dataset."""
    return str(name).lower().endswith(SUFFIXES)


def dataset_label(name: str) -> str:
    """A short, path-free label of a `--dataset` value (the file's stem for a table), for folder names."""
    return Path(name).stem if is_dataset_file(name) else str(name)


class FileDataset(Dataset):
    """The samples of one sample table; see the module docstring for its columns."""

    name = NAME
    description = "a sample table (.csv or .jsonl) in the format `bench dataset` writes, given as --dataset PATH"
    options_schema: Mapping = {}

    def __init__(self, path: Path, data_root: Path | None = None, options: Mapping[str, str] | None = None) -> None:
        super().__init__(data_root, options)
        self.path = Path(path)

    def root(self) -> Path:
        """The folder image and mask paths are relative to: --data-root, else the table's folder."""
        return self.data_root if self.data_root is not None else self.path.parent

    def rows(self) -> list[dict[str, Any]]:
        """The table's rows as dicts (CSV cells as text, JSON values as parsed); BenchError when unreadable."""
        if not self.path.is_file():
            raise BenchError(f"dataset file {self.path} not found")
        if self.path.suffix.lower() == ".csv":
            table = read_csv(self.path)
            table.columns = [str(c).strip() for c in table.columns]
            self._check_columns(list(table.columns))
            return table.to_dict("records")
        rows = []
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise BenchError(f"cannot read {self.path}: {exc}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise BenchError(f"{self.path}: line {number} is not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise BenchError(f"{self.path}: line {number} is not a JSON object")
            rows.append(row)
        if not rows:
            raise BenchError(f"{self.path}: no sample (an empty file)")
        keys = set().union(*rows)
        self._check_columns(sorted(keys))
        for number, row in enumerate(rows, 1):
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                raise BenchError(f"{self.path}: row {number} has no {missing[0]!r}")
        return rows

    def _check_columns(self, columns: list[str]) -> None:
        for col in REQUIRED:
            if col not in columns:
                raise BenchError(f"{self.path}: missing column {col!r} (expected {', '.join(REQUIRED)}, and boxes, "
                                 "mask or points)")
        if not any(col in columns for col in GROUND_TRUTH):
            raise BenchError(f"{self.path}: no ground-truth column: give boxes, mask or points")

    def samples(self) -> list[Sample]:
        """Every row as a sample, in file order; BenchError naming the first bad row."""
        out: list[Sample] = []
        first: dict[str, int] = {}
        for number, row in enumerate(self.rows(), 1):
            sample = self._sample(row, number)
            if sample.sample_id in first:
                raise BenchError(f"{self.path}: row {number}: sample id {sample.sample_id!r} is also the id of row "
                                 f"{first[sample.sample_id]}; every sample needs its own id")
            first[sample.sample_id] = number
            out.append(sample)
        return out

    def _where(self, number: int, row: Mapping) -> str:
        sid = str(row.get("sample_id", "")).strip()
        return f"{self.path}: row {number}{f' ({sid})' if sid else ''}"

    def _fail(self, number: int, row: Mapping, reason: str) -> BenchError:
        return BenchError(f"{self._where(number, row)}: {reason}")

    def _sample(self, row: Mapping[str, Any], number: int) -> Sample:
        text = {}
        for col in ("sample_id", "image_path", "category", "phrase"):
            value = row.get(col)
            if not isinstance(value, str) or not value.strip():
                raise self._fail(number, row, f"column {col!r} is empty or not text")
            text[col] = value.strip() if col != "phrase" else value
        size = {}
        for col in ("width", "height"):
            size[col] = _whole(row.get(col))
            if size[col] is None:
                raise self._fail(number, row, f"column {col!r} is not a whole number: {row.get(col)!r}")
        split = row.get("split", "test")
        split = (split.strip().lower() if isinstance(split, str) else split) or "test"
        if split not in SPLITS:
            raise self._fail(number, row, f"split {split!r} is not train, val or test")
        try:
            boxes = _pairs(row.get("boxes"), 4, "boxes", "[x, y, w, h]")
            points = _pairs(row.get("points"), 2, "points", "[x, y]")
            mask = self._mask(row.get("mask"), f"{self._where(number, row)}: mask")
        except ValueError as exc:
            raise self._fail(number, row, str(exc)) from None
        image = self._inside(text["image_path"], f"{self._where(number, row)}: image_path")
        extra = row.get("extra") if isinstance(row.get("extra"), dict) else {}
        sample = Sample(text["sample_id"], str(image), size["width"], size["height"], text["category"],
                        text["phrase"], boxes, split, dict(extra), mask, points)
        try:
            validate_sample(sample)
            if mask is not None:
                load_mask(mask, sample.height, sample.width, sample.sample_id)
        except SampleError as exc:
            raise self._fail(number, row, exc.reason) from None
        return sample

    def _mask(self, value: Any, what: str) -> MaskSource | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if isinstance(value, str) and value.strip().startswith("{"):
            try:
                value = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"mask is neither a file nor RLE JSON ({exc})") from None
        if isinstance(value, dict):
            if not isinstance(value.get("size"), list) or "counts" not in value:
                raise ValueError("mask RLE is not an object with 'size' [h, w] and 'counts'")
            try:
                return MaskSource(rle=rle_text(value))
            except (TypeError, ValueError):
                raise ValueError("mask RLE 'size' is not two whole numbers") from None
        if not isinstance(value, str):
            raise ValueError(f"mask is neither a file path nor an RLE object: {value!r}")
        return MaskSource(path=str(self._inside(value.strip(), what)))

    def _inside(self, name: str, what: str) -> Path:
        root = self.root()
        if os.path.isabs(name) and not self.allow_outside_root:
            real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
            if os.path.realpath(name).startswith(real_root):
                return Path(name)
            raise BenchError(f"{what} {name!r} leads outside the data root {root}; refused (use {OPTION} if your "
                             "images really live there)")
        return inside(root, name, what, self.allow_outside_root)


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _pairs(value: Any, n: int, what: str, form: str) -> tuple:
    """A JSON list (or its text) of n-number lists as a tuple of float tuples; ValueError naming `what`."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return ()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{what} is not a JSON list of {form}: {value!r}") from None
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a JSON list of {form}: {value!r}")
    out = []
    for item in value:
        if (not isinstance(item, list) or len(item) != n
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in item)):
            raise ValueError(f"{what} holds {item!r}, not {form} numbers")
        out.append(tuple(float(v) for v in item))
    return tuple(out)


def table_row(sample: Sample) -> dict[str, Any]:
    """The row `bench dataset` writes for a sample; `mask` and `points` only when the sample has them."""
    row: dict[str, Any] = {"sample_id": sample.sample_id, "image_path": sample.image_path, "width": sample.width,
                           "height": sample.height, "category": sample.category, "phrase": sample.phrase,
                           "boxes": sample.boxes_json(), "split": sample.split}
    if sample.mask is not None:
        row["mask"] = sample.mask.path if sample.mask.path is not None else sample.mask.rle
    if sample.points:
        row["points"] = json.dumps([[_number(v) for v in p] for p in sample.points])
    return row


def table_text(samples: list[Sample], jsonl: bool = False) -> str:
    """The sample table of `samples` as CSV (box-only samples: exactly the eight columns), or as JSON lines.

    The `mask` and `points` columns appear when a sample has them (empty for the others); in JSON
    lines boxes and points are lists, an RLE mask is an object, and a sample's `extra` (the second
    reading `reader2`, dataset ids) is kept as the object `extra`.
    """
    import pandas as pd

    rows = [table_row(s) for s in samples]
    if not jsonl:
        columns = ["sample_id", "image_path", "width", "height", "category", "phrase", "boxes", "split"]
        columns += [c for c in ("mask", "points") if any(c in r for r in rows)]
        return pd.DataFrame(rows, columns=columns).fillna("").to_csv(index=False)
    lines = []
    for sample, row in zip(samples, rows):
        row = dict(row, boxes=json.loads(row["boxes"]))
        if "points" in row:
            row["points"] = json.loads(row["points"])
        if "mask" in row and row["mask"].startswith("{"):
            row["mask"] = json.loads(row["mask"])
        if sample.extra:
            row["extra"] = sample.extra
        lines.append(json.dumps(row) + "\n")
    return "".join(lines)


def _number(v: float) -> float | int:
    return int(v) if float(v).is_integer() else float(v)
