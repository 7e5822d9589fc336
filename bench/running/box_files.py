"""Box predictions on disk: a run's `boxes/` folder and bring-your-own `--boxes` JSONL files.

One record per sample, the same in both places: `{"sample_id": ID, "boxes": [[x, y, w, h], ...],
"scores": [s, ...], "failure": null}` with boxes in original pixels; `scores` (one per box) and
`failure` (why the method gave no boxes for the sample) may be left out. A run writes each
sample's record to `boxes/<file name>.json` atomically as it is made (so a run resumes like one
with heatmaps); `bench score --boxes FILE.jsonl` reads one record per line. A file is read whole
and checked before anything is written: a line that is not such a record, a box with no area or
outside its image, an unknown or repeated sample id is one error naming the file and the line.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..core import atomic
from ..core.errors import BenchError, SampleError
from ..core.predictions import BoxPrediction, validate_prediction
from ..core.samples import Sample
from .integrity import HeatmapSet, file_digest
from .rundir import file_name

#: most bytes of a --boxes file, and most boxes of one sample (checked before reading further)
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_BOXES = 10_000
SUFFIX = ".json"
_KEYS = ("sample_id", "boxes", "scores", "failure")


def to_record(sample_id: str, pred: BoxPrediction) -> dict:
    """The JSON record of one sample's prediction (floats kept exactly: JSON round-trips them)."""
    return {"sample_id": sample_id, "boxes": [[float(v) for v in b] for b in pred.boxes],
            "scores": [float(s) for s in pred.scores], "failure": pred.failure}


def write_prediction(path: Path, sample_id: str, pred: BoxPrediction) -> None:
    """Write one sample's record atomically (equal predictions give equal files)."""
    text = json.dumps(to_record(sample_id, pred), sort_keys=True) + "\n"
    atomic.write_bytes(Path(path), text.encode("utf-8"))


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_record(data: object) -> tuple[str, BoxPrediction]:
    """(sample id, prediction) of a parsed record; ValueError saying what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (known: {', '.join(_KEYS)})")
    sid = data.get("sample_id")
    if not isinstance(sid, str) or not sid:
        raise ValueError("no \"sample_id\" string")
    boxes = data.get("boxes")
    if not isinstance(boxes, list):
        raise ValueError(f"sample {sid}: \"boxes\" must be a list of [x, y, w, h]")
    if len(boxes) > MAX_BOXES:
        raise ValueError(f"sample {sid}: {len(boxes)} boxes, more than {MAX_BOXES}")
    for box in boxes:
        if not isinstance(box, list) or len(box) != 4 or not all(_number(v) for v in box):
            raise ValueError(f"sample {sid}: box {json.dumps(box)[:80]} is not [x, y, w, h] of four finite numbers")
    scores = data.get("scores") or []
    if not isinstance(scores, list) or not all(_number(s) for s in scores):
        raise ValueError(f"sample {sid}: \"scores\" must be a list of finite numbers")
    if scores and len(scores) != len(boxes):
        raise ValueError(f"sample {sid}: {len(scores)} scores for {len(boxes)} boxes")
    failure = data.get("failure")
    if failure is not None and not isinstance(failure, str):
        raise ValueError(f"sample {sid}: \"failure\" must be a string or null")
    if failure is not None and boxes:
        raise ValueError(f"sample {sid}: a failure with boxes; a failed sample has no boxes")
    return sid, BoxPrediction(tuple(tuple(float(v) for v in b) for b in boxes),  # type: ignore[misc]
                              tuple(float(s) for s in scores), failure)


def read_prediction(path: Path, sample: Sample) -> BoxPrediction:
    """One sample's record from a run's boxes/ folder; SampleError when it is missing or wrong."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
        sid, pred = parse_record(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise SampleError(sample.sample_id, f"no box prediction {path.name} in {path.parent}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SampleError(sample.sample_id, f"{path}: {exc}") from None
    if sid != sample.sample_id:
        raise SampleError(sample.sample_id, f"{path} holds the boxes of sample {sid!r}")
    validate_prediction(pred, sample.width, sample.height, sample.sample_id)
    return pred


def read_jsonl(path: Path, samples: Mapping[str, Sample]) -> dict[str, BoxPrediction]:
    """Every record of a `--boxes` JSONL file, checked against the dataset's `samples` (id -> Sample).

    BenchError naming the file and line for a malformed line, a box with no area or outside its
    image, scores that do not match the boxes, an id that is no sample of the dataset, or an id
    given twice. Blank lines are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--boxes {path}: no such file")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise BenchError(f"--boxes {path}: larger than {MAX_FILE_BYTES} bytes")
    found: dict[str, BoxPrediction] = {}
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"--boxes {path} line {number}"
            try:
                sid, pred = parse_record(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BenchError(f"{where}: not valid JSON ({exc.msg})") from None
            except ValueError as exc:
                raise BenchError(f"{where}: {exc}") from None
            except UnicodeDecodeError:
                raise BenchError(f"--boxes {path}: not a UTF-8 text file") from None
            sample = samples.get(sid)
            if sample is None:
                raise BenchError(f"{where}: unknown sample id {sid!r} (no sample of the dataset has it)")
            if sid in found:
                raise BenchError(f"{where}: sample {sid!r} is given a second time")
            try:
                validate_prediction(pred, sample.width, sample.height, sid)
            except SampleError as exc:
                raise BenchError(f"{where}: {exc}") from None
            found[sid] = pred
    return found


def jsonl_loader(predictions: Mapping[str, BoxPrediction], path: Path) -> Callable[[Sample], BoxPrediction]:
    """The loader `score_all` reads a --boxes file's predictions with (a sample without a line is a sample error)."""

    def load(s: Sample) -> BoxPrediction:
        pred = predictions.get(s.sample_id)
        if pred is None:
            raise SampleError(s.sample_id, f"no line for it in --boxes {path}")
        return pred

    return load


def folder_loader(folder: Path) -> Callable[[Sample], BoxPrediction]:
    """The loader of a run's boxes/ folder."""
    return lambda s: read_prediction(Path(folder) / f"{file_name(s.sample_id)}{SUFFIX}", s)


def failures(folder: Path, sample_ids: Sequence[str]) -> list[dict]:
    """The samples whose stored prediction is a failure, with its reason (for run.json's `box_failures`)."""
    out = []
    for sid in sample_ids:
        path = Path(folder) / f"{file_name(sid)}{SUFFIX}"
        try:
            reason = json.loads(path.read_text(encoding="utf-8")).get("failure")
        except (OSError, ValueError, AttributeError):
            continue
        if reason is not None:
            out.append({"sample_id": sid, "reason": reason})
    return out


def box_files(folder: Path) -> list[Path]:
    """The prediction files of a boxes/ folder (hidden temporaries left out), by name."""
    return sorted((p for p in Path(folder).iterdir()
                   if p.suffix == SUFFIX and not p.name.startswith(".") and p.is_file()), key=lambda p: p.name)


def box_set(source: Path | None) -> HeatmapSet | None:
    """The digest of a boxes/ folder (as of a heatmap folder: sorted NAME<TAB>SHA256 lines), or of a
    --boxes file (the sha256 of its bytes, one file); None when absent."""
    if source is None:
        return None
    source = Path(source)
    if source.is_file():
        return HeatmapSet(file_digest(source), 1)
    if not source.is_dir():
        return None
    files = box_files(source)
    lines = "".join(f"{p.name}\t{file_digest(p)}\n" for p in files)
    return HeatmapSet(hashlib.sha256(lines.encode("utf-8")).hexdigest(), len(files))
