"""Running a method over a dataset, and scoring stored heatmaps under a protocol.

A run is resumable at every point: each heatmap is written atomically as soon as it exists,
per-sample scores are appended to a log, and the tables are written atomically at the end. A
re-run of the same command skips every heatmap and score already present.

A run can be split over processes (`shard`, or a multi-process launch found in the environment):
each shard does its part, and a run without a shard merges their results (see bench/running/shards.py).
"""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..core.errors import BenchError, SampleError
from ..core.heatmap import Heatmap
from ..core.samples import Sample, validate_sample
from ..datasets import get_dataset
from ..datasets.base import Dataset
from ..evaluation.protocols import Protocol, load_protocol
from ..evaluation.scoring import (
    ExcludedSample,
    check_values,
    is_exclusion,
    protocol_sample,
    score_with_boxes,
    select_samples,
)
from ..evaluation.stats import summarise
from ..methods import RunContext, backend_class
from ..methods.specs import apply_overrides, load_method_spec
from . import shards
from .progress import progress_bar
from .rundir import RunDir, record_backend, safe_name


@dataclass
class RunRequest:
    """Everything `bench run` was asked to do."""

    method: str
    dataset: str
    protocol: str = "default"
    data_root: Path | None = None
    dataset_options: dict[str, str] = field(default_factory=dict)
    out: Path | None = None
    limit: int | None = None
    device: str = "cpu"
    random_weights: bool = False
    weights: Path | None = None
    overrides: list[str] = field(default_factory=list)
    skip_bad: bool = False
    batch_size: int = 8
    seed: int = 0
    shard: shards.Shard | None = None


@dataclass
class RunResult:
    root: Path
    samples: pd.DataFrame
    summary: pd.DataFrame
    record: dict


@dataclass
class ShardResult:
    """What one shard did; the tables come from the merge."""

    root: Path
    shard: shards.Shard
    scored: int
    record: dict
    launched: bool = False  # part of a multi-process launch: the main process merges


def default_out(dataset: str, method: str, protocol: str) -> Path:
    return Path("runs") / f"{dataset}__{method}__{protocol}"


