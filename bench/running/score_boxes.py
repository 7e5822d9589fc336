"""`bench score --boxes`: score stored or bring-your-own box predictions under a protocol.

The predictions are a `--boxes` JSONL file (one record per line, `bench.running.box_files`) or a
box run's folder (its `boxes/`). The whole file is read and checked before anything is written:
a bad line, a box with no area or outside its image, an unknown sample id, or (without
`--skip-bad`) a sample of the set without a line is one error, and `--out` is not created.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from ..core.errors import BenchError, SampleError
from ..core.predictions import BoxPrediction
from ..core.samples import Sample
from ..datasets import get_dataset
from . import box_files, integrity
from .lock import check_folder, locked
from .rundir import RunDir, record_backend
from .runner import (
    RunResult,
    dataset_config,
    eval_samples,
    finish,
    rescore_record,
    run_protocol,
    score_rows,
    validate_all,
)


def _source(boxes: Path, name: str | None) -> tuple[Path, dict | None, Callable[[Sample], BoxPrediction] | None]:
    """(what is scored, the source run's record or None, its loader when it is a run's boxes/ folder)."""
    if boxes.is_dir():
        folder = boxes / "boxes" if (boxes / "boxes").is_dir() else boxes
        record = RunDir(folder.parent).read_run() if (folder.parent / "run.json").is_file() else None
        want = (integrity.recorded(record) or {}).get("boxes")
        if record is None or want is None:
            raise BenchError(f"--boxes {boxes}: not a box run's folder (no run.json recording its boxes/); give a "
                             ".jsonl file")
        found = box_files.box_set(folder)
        if found is None or found.digest != want:
            if name is None:
                raise BenchError(f"--boxes {boxes}: these are not the boxes {folder.parent / 'run.json'} records for "
                                 f"method {record.get('method')!r}; score them as your own with --name NAME")
            record = None
        return folder, record, box_files.folder_loader(folder)
    return boxes, None, None


def _failure(loader: Callable[[Sample], BoxPrediction], sample: Sample | None) -> str | None:
    """Why the prediction of a scored sample has no boxes (None when it is no failure)."""
    return None if sample is None else loader(sample).failure


def score_boxes(boxes: Path, dataset_name: str, protocol_name: str, out: Path, data_root: Path | None = None,
                dataset_options: dict[str, str] | None = None, skip_bad: bool = False, name: str | None = None,
                allow_outside_root: bool = False, model_crop: int | None = None) -> RunResult:
    """Score a --boxes JSONL file or a box run's predictions under a protocol into `out`."""
    t0 = time.perf_counter()
    boxes = Path(boxes)
    if name is not None and (not name.strip() or "/" in name or name.startswith(".")):
        raise BenchError(f"--name {name!r}: a plain name is needed (no '/', not starting with '.')")
    check_folder(Path(out))
    protocol = run_protocol(protocol_name)
    dataset = get_dataset(dataset_name, data_root, dataset_options, allow_outside_root)
    everything, chosen = eval_samples(dataset, protocol, None)
    scored, source, loader = _source(boxes, name)
    limit = (source or {}).get("limit")
    if source is not None and source.get("sample_ids") is not None:
        wanted = set(source["sample_ids"])
        chosen = [s for s in chosen if s.sample_id in wanted]
    if loader is None:
        predictions = box_files.read_jsonl(boxes, {s.sample_id: s for s in everything})
        missing = [s.sample_id for s in chosen if s.sample_id not in predictions]
        if missing and not skip_bad:
            raise BenchError(f"--boxes {boxes}: no line for sample {missing[0]!r} ({len(missing)} of the "
                             f"{len(chosen)} samples of protocol {protocol.name} have none; use --skip-bad to "
                             "record them and go on)")
        loader = box_files.jsonl_loader(predictions, boxes)
        unscored = len(set(predictions) - {s.sample_id for s in chosen})
    else:
        unscored = 0
    skipped: dict[str, str] = {}
    chosen = validate_all(chosen, skip_bad, skipped, protocol=protocol)
    by_id = {s.sample_id: s for s in chosen}
    rundir = RunDir(out)
    config = {"scored_boxes": str(scored.resolve()),
              "dataset": dataset_config(dataset_name, dataset_options or {}, data_root, allow_outside_root),
              "protocol": protocol.fingerprint()}
    crop = model_crop if model_crop is not None else 0
    if protocol.drop_boxes != "none":
        config["model_crop"] = crop
    digest = box_files.box_set(scored)
    with locked(rundir.root):
        rundir.open_for(config)
        backend = record_backend(source)
        excluded: set[str] = set()
        try:
            table, t_score = score_rows(chosen, protocol, rundir, loader, skip_bad, skipped, backend,
                                        excluded=excluded, model_crop=crop)
        except SampleError as exc:
            raise BenchError(str(exc)) from None
        failures = [{"sample_id": sid, "reason": loader_failure} for sid in table.column("sample_id")
                    if (loader_failure := _failure(loader, by_id.get(sid))) is not None]
        record = rescore_record(
            config, name, source, backend, dataset, dataset_name, protocol, protocol_name, limit, table, skipped,
            excluded, {"output": "boxes", "boxes": str(scored.resolve())}, True if source else None,
            {"unscored_box_records": unscored, "box_failures": failures},
            (t_score, t0), (crop, "--model-crop" if model_crop is not None else "boxes"), chosen)
        return finish(rundir, table, protocol, record, None, digest)