def versions() -> dict[str, str]:
    """Versions of the harness and of the numeric packages that touched the numbers."""
    out = {"cxr-grounding-bench": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "pandas": pd.__version__}
    for dist in ("torch", "diffusers", "transformers", "hi-ml-multimodal", "monai", "scipy", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def eval_samples(dataset: Dataset, protocol: Protocol, limit: int | None) -> tuple[list[Sample], list[Sample]]:
    """(all samples of the dataset, the protocol's sample set cut to `limit`)."""
    everything = dataset.samples()
    chosen = select_samples(everything, protocol)
    if not chosen:
        raise BenchError(f"dataset {dataset.name} has no sample in split {protocol.split!r}")
    if limit is not None:
        if limit < 1:
            raise BenchError("--limit must be at least 1")
        chosen = chosen[:limit]
    return everything, chosen


def validate_all(samples: Sequence[Sample], skip_bad: bool, skipped: dict[str, str]) -> list[Sample]:
    """Drop (with --skip-bad) or reject invalid samples before any work starts."""
    good = []
    for s in samples:
        if s.sample_id in skipped:
            continue  # already recorded (by a shard being merged)
        try:
            validate_sample(s)
            good.append(s)
        except SampleError as exc:
            if not skip_bad:
                raise BenchError(f"{exc} (use --skip-bad to record it and go on)") from None
            skipped[s.sample_id] = exc.reason
    return good


def _batches(items: Sequence[Sample], size: int) -> Iterator[list[Sample]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def _config(spec: dict, req: RunRequest, protocol: Protocol) -> dict:
    """What must match for a run directory to be resumed."""
    return {
        "method": spec,
        "dataset": {"name": req.dataset, "options": dict(sorted(req.dataset_options.items())),
                    "data_root": str(req.data_root) if req.data_root else None},
        "protocol": protocol.fingerprint(),
        "random_weights": req.random_weights,
        "seed": req.seed,
    }


def _check_resumable(rundir: RunDir, config: dict) -> dict | None:
    previous = rundir.read_run()
    if previous is None:
        if rundir.root.exists() and any(rundir.root.iterdir()) and not rundir.holds_only_shards():
            raise BenchError(f"--out {rundir.root} is not empty and holds no run; choose another --out")
        return None
    if previous.get("config") != config:
        old = previous.get("config", {})
        raise BenchError(
            f"--out {rundir.root} holds a different run (method {old.get('method', {}).get('name')}, dataset "
            f"{old.get('dataset', {}).get('name')}); choose another --out, or re-score it with `bench score`"
        )
    return previous


def compute_heatmaps(method, dataset: Dataset, samples: Sequence[Sample], rundir: RunDir, skip_bad: bool,
                     skipped: dict[str, str], batch_size: int) -> float:
    """Write a heatmap for every sample that has none yet; returns the seconds spent."""
    todo = [s for s in samples if not rundir.heatmap_path(s.sample_id).is_file()]
    rundir.heatmaps.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with progress_bar(f"{method.name}: heatmaps", len(samples), done=len(samples) - len(todo)) as advance:
        for batch in _batches(todo, batch_size):
            for sample, heatmap in _run_batch(method, dataset, batch, skip_bad, skipped):
                rundir.heatmaps.mkdir(parents=True, exist_ok=True)
                heatmap.save(rundir.heatmap_path(sample.sample_id))
            advance(len(batch))
    return time.perf_counter() - start


def _run_batch(method, dataset: Dataset, batch: list[Sample], skip_bad: bool,
               skipped: dict[str, str]) -> list[tuple[Sample, Heatmap]]:
    """Heatmaps of a batch; on a sample error, retry one by one to isolate the bad sample."""
    try:
        maps = method.heatmaps(batch, dataset)
        for s, m in zip(batch, maps):
            check_values(m, s.sample_id)
        return list(zip(batch, maps))
    except SampleError as exc:
        if len(batch) > 1:
            return [pair for s in batch for pair in _run_batch(method, dataset, [s], skip_bad, skipped)]
        if not skip_bad:
            raise BenchError(f"{exc} (use --skip-bad to record it and go on)") from None
        skipped[batch[0].sample_id] = exc.reason
        return []


def score_all(samples: Sequence[Sample], protocol: Protocol, rundir: RunDir,
              load: Callable[[Sample], Heatmap], skip_bad: bool, skipped: dict[str, str],
              backend: str | None = None, logs: Sequence[Path] = (),
              write_log: Path | None = None) -> tuple[pd.DataFrame, float]:
    """Per-sample metric rows (resuming from the score log); returns (samples table, seconds).

    `backend` selects the protocol's value policy for that method backend; samples the protocol
    itself leaves out (ExcludedSample) are recorded as skipped without --skip-bad. Each row records
    the boxes the sample was scored against (`scored_boxes`, after the protocol's `drop_boxes`).
    Scores are also taken from `logs` (shard logs), and new ones go to `write_log` [default: the run's log].
    """
    fingerprint = protocol.fingerprint()
    done = rundir.read_scores(fingerprint, logs)
    start = time.perf_counter()
    pending: list[dict] = []
    rows = []
    with progress_bar(f"scoring ({protocol.name})", len(samples)) as advance:
        for s in samples:
            if s.sample_id in skipped:
                advance(1)
                continue
            entry = done.get(s.sample_id)
            try:
                if entry is None:
                    values, scored = score_with_boxes(load(s), s, protocol, backend)
                    entry = {"sample_id": s.sample_id, "protocol": fingerprint, "scores": values,
                             "boxes": scored.boxes_json()}
                    pending.append(entry)
                    if len(pending) >= 200:
                        rundir.append_scores(pending, write_log)
                        pending = []
                elif "boxes" not in entry:  # logged before the scored boxes were
                    entry["boxes"] = (s.boxes_json() if protocol.drop_boxes == "none"
                                      else protocol_sample(load(s), s, protocol).boxes_json())
            except SampleError as exc:
                if not skip_bad and not isinstance(exc, ExcludedSample):
                    raise BenchError(f"{exc} (use --skip-bad to record it and go on)") from None
                skipped[s.sample_id] = exc.reason
                advance(1)
                continue
            rows.append({"sample_id": s.sample_id, "category": s.category, "phrase": s.phrase,
                         "split": s.split, "width": s.width, "height": s.height, "boxes": s.boxes_json(),
                         "scored_boxes": entry["boxes"], **{c: entry["scores"][c] for c in protocol.columns}})
            advance(1)
    if pending:
        rundir.append_scores(pending, write_log)
    columns = ["sample_id", "category", "phrase", "split", "width", "height", "boxes", "scored_boxes",
               *protocol.columns]
    return pd.DataFrame(rows, columns=columns), time.perf_counter() - start


def finish(rundir: RunDir, table: pd.DataFrame, protocol: Protocol, record: dict) -> RunResult:
    """Write samples.csv, summary.csv and run.json atomically (in that order: run.json last)."""
    if table.empty:
        raise BenchError("every sample was skipped; nothing to summarise")
    summary = summarise(table, protocol.columns, protocol.groups, protocol.bootstrap_resamples,
                        protocol.ci_level, protocol.seed, protocol.weighted_nan)
    rundir.write_table(rundir.samples_csv, table)
    rundir.write_table(rundir.summary_csv, summary)
    record["status"] = "complete"
    record["n_excluded"] = sum(is_exclusion(item["reason"]) for item in record.get("skipped", []))
    rundir.write_run(record)
    if rundir.scores_log.is_file():
        rundir.scores_log.unlink()
    return RunResult(rundir.root, table, summary, record)


def run(req: RunRequest) -> RunResult | ShardResult:
    """`bench run`: heatmaps for every sample of the protocol's set, scored and summarised.

    With `req.shard`, only that shard's part is done (ShardResult). Under a multi-process launch
    (WORLD_SIZE > 1 in the environment) every process does the shard of its rank on its own
    device, waits for the others, and the main process merges.
    """
    launch = shards.launch_from_env()
    if launch is not None:
        if req.shard is not None:
            raise BenchError(f"--shard {req.shard} given inside a {launch.world_size}-process launch; the launch "
                             "already picks each process's shard, so drop --shard")
        return _run_launched(req, launch)
    if req.shard is not None:
        return _run_shard(req, req.shard)
    return _run_whole(req)


def _run_launched(req: RunRequest, launch: shards.Launch) -> RunResult | ShardResult:
    shards.check_rendezvous(launch)
    req = replace(req, device=shards.process_device(req.device, launch))
    error: Exception | None = None
    try:
        part = _run_shard(req, shards.Shard(launch.rank, launch.world_size))
    except Exception as exc:  # every process must reach the barrier, or the others wait forever
        error = exc
    shards.barrier(launch)
    if error is not None:
        raise error
    return _run_whole(req) if launch.is_main else replace(part, launched=True)


def _ordered(skipped: dict[str, str], samples: Sequence[Sample]) -> list[dict]:
    """run.json's skipped list in the run's sample order (the same however the run was split)."""
    order = {s.sample_id: i for i, s in enumerate(samples)}
    keys = sorted(skipped, key=lambda k: order.get(k, len(order)))
    return [{"sample_id": k, "reason": skipped[k]} for k in keys]


def _run_shard(req: RunRequest, shard: shards.Shard) -> ShardResult:
    """One shard: its heatmaps into heatmaps/, its scores and state under shards/; no tables."""
    t0 = time.perf_counter()
    spec = apply_overrides(load_method_spec(req.method), req.overrides)
    protocol = load_protocol(req.protocol)
    dataset = get_dataset(req.dataset, req.data_root, req.dataset_options)
    everything, chosen = eval_samples(dataset, protocol, req.limit)
    part = {s.sample_id for s in shards.select(chosen, shard)}
    skipped: dict[str, str] = {}
    valid = validate_all(chosen, req.skip_bad, skipped)  # the whole set: a method may fit on it
    skipped = {k: v for k, v in skipped.items() if k in part}
    mine = [s for s in valid if s.sample_id in part]
    rundir = RunDir(req.out or default_out(req.dataset, req.method, req.protocol))
    config = _config(spec, req, protocol)
    _check_resumable(rundir, config)
    shards.check_compatible(shards.read_records(rundir.root), config, rundir.root)
    context = RunContext(device=req.device, random_weights=req.random_weights, weights=req.weights,
                         batch_size=req.batch_size, seed=req.seed, all_samples=everything, eval_samples=valid)
    method = backend_class(spec["backend"])(spec, context)
    method.prepare(dataset)  # raises on missing checkpoints before anything is written
    files = shards.ShardFiles(rundir.root, shard)
    rundir.remove_stale_temporaries([rundir.heatmap_path(s.sample_id) for s in mine] + [files.record])
    record = shards.new_record(shard, config, shards.sample_set_id(chosen), len(mine), req.device)
    files.write(record)
    try:
        t_maps = compute_heatmaps(method, dataset, mine, rundir, req.skip_bad, skipped, req.batch_size)
        mine = [s for s in mine if s.sample_id not in skipped]
        table, t_score = score_all(mine, protocol, rundir, lambda s: Heatmap.load(rundir.heatmap_path(s.sample_id)),
                                   req.skip_bad, skipped, spec["backend"], logs=[files.scores_log],
                                   write_log=files.scores_log)
    except BaseException as exc:
        record.update({"status": "failed", "error": str(exc) or type(exc).__name__})
        files.write(record)
        raise
    record.update({
        "status": "complete",
        "skipped": _ordered(skipped, chosen),
        "provenance": method.provenance(),
        "versions": versions(),
        "timings": {"heatmaps_s": round(t_maps, 3), "scoring_s": round(t_score, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
    })
    files.write(record)
    return ShardResult(rundir.root, shard, len(table), record)


def _run_whole(req: RunRequest) -> RunResult:
    """The whole sample set in this process, taking over every result complete shards left."""
    t0 = time.perf_counter()
    spec = apply_overrides(load_method_spec(req.method), req.overrides)
    protocol = load_protocol(req.protocol)
    dataset = get_dataset(req.dataset, req.data_root, req.dataset_options)
    everything, chosen = eval_samples(dataset, protocol, req.limit)
    all_chosen = chosen
    rundir = RunDir(req.out or default_out(req.dataset, req.method, req.protocol))
    config = _config(spec, req, protocol)
    previous = _check_resumable(rundir, config)
    records = shards.read_records(rundir.root)
    merged: list[dict] = []
    skipped: dict[str, str] = {}
    if records:
        shards.check_compatible(records, config, rundir.root)
        merged = shards.complete_set(records, shards.sample_set_id(chosen), rundir.root)
        for rec in merged:
            skipped.update({item["sample_id"]: item["reason"] for item in rec.get("skipped", [])})
    chosen = validate_all(chosen, req.skip_bad, skipped)
    context = RunContext(device=req.device, random_weights=req.random_weights, weights=req.weights,
                         batch_size=req.batch_size, seed=req.seed, all_samples=everything, eval_samples=chosen)
    missing = [s for s in chosen if s.sample_id not in skipped and not rundir.heatmap_path(s.sample_id).is_file()]
    method = None
    if missing or not merged:  # merging finished shards needs no model
        method = backend_class(spec["backend"])(spec, context)
        method.prepare(dataset)  # raises on missing checkpoints before anything is written
    created = not rundir.root.exists()
    record = {
        "status": "running",
        "config": config,
        "method": spec["name"],
        "overrides": list(req.overrides),
        "dataset": req.dataset,
        "protocol": protocol.to_dict(),
        "protocol_fingerprint": protocol.fingerprint(),
        "random_weights": req.random_weights,
        "seed": req.seed,
        "device": req.device,
        "limit": req.limit,
        "n_samples": len(chosen),
    }
    if previous is None:
        rundir.write_run(record)
    rundir.remove_stale_temporaries()
    logs = [shards.ShardFiles(rundir.root, shards.Shard(i, len(merged))).scores_log for i in range(len(merged))]
    try:
        chosen = [s for s in chosen if s.sample_id not in skipped]
        t_maps = 0.0
        if method is not None:
            t_maps = compute_heatmaps(method, dataset, chosen, rundir, req.skip_bad, skipped, req.batch_size)
            chosen = [s for s in chosen if s.sample_id not in skipped]
        table, t_score = score_all(chosen, protocol, rundir, lambda s: Heatmap.load(rundir.heatmap_path(s.sample_id)),
                                   req.skip_bad, skipped, spec["backend"], logs=logs)
    except BenchError:
        if created and not any(rundir.heatmaps.glob("*.npz")):
            shutil.rmtree(rundir.root, ignore_errors=True)
        raise
    found = shards.merged_versions(merged)
    record.update({
        "skipped": _ordered(skipped, all_chosen),
        "provenance": method.provenance() if method is not None else merged[0].get("provenance", {}),
        "versions": {**found, **versions()} if method is not None or not found else found,
        "timings": {"heatmaps_s": round(t_maps, 3), "scoring_s": round(t_score, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
    })
    if merged:
        record["shards"] = [{"shard": rec["shard"], "device": rec.get("device"), "host": rec.get("host"),
                             "n_samples": rec.get("n_samples"), "timings": rec.get("timings")} for rec in merged]
    result = finish(rundir, table, protocol, record)
    shards.remove(rundir.root)
    return result


def _user_heatmap_loader(folder: Path) -> Callable[[Sample], Heatmap]:
    """Heatmaps from a run's heatmaps/ (.npz) or user .npy files at the original image size."""

    def load(s: Sample) -> Heatmap:
        name = safe_name(s.sample_id)
        npz, npy = folder / f"{name}.npz", folder / f"{name}.npy"
        if npz.is_file():
            return Heatmap.load(npz)
        if npy.is_file():
            try:
                values = np.load(npy, allow_pickle=False)
            except ValueError as exc:
                raise SampleError(s.sample_id, f"cannot read {npy}: {exc}") from None
            if values.ndim != 2 or values.shape != (s.height, s.width):
                raise SampleError(s.sample_id, f"{npy} has shape {values.shape}, expected ({s.height}, {s.width})")
            return Heatmap.from_original(values)
        raise SampleError(s.sample_id, f"no heatmap {name}.npy or {name}.npz in {folder}")

    return load


def score_folder(heatmaps: Path, dataset_name: str, protocol_name: str, out: Path, data_root: Path | None = None,
                 dataset_options: dict[str, str] | None = None, skip_bad: bool = False) -> RunResult:
    """`bench score`: score stored or user-supplied heatmaps under a protocol, without a model."""
    t0 = time.perf_counter()
    heatmaps = Path(heatmaps)
    if heatmaps.is_dir() and (heatmaps / "heatmaps").is_dir():
        heatmaps = heatmaps / "heatmaps"  # a run directory was given
    if not heatmaps.is_dir():
        raise BenchError(f"--heatmaps {heatmaps} is not a folder")
    protocol = load_protocol(protocol_name)
    dataset = get_dataset(dataset_name, data_root, dataset_options)
    source = RunDir(heatmaps.parent).read_run() if (heatmaps.parent / "run.json").is_file() else None
    available = {p.stem for p in heatmaps.iterdir() if p.suffix in (".npy", ".npz")}
    everything, chosen = eval_samples(dataset, protocol, None)
    if source and source.get("limit") is not None:
        chosen = [s for s in chosen if safe_name(s.sample_id) in available]
    skipped: dict[str, str] = {}
    chosen = validate_all(chosen, skip_bad, skipped)
    rundir = RunDir(out)
    config = {"scored": str(heatmaps.resolve()), "dataset": {"name": dataset_name,
              "options": dict(sorted((dataset_options or {}).items())),
              "data_root": str(data_root) if data_root else None}, "protocol": protocol.fingerprint()}
    previous = rundir.read_run()
    if previous is not None and previous.get("config") != config:
        raise BenchError(f"--out {rundir.root} holds a different run; choose another --out")
    if previous is None and rundir.root.exists() and any(rundir.root.iterdir()):
        raise BenchError(f"--out {rundir.root} is not empty and holds no run; choose another --out")
    rundir.remove_stale_temporaries()
    backend = record_backend(source)
    table, t_score = score_all(chosen, protocol, rundir, _user_heatmap_loader(heatmaps), skip_bad, skipped, backend)
    record = {
        "status": "running",
        "config": config,
        "method": (source or {}).get("method", "external"),
        "backend": backend,
        "overrides": (source or {}).get("overrides", []),
        "dataset": dataset_name,
        "protocol": protocol.to_dict(),
        "protocol_fingerprint": protocol.fingerprint(),
        "random_weights": bool((source or {}).get("random_weights", False)),
        "heatmaps": str(heatmaps.resolve()),
        "source_run": source.get("config") if source else None,
        "n_samples": len(table),
        "skipped": [{"sample_id": k, "reason": v} for k, v in skipped.items()],
        "provenance": (source or {}).get("provenance", {}),
        "versions": versions(),
        "timings": {"scoring_s": round(t_score, 3), "total_s": round(time.perf_counter() - t0, 3)},
    }
    return finish(rundir, table, protocol, record)
