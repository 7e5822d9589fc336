"""Running a method over a dataset, and scoring stored heatmaps under a protocol.

A run is resumable at every point: each heatmap is written atomically as soon as it exists,
per-sample scores are appended to a log, and the tables are written atomically at the end. A
re-run of the same command skips every heatmap and score already present.

A run can be split over processes (`shard`, or a multi-process launch found in the environment):
each shard does its part, and a run without a shard merges their results (see bench/running/shards.py).
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from .. import __version__
from ..core.devices import check_device
from ..core.errors import BenchError, SampleError
from ..core.fingerprint import dataset_fingerprint
from ..core.heatmap import Heatmap, read_original_map
from ..core.params import schema_of
from ..core.predictions import BoxPrediction, validate_prediction
from ..core.rows import Rows, as_frame
from ..core.samples import Sample, validate_sample
from ..datasets import get_dataset
from ..datasets.base import Dataset
from ..datasets.file_dataset import dataset_label, is_dataset_file
from ..evaluation.box_metrics import POOLED_COUNTS
from ..evaluation.box_scoring import score_prediction
from ..evaluation.gt_kinds import refused_samples
from ..evaluation.image_bootstrap import IMAGE_COLUMN, image_id, protocol_summary
from ..evaluation.pooled import METRIC as POOLED_METRIC
from ..evaluation.pooled import with_pooled
from ..evaluation.protocols import Protocol, load_protocol, protocol_spec_file
from ..evaluation.scoring import (
    ExcludedSample,
    check_values,
    is_exclusion,
    protocol_sample,
    select_samples,
)
from ..evaluation.seed_spread import seed_columns, spread
from ..evaluation.stats import SUMMARY_COLUMNS, canonical_positions, summary_rows
from ..evaluation.subset import limit_subset
from ..methods import RunContext, backend_class, method_backend
from ..methods.specs import apply_overrides, load_method_spec, method_spec_file
from . import box_files, integrity, shards
from .integrity import HeatmapSet
from .lock import check_folder, is_empty, locked
from .model_crop import crop_record, source_crop, spec_crop
from .progress import progress_bar
from .provenance import run_header
from .rundir import RunDir, file_name, record_backend

if TYPE_CHECKING:
    import pandas as pd


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
    batch_size: int | str = 8  # or "auto": the largest that fits the device's free memory (the method says)
    seed: int = 0
    precision: str | None = None  # --precision: params.precision of a model method
    shard: shards.Shard | None = None
    allow_outside_root: bool = False
    gmm_seeds: int | None = None


@dataclass
class RunResult:
    """A finished run: its folder, its two tables as written (`Rows`, or DataFrames) and run.json."""

    root: Path
    samples_data: Rows | pd.DataFrame
    summary_data: Rows | pd.DataFrame
    record: dict

    @property
    def samples(self) -> pd.DataFrame:
        return as_frame(self.samples_data)

    @property
    def summary(self) -> pd.DataFrame:
        return as_frame(self.summary_data)


@dataclass
class ShardResult:
    """What one shard did; the tables come from the merge."""

    root: Path
    shard: shards.Shard
    scored: int
    record: dict
    launched: bool = False  # part of a multi-process launch: the main process merges


def default_out(dataset: str, method: str, protocol: str) -> Path:
    return Path("runs") / f"{dataset_label(dataset)}__{method}__{protocol}"


def versions() -> dict[str, str]:
    """Versions of the harness and of the numeric packages that touched the numbers."""
    out = {"cxr-grounding-bench": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for dist in ("pandas", "torch", "diffusers", "transformers", "hi-ml-multimodal", "monai", "scipy", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def spec_files(method: str | None, protocol: str) -> dict[str, dict[str, str]]:
    """Path and sha256 of the spec files a run read (for run.json): its method's and its protocol's."""
    files = {"protocol": protocol_spec_file(protocol).record()}
    if method is not None:
        files = {"method": method_spec_file(method).record(), **files}
    return files


def eval_samples(dataset: Dataset, protocol: Protocol, limit: int | None) -> tuple[list[Sample], list[Sample]]:
    """(all samples of the dataset, the protocol's sample set cut to `limit`)."""
    everything = dataset.samples()
    check_unique_ids(everything, dataset.name)
    chosen = select_samples(everything, protocol)
    if not chosen:
        raise BenchError(f"dataset {dataset.name} has no sample in split {protocol.split!r}")
    if limit is not None:
        if limit < 1:
            raise BenchError("--limit must be at least 1")
        chosen = limit_subset(chosen, limit)
    return everything, chosen


def dataset_identity(dataset: Dataset, protocol: Protocol) -> dict:
    """For run.json: the fingerprint of the protocol's whole sample set (before --limit) and its size."""
    full = select_samples(dataset.samples(), protocol)
    return {"dataset_fingerprint": dataset_fingerprint(dataset.name, dataset.fingerprint_options(), full),
            "dataset_samples": len(full)}


def check_unique_ids(samples: Sequence[Sample], dataset: str) -> None:
    """BenchError when two samples share an id, or their heatmap files would share a name.

    Names are compared without case, so a run folder on a case-insensitive disk is safe too.
    """
    seen: dict[str, str] = {}
    for s in samples:
        key = file_name(s.sample_id).casefold()
        other = seen.setdefault(key, s.sample_id)
        if other != s.sample_id:
            raise BenchError(f"dataset {dataset}: samples {other!r} and {s.sample_id!r} would share the heatmap file "
                             f"{file_name(s.sample_id)}.npz (ids differing only in case); rename one of them")
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.sample_id] = counts.get(s.sample_id, 0) + 1
    dupes = [k for k, n in counts.items() if n > 1]
    if dupes:
        raise BenchError(f"dataset {dataset}: sample id {dupes[0]!r} is given to {counts[dupes[0]]} samples "
                         f"({len(dupes)} id(s) repeated); every sample needs its own id")


def validate_all(samples: Sequence[Sample], skip_bad: bool, skipped: dict[str, str],
                 dataset: Dataset | None = None, protocol: Protocol | None = None,
                 skip_option: str = "--skip-bad") -> list[Sample]:
    """Drop (with --skip-bad) or reject invalid samples before any work starts.

    With `protocol`, samples whose kind of ground truth it cannot score (`bench.evaluation.gt_kinds`)
    are refused in one line naming the protocol, its field, how many samples and the first, before
    any map is made or scored. With `dataset`, every image is also checked (it decodes, its size is
    the recorded one), for every method alike, so that methods which never read pixels score the
    same sample set. `skip_option` is how the caller's user asks to go on (`skip_bad=True` in Python).
    """
    good = []
    for s in samples:
        if s.sample_id in skipped:
            continue  # already recorded (by a shard being merged)
        try:
            validate_sample(s)
            good.append(s)
        except SampleError as exc:
            if not skip_bad:
                raise BenchError(f"{exc} (use {skip_option} to record it and go on)") from None
            skipped[s.sample_id] = exc.reason
    if protocol is not None:
        refused, line = refused_samples(good, protocol)
        if refused and not skip_bad:
            raise BenchError(f"{line} (use {skip_option} to record them and go on)")
        skipped.update(refused)
        good = [s for s in good if s.sample_id not in refused]
    if dataset is not None:
        problems = dataset.check_images(good)
        for s in good:
            if s.sample_id in problems:
                if not skip_bad:
                    raise BenchError(f"sample {s.sample_id}: {problems[s.sample_id]} "
                                     "(use --skip-bad to record it and go on)")
                skipped[s.sample_id] = problems[s.sample_id]
        good = [s for s in good if s.sample_id not in problems]
    return good


def _batches(items: Sequence[Sample], size: int) -> Iterator[list[Sample]]:
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def dataset_config(name: str, options: dict[str, str], data_root: Path | None, allow_outside_root: bool) -> dict:
    """The dataset part of run.json's config: what re-creates the same sample list when a run is rescored."""
    if is_dataset_file(name):  # a sample table: found again from any folder
        name = str(Path(name).expanduser().resolve())
    config = {"name": name, "options": dict(sorted(options.items())),
              "data_root": str(Path(data_root).resolve()) if data_root else None}
    if allow_outside_root:
        config["allow_outside_root"] = True
    return config


def _config(spec: dict, req: RunRequest, protocol: Protocol) -> dict:
    """What must match for a run directory to be resumed."""
    return {
        "method": spec,
        "dataset": dataset_config(req.dataset, req.dataset_options, req.data_root, req.allow_outside_root),
        "protocol": protocol.fingerprint(),
        "random_weights": req.random_weights,
        "seed": req.seed,
        "limit": req.limit,
    }


def _said_limit(limit: int | None) -> str:
    return "no --limit" if limit is None else f"--limit {limit}"


def _check_resumable(rundir: RunDir, config: dict) -> dict | None:
    previous = rundir.read_run()
    if previous is None:
        if not is_empty(rundir.root) and not rundir.holds_only_shards():
            raise BenchError(f"--out {rundir.root} is not empty and holds no run; choose another --out")
        return None
    if previous.get("config") != config:
        old = previous.get("config", {})
        if shards.differs_only_in_limit(old, config):
            raise BenchError(f"--out {rundir.root} holds a run with {_said_limit(old.get('limit'))}, this one has "
                             f"{_said_limit(config['limit'])}: a run's sample set is part of its identity; "
                             "choose another --out")
        raise BenchError(
            f"--out {rundir.root} holds a different run (method {old.get('method', {}).get('name')}, dataset "
            f"{old.get('dataset', {}).get('name')}); choose another --out, or re-score it with `bench score`"
        )
    return previous


def compute_heatmaps(method, dataset: Dataset, samples: Sequence[Sample], rundir: RunDir, skip_bad: bool,
                     skipped: dict[str, str], batch_size: int) -> float:
    """Write a heatmap for every sample that has none yet; returns the seconds spent.

    Batches are a fixed partition of `samples` (consecutive runs of `batch_size`), and a batch
    with any map missing is computed whole, so a sample's map never depends on where an earlier
    attempt stopped: a resumed run writes the same bytes as an uninterrupted one.
    """
    output = getattr(method, "output", "heatmap")
    folder = rundir.boxes if output == "boxes" else rundir.heatmaps
    batches = list(_batches(samples, batch_size))
    todo = [b for b in batches if any(not rundir.prediction_path(s.sample_id, output).is_file() for s in b)]
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    label = "boxes" if output == "boxes" else "heatmaps"
    with progress_bar(f"{method.name}: {label}", len(samples), done=len(samples) - sum(map(len, todo))) as advance:
        for batch in todo:
            for sample, pred in _run_batch(method, dataset, batch, skip_bad, skipped):
                path = rundir.prediction_path(sample.sample_id, output)
                if not path.is_file():
                    folder.mkdir(parents=True, exist_ok=True)
                    if output == "boxes":
                        box_files.write_prediction(path, sample.sample_id, pred)
                    else:
                        pred.save(path)
            advance(len(batch))
    return time.perf_counter() - start


def _run_batch(method, dataset: Dataset, batch: list[Sample], skip_bad: bool,
               skipped: dict[str, str]) -> list[tuple[Sample, Heatmap]]:
    """Heatmaps (or box predictions) of a batch; on a sample error, retry one by one to isolate the bad sample."""
    try:
        if getattr(method, "output", "heatmap") == "boxes":
            preds = method.boxes(batch, dataset)
            _check_count(method, batch, preds)
            for s, p in zip(batch, preds):
                validate_prediction(p, s.width, s.height, s.sample_id)
            return list(zip(batch, preds))
        mask = getattr(method, "output", "heatmap") == "mask"
        maps = method.masks(batch, dataset) if mask else method.heatmaps(batch, dataset)
        for s, m in zip(batch, maps):
            check_values(m, s.sample_id)
            if mask:
                check_mask(m, s.sample_id)
        return list(zip(batch, maps))
    except SampleError as exc:
        if len(batch) > 1:
            return [pair for s in batch for pair in _run_batch(method, dataset, [s], skip_bad, skipped)]
        if not skip_bad:
            raise BenchError(f"{exc} (use --skip-bad to record it and go on)") from None
        skipped[batch[0].sample_id] = exc.reason
        return []


def check_mask(heatmap: Heatmap, sample_id: str) -> None:
    """SampleError when a mask method's map holds a value other than 0 or 1 (NaN outside its field of view)."""
    values = np.asarray(heatmap.values)
    finite = values[np.isfinite(values)]
    if not np.isin(finite, (0, 1)).all():
        bad = finite[~np.isin(finite, (0, 1))][0]
        raise SampleError(sample_id, f"mask holds the value {float(bad):g}; a mask method's values are 0 or 1")


def _check_count(method, batch: Sequence[Sample], preds: Sequence) -> None:
    if len(preds) != len(batch):
        raise BenchError(f"method {method.name} returned {len(preds)} box predictions for {len(batch)} samples")


def score_all(samples: Sequence[Sample], protocol: Protocol, rundir: RunDir,
              load: Callable[[Sample], Heatmap | BoxPrediction], skip_bad: bool, skipped: dict[str, str],
              backend: str | None = None, logs: Sequence[Path] = (),
              write_log: Path | None = None, excluded: set[str] | None = None,
              model_crop: int | None = None) -> tuple[pd.DataFrame, float]:
    """`score_rows` with the samples table as a DataFrame."""
    table, seconds = score_rows(samples, protocol, rundir, load, skip_bad, skipped, backend, logs, write_log, excluded,
                                model_crop)
    return table.to_frame(), seconds


def score_rows(samples: Sequence[Sample], protocol: Protocol, rundir: RunDir,
               load: Callable[[Sample], Heatmap | BoxPrediction], skip_bad: bool, skipped: dict[str, str],
               backend: str | None = None, logs: Sequence[Path] = (),
               write_log: Path | None = None, excluded: set[str] | None = None,
               model_crop: int | None = None) -> tuple[Rows, float]:
    """Per-sample metric rows (resuming from the score log); returns (samples table, seconds).

    `backend` selects the protocol's value policy for that method backend; samples the protocol
    itself leaves out (ExcludedSample) are recorded as skipped without --skip-bad, and their ids
    added to `excluded`. Each row records the boxes the sample was scored against (`scored_boxes`,
    after the protocol's `drop_boxes`). Scores are also taken from `logs` (shard logs), and new ones
    go to `write_log` [default: the run's log]. `model_crop` is the model's crop for `drop_boxes`
    (`bench.running.model_crop`; None: read from each map, refused for a map that does not show it).
    """
    fingerprint = protocol.fingerprint()
    extra = seed_columns(protocol)
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
            if entry is not None and any(c not in entry["scores"] for c in extra):
                entry = None  # logged with fewer GMM seeds: scored again
            try:
                if entry is None:
                    values, scored = score_prediction(load(s), s, protocol, backend, model_crop)
                    entry = {"sample_id": s.sample_id, "protocol": fingerprint, "scores": values,
                             "boxes": scored.boxes_json()}
                    pending.append(entry)
                    if len(pending) >= 200:
                        rundir.append_scores(pending, write_log)
                        pending = []
                elif "boxes" not in entry:  # logged before the scored boxes were
                    entry["boxes"] = (s.boxes_json() if (protocol.drop_boxes, protocol.box_coords) == ("none", "float")
                                      else protocol_sample(load(s), s, protocol, model_crop=model_crop).boxes_json())
            except SampleError as exc:
                if not skip_bad and not isinstance(exc, ExcludedSample):
                    raise BenchError(f"{exc} (use --skip-bad to record it and go on)") from None
                skipped[s.sample_id] = exc.reason
                if isinstance(exc, ExcludedSample) and excluded is not None:
                    excluded.add(s.sample_id)
                advance(1)
                continue
            rows.append(sample_row(s, entry["scores"], protocol, entry["boxes"]))
            advance(1)
    if pending:
        rundir.append_scores(pending, write_log)
    return Rows.of_dicts(rows, sample_columns(protocol)), time.perf_counter() - start


def sample_row(sample: Sample, scores: dict[str, float], protocol: Protocol, scored_boxes: str) -> dict:
    """One row of a samples table: the sample's fields, the boxes it was scored against (JSON), then
    the protocol's metric columns."""
    row = {"sample_id": sample.sample_id, "category": sample.category, "phrase": sample.phrase,
           "split": sample.split, "width": sample.width, "height": sample.height, "boxes": sample.boxes_json(),
           "scored_boxes": scored_boxes, **{c: scores[c] for c in protocol.columns + seed_columns(protocol) + protocol.support_columns}}
    if protocol.bootstrap == "images":
        row[IMAGE_COLUMN] = image_id(sample)
    return row


def sample_columns(protocol: Protocol) -> list[str]:
    """The columns of the samples table (samples.csv), in order."""
    columns = ["sample_id", "category", "phrase", "split", "width", "height", "boxes", "scored_boxes",
               *protocol.columns, *seed_columns(protocol), *protocol.support_columns]
    if protocol.bootstrap == "images":  # the unit CheXlocalize's bootstrap resamples
        columns.append(IMAGE_COLUMN)
    return columns


def samples_table(rows: Sequence[dict], protocol: Protocol) -> pd.DataFrame:
    """The samples table (samples.csv) of rows made by `sample_row`."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=sample_columns(protocol))


def _plain_summary(table: Rows, protocol: Protocol) -> bool:
    """True when the summary is the stratified bootstrap of the metric columns alone: no image bootstrap,
    no pooled IoU and no seed spread (those are computed on a DataFrame)."""
    columns = set(table.columns)
    seeds = seed_columns(protocol)
    return (protocol.bootstrap != "images" and not (POOLED_METRIC in protocol.columns and set(POOLED_COUNTS) <= columns)
            and not (seeds and set(seeds) <= columns))


def summary_table(table: Rows | pd.DataFrame, protocol: Protocol) -> Rows | pd.DataFrame:
    """The summary (summary.csv) of a samples table: per category and aggregate group, with CIs, and
    under `gmm_seeds` > 1 the across-seed spread of each GMM metric (`seed_spread`).

    `Rows` give `Rows` where the summary needs no DataFrame (the same numbers `summarise` gives); a
    DataFrame gives a DataFrame.
    """
    if table.empty:
        raise BenchError("every sample was skipped; nothing to summarise")
    if isinstance(table, Rows) and _plain_summary(table, protocol):
        order = (canonical_positions(table.column("sample_id")) if "sample_id" in table.columns
                 else list(range(len(table))))
        metrics = [table.columns.index(m) for m in protocol.columns]
        values = np.array([[np.nan if table.rows[i][j] is None else table.rows[i][j] for j in metrics] for i in order],
                          dtype=np.float64).reshape(len(order), len(metrics))
        categories = table.column("category")
        return Rows(list(SUMMARY_COLUMNS), summary_rows([categories[i] for i in order], values, protocol.columns,
                                                        protocol.groups, protocol.bootstrap_resamples,
                                                        protocol.ci_level, protocol.seed, protocol.weighted_nan))
    table = as_frame(table)
    summary = protocol_summary(table, protocol.columns, protocol)
    summary = with_pooled(summary, table, protocol.columns, protocol.groups, protocol.bootstrap_resamples,
                          protocol.ci_level, protocol.seed)
    if not seed_columns(protocol) or not set(seed_columns(protocol)) <= set(table.columns):
        return summary
    return summary.merge(spread(table, protocol, protocol.groups), on=["group", "metric"], how="left")


def finish(rundir: RunDir, table: Rows | pd.DataFrame, protocol: Protocol, record: dict,
           maps: HeatmapSet | None = None, boxes: HeatmapSet | None = None) -> RunResult:
    """Write samples.csv, summary.csv and run.json atomically (in that order: run.json last).

    run.json records the digests of the two tables and `maps`, the digest of the heatmap set scored
    (`boxes`: of the box predictions scored).
    """
    summary = summary_table(table, protocol)
    rundir.write_table(rundir.samples_csv, table)
    rundir.write_table(rundir.summary_csv, summary)
    record["status"] = "complete"
    record["n_excluded"] = sum(is_exclusion(item["reason"]) for item in record.get("skipped", []))
    record[integrity.FIELD] = integrity.record_digests(rundir.root, len(table), maps, boxes)
    rundir.write_run(record)
    if rundir.scores_log.is_file():
        rundir.scores_log.unlink()
    return RunResult(rundir.root, table, summary, record)


def check_request(req: RunRequest) -> None:
    """BenchError for an option out of range, before anything is loaded or written."""
    check_device(req.device)
    if req.batch_size != "auto" and (not isinstance(req.batch_size, int) or req.batch_size < 1):
        raise BenchError(f"--batch-size {req.batch_size}: must be at least 1, or auto")
    if req.limit is not None and req.limit < 1:
        raise BenchError(f"--limit {req.limit}: must be at least 1")
    if req.out is not None:
        check_folder(Path(req.out))


def run(req: RunRequest) -> RunResult | ShardResult:
    """`bench run`: heatmaps for every sample of the protocol's set, scored and summarised.

    With `req.shard`, only that shard's part is done (ShardResult). Under a multi-process launch
    (WORLD_SIZE > 1 in the environment) every process does the shard of its rank on its own
    device, waits for the others, and the main process merges.
    """
    check_request(req)
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


def run_protocol(name: str, gmm_seeds: int | None = None) -> Protocol:
    """The protocol `name`, with `--gmm-seeds` in place of its own `gmm_seeds` when given."""
    protocol = load_protocol(name)
    if gmm_seeds is None or gmm_seeds == protocol.gmm_seeds:
        return protocol
    if protocol.binary_mask != "gmm":
        raise BenchError(f"--gmm-seeds: protocol {protocol.name} fits no GMM mask")
    if gmm_seeds < 1:
        raise BenchError(f"--gmm-seeds {gmm_seeds}: must be at least 1")
    return replace(protocol, gmm_seeds=gmm_seeds)


def with_precision(spec: dict, precision: str | None) -> dict:
    """`spec` with `params.precision` set by `--precision` (None: the spec's own); BenchError for a
    method whose backend has no precision."""
    if precision is None:
        return spec
    known = schema_of(backend_class(spec["backend"]).known_params) or {}
    if "precision" not in known:
        raise BenchError(f"--precision: {spec['name']} runs no model with a precision setting")
    choices = getattr(known["precision"], "choices", None)
    if choices and precision not in choices:
        raise BenchError(f"--precision {precision}: expected one of {', '.join(choices)}")
    return {**spec, "params": {**spec.get("params", {}), "precision": precision}}


def batch_size_for(method, requested: int | str) -> int:
    """The batch size a run uses: `requested`, or for "auto" the method's `fitting_batch_size()` (8 where
    the method knows no limit); BenchError naming the size that fits when `requested` does not."""
    fits = method.fitting_batch_size() if hasattr(method, "fitting_batch_size") else None
    if requested == "auto":
        return fits if fits is not None else 8
    if fits is not None and requested > fits:
        raise BenchError(f"--batch-size {requested} does not fit in the free memory of {method.context.device}: "
                         f"--batch-size {fits} fits (or --batch-size auto)")
    return int(requested)


def _load(req: RunRequest) -> tuple[dict, type, Protocol, Dataset, list[Sample], list[Sample]]:
    """The request's method spec (overrides applied), backend class, protocol, dataset, and its
    samples: every one, and the protocol's set (after --limit)."""
    spec = with_precision(apply_overrides(load_method_spec(req.method), req.overrides), req.precision)
    backend = method_backend(spec, method_spec_file(req.method).label)
    protocol = run_protocol(req.protocol, req.gmm_seeds)
    dataset = get_dataset(req.dataset, req.data_root, req.dataset_options, req.allow_outside_root)
    everything, chosen = eval_samples(dataset, protocol, req.limit)
    return spec, backend, protocol, dataset, everything, chosen


def _run_shard(req: RunRequest, shard: shards.Shard) -> ShardResult:
    """One shard: its heatmaps into heatmaps/, its scores and state under shards/; no tables."""
    t0 = time.perf_counter()
    spec, backend, protocol, dataset, everything, chosen = _load(req)
    part = {s.sample_id for s in shards.select(chosen, shard)}
    skipped: dict[str, str] = {}
    valid = validate_all(chosen, req.skip_bad, skipped, dataset, protocol)  # the whole set: a method may fit on it
    skipped = {k: v for k, v in skipped.items() if k in part}
    mine = [s for s in valid if s.sample_id in part]
    rundir = RunDir(req.out or default_out(req.dataset, spec["name"], protocol.name))
    check_folder(rundir.root)
    config = _config(spec, req, protocol)
    if rundir.root.is_dir():  # refuse a wrong --out before loading a model; checked again under the lock
        _check_resumable(rundir, config)
        shards.check_compatible(shards.read_records(rundir.root), config, rundir.root)
    context = RunContext(device=req.device, random_weights=req.random_weights, weights=req.weights,
                         batch_size=8 if req.batch_size == "auto" else req.batch_size, seed=req.seed, all_samples=everything, eval_samples=valid)
    method = backend(spec, context)
    method.prepare(dataset)  # raises on missing checkpoints before anything is written
    context.batch_size = batch_size_for(method, req.batch_size)
    files = shards.ShardFiles(rundir.root, shard)
    record = shards.new_record(shard, config, shards.sample_set_id(chosen), len(mine), req.device)
    excluded: set[str] = set()
    with locked(rundir.root):  # the check and the shard's record in one step, against a whole run
        _check_resumable(rundir, config)
        shards.check_compatible(shards.read_records(rundir.root), config, rundir.root)
        rundir.remove_stale_temporaries([rundir.prediction_path(s.sample_id, method.output) for s in mine]
                                        + [files.record])
        files.write(record)
    try:
        t_maps = compute_heatmaps(method, dataset, mine, rundir, req.skip_bad, skipped, context.batch_size)
        mine = [s for s in mine if s.sample_id not in skipped]
        table, t_score = score_all(mine, protocol, rundir, _run_loader(rundir, method.output),
                                   req.skip_bad, skipped, spec["backend"], logs=[files.scores_log],
                                   write_log=files.scores_log, excluded=excluded, model_crop=spec_crop(spec, protocol))
    except BaseException as exc:
        record.update({"status": "failed", "error": str(exc) or type(exc).__name__})
        files.write(record)
        raise
    record.update({
        "status": "complete",
        "skipped": _ordered(skipped, chosen),
        "excluded": sorted(excluded),
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
    spec, backend, protocol, dataset, everything, chosen = _load(req)
    rundir = RunDir(req.out or default_out(req.dataset, spec["name"], protocol.name))
    with locked(rundir.root):  # held from the identity check to the last table
        return _run_whole_locked(req, t0, spec, backend, protocol, dataset, everything, chosen, rundir)


def _run_whole_locked(req: RunRequest, t0: float, spec: dict, backend: type, protocol: Protocol, dataset: Dataset,
                      everything: list[Sample], chosen: list[Sample], rundir: RunDir) -> RunResult:
    all_chosen = chosen
    config = _config(spec, req, protocol)
    previous = _check_resumable(rundir, config)
    records = shards.read_records(rundir.root)
    merged: list[dict] = []
    skipped: dict[str, str] = {}
    excluded: set[str] = set()
    if records:
        shards.check_compatible(records, config, rundir.root)
        merged = shards.complete_set(records, shards.sample_set_id(chosen), rundir.root)
        for rec in merged:
            skipped.update({item["sample_id"]: item["reason"] for item in rec.get("skipped", [])})
            excluded.update(rec.get("excluded", []))
    chosen = validate_all(chosen, req.skip_bad, skipped, dataset, protocol)
    context = RunContext(device=req.device, random_weights=req.random_weights, weights=req.weights,
                         batch_size=8 if req.batch_size == "auto" else req.batch_size, seed=req.seed, all_samples=everything, eval_samples=chosen)
    output = spec.get("output", "heatmap")
    missing = [s for s in chosen if s.sample_id not in skipped
               and not rundir.prediction_path(s.sample_id, output).is_file()]
    method = None
    batch_size = 8 if req.batch_size == "auto" else req.batch_size
    if missing or not merged:  # merging finished shards needs no model
        method = backend(spec, context)
        method.prepare(dataset)  # raises on missing checkpoints before anything is written
        batch_size = context.batch_size = batch_size_for(method, req.batch_size)
    record = {
        "status": "running",
        **run_header(),
        "config": config,
        "method": spec["name"],
        **({"output": output} if output != "heatmap" else {}),
        "overrides": list(req.overrides),
        "dataset": req.dataset,
        "protocol": protocol.to_dict(),
        "protocol_fingerprint": protocol.fingerprint(),
        "random_weights": req.random_weights,
        "seed": req.seed,
        "device": req.device,
        "limit": req.limit,
        **dataset_identity(dataset, protocol),
        "n_samples": len(chosen),
        "spec_files": spec_files(req.method, req.protocol),
        "dataset_notes": list(dataset.notes),
    }
    if protocol.drop_boxes != "none":
        record["model_crop"] = crop_record(spec_crop(spec, protocol), protocol, "method spec")
    if req.limit is not None:
        record["sample_ids"] = [s.sample_id for s in all_chosen]
    if previous is None:
        rundir.write_run(record)
    rundir.remove_stale_temporaries()
    logs = [shards.ShardFiles(rundir.root, shards.Shard(i, len(merged))).scores_log for i in range(len(merged))]
    chosen = [s for s in chosen if s.sample_id not in skipped]
    t_maps = 0.0
    if method is not None:
        t_maps = compute_heatmaps(method, dataset, chosen, rundir, req.skip_bad, skipped, batch_size)
        chosen = [s for s in chosen if s.sample_id not in skipped]
    crop = spec_crop(spec, protocol)
    table, t_score = score_rows(chosen, protocol, rundir, _run_loader(rundir, output),
                               req.skip_bad, skipped, spec["backend"], logs=logs, excluded=excluded, model_crop=crop)
    found = shards.merged_versions(merged)
    record.update({
        "skipped": _ordered(skipped, all_chosen),
        "excluded": sorted(excluded),
        "provenance": method.provenance() if method is not None else merged[0].get("provenance", {}),
        "versions": {**found, **versions()} if method is not None or not found else found,
        "timings": {"heatmaps_s": round(t_maps, 3), "scoring_s": round(t_score, 3),
                    "total_s": round(time.perf_counter() - t0, 3)},
    })
    if merged:
        record["shards"] = [{"shard": rec["shard"], "device": rec.get("device"), "host": rec.get("host"),
                             "n_samples": rec.get("n_samples"), "timings": rec.get("timings")} for rec in merged]
    if output == "boxes":  # a failed sample (no usable boxes) is scored as one without boxes, and listed
        record["box_failures"] = box_files.failures(rundir.boxes, table.column("sample_id"))
        result = finish(rundir, table, protocol, record, None, box_files.box_set(rundir.boxes))
    else:
        result = finish(rundir, table, protocol, record, integrity.heatmap_set(rundir.heatmaps))
    shards.remove(rundir.root)
    return result


def _run_loader(rundir: RunDir, output: str) -> Callable[[Sample], Heatmap | BoxPrediction]:
    """The predictions a run wrote: its heatmaps, or its box predictions."""
    return box_files.folder_loader(rundir.boxes) if output == "boxes" else _run_heatmap_loader(rundir)


def _run_heatmap_loader(rundir: RunDir) -> Callable[[Sample], Heatmap]:
    """The heatmaps a run wrote, a file that cannot be read being a sample error."""

    def load(s: Sample) -> Heatmap:
        try:
            return Heatmap.load(rundir.heatmap_path(s.sample_id), (s.height, s.width))
        except ValueError as exc:
            raise SampleError(s.sample_id, str(exc)) from None

    return load


def _user_heatmap_loader(folder: Path) -> Callable[[Sample], Heatmap]:
    """Heatmaps from a run's heatmaps/ (.npz) or user .npy files at the original image size."""

    def load(s: Sample) -> Heatmap:
        name = file_name(s.sample_id)
        npz, npy = folder / f"{name}.npz", folder / f"{name}.npy"
        if npz.is_file() and npy.is_file():
            raise SampleError(s.sample_id, f"both {npy.name} and {npz.name} are in {folder}; keep one of them")
        try:
            if npz.is_file():
                return Heatmap.load(npz, (s.height, s.width))
            if npy.is_file():
                return Heatmap.from_original(read_original_map(npy, s.height, s.width))
        except ValueError as exc:
            raise SampleError(s.sample_id, str(exc)) from None
        raise SampleError(s.sample_id, f"no heatmap {name}.npy or {name}.npz in {folder}")

    return load


def _grids(folder: Path, sample_ids: Sequence[str]) -> dict[str, int]:
    """How many scored maps came on a native grid (.npz, values + geometry) and how many at the original size."""
    native = sum(1 for sid in sample_ids if (folder / f"{file_name(sid)}.npz").is_file())
    return {"native": native, "original": len(sample_ids) - native}


def _source_run(heatmaps: Path, maps: HeatmapSet | None, name: str | None,
                warn: Callable[[str], None]) -> tuple[dict | None, bool | None]:
    """The run whose maps `heatmaps` holds (its run.json beside the folder), and whether that is verified.

    The maps are the run's when their digest equals the one its run.json records: the scored run
    then keeps its method name, backend and provenance. Maps that differ (swapped, edited, your own
    maps in a run's folder) are bring-your-own and need a `name`. A run of an older harness records
    no digest: it is kept with a warning, and the leaderboard refuses what is scored from it.
    """
    path = heatmaps.parent / "run.json"
    source = RunDir(heatmaps.parent).read_run() if path.is_file() else None
    if source is None:
        return None, None
    want = (integrity.recorded(source) or {}).get("heatmaps")
    if want is None:
        warn(f"{path} records no heatmap digest (made by an older harness): the maps in {heatmaps} cannot be "
             f"shown to be its method's; scored as {name or source.get('method')}, unverified, which a "
             "leaderboard refuses (run the run's command again to record the digest)")
        return source, False
    if maps is not None and maps.digest == want:
        return source, True
    if name is None:
        recorded_files = (integrity.recorded(source) or {}).get("heatmap_files")
        files = maps.files if maps else 0
        count = f"{files} maps, {recorded_files} recorded; " if recorded_files not in (None, files) else ""
        raise BenchError(f"--heatmaps {heatmaps}: these are not the maps {path} records for method "
                         f"{source.get('method')!r} ({count}the heatmap set's digest differs); score them as your "
                         "own maps with --name NAME")
    return None, None


def score_folder(heatmaps: Path, dataset_name: str, protocol_name: str, out: Path, data_root: Path | None = None,
                 dataset_options: dict[str, str] | None = None, skip_bad: bool = False, name: str | None = None,
                 warn: Callable[[str], None] = integrity.stderr_warning, allow_outside_root: bool = False,
                 model_crop: int | None = None, gmm_seeds: int | None = None) -> RunResult:
    """`bench score`: score stored or user-supplied heatmaps under a protocol, without a model.

    Maps in a run's folder keep that run's method name only when they are the maps it recorded (the
    heatmap set's digest); other maps are your own and are named by `name` [default: external]. A
    re-scored `--limit` run keeps its limit and its sample ids. Heatmap files that are no sample
    of the protocol's set are counted in run.json (`unscored_files`) with the reason. `model_crop`
    (`--model-crop`) states the model's crop for `drop_boxes`; without it the source run's is used.
    `gmm_seeds` (`--gmm-seeds`) replaces the protocol's number of GMM seeds.
    """
    t0 = time.perf_counter()
    heatmaps = Path(heatmaps)
    if heatmaps.is_dir() and (heatmaps / "heatmaps").is_dir():
        heatmaps = heatmaps / "heatmaps"  # a run directory was given
    if not heatmaps.is_dir():
        raise BenchError(f"--heatmaps {heatmaps} is not a folder")
    if name is not None and (not name.strip() or "/" in name or name.startswith(".")):
        raise BenchError(f"--name {name!r}: a plain name is needed (no '/', not starting with '.')")
    check_folder(Path(out))
    protocol = run_protocol(protocol_name, gmm_seeds)
    dataset = get_dataset(dataset_name, data_root, dataset_options, allow_outside_root)
    maps = integrity.heatmap_set(heatmaps)
    source, source_verified = _source_run(heatmaps, maps, name, warn)
    available = {p.stem for p in heatmaps.iterdir() if p.suffix in (".npy", ".npz")}
    everything, chosen = eval_samples(dataset, protocol, None)
    limit = (source or {}).get("limit")
    if limit is not None:
        kept = source.get("sample_ids")
        if kept is not None:
            wanted = set(kept)
            chosen = [s for s in chosen if s.sample_id in wanted]
        else:
            chosen = [s for s in chosen if file_name(s.sample_id) in available]
    unscored = _unscored_files(available, everything, chosen, protocol)
    skipped: dict[str, str] = {}
    chosen = validate_all(chosen, skip_bad, skipped, protocol=protocol)
    rundir = RunDir(out)
    config = {"scored": str(heatmaps.resolve()),
              "dataset": dataset_config(dataset_name, dataset_options or {}, data_root, allow_outside_root),
              "protocol": protocol.fingerprint()}
    crop, crop_from = (model_crop, "--model-crop") if model_crop is not None else (source_crop(source, protocol),
                                                                                    "source run")
    if protocol.drop_boxes != "none":
        config["model_crop"] = crop
    with locked(rundir.root):
        rundir.open_for(config)
        backend = record_backend(source)
        excluded: set[str] = set()
        table, t_score = score_rows(chosen, protocol, rundir, _user_heatmap_loader(heatmaps), skip_bad, skipped,
                                    backend, excluded=excluded, model_crop=crop)
        record = rescore_record(
            config, name, source, backend, dataset, dataset_name, protocol, protocol_name, limit, table, skipped,
            excluded, {"heatmaps": str(heatmaps.resolve())}, source_verified,
            {"heatmap_grid": _grids(heatmaps, table.column("sample_id")), "unscored_files": unscored},
            (t_score, t0), (crop, crop_from), chosen)
        return finish(rundir, table, protocol, record, maps)


def rescore_record(config: dict, name: str | None, source: dict | None, backend: str | None, dataset: Dataset,
                   dataset_name: str, protocol: Protocol, protocol_name: str, limit: int | None,
                   table: Rows | pd.DataFrame,
                   skipped: dict[str, str], excluded: set[str], scored: dict, source_verified: bool | None,
                   specific: dict, times: tuple[float, float], crop: tuple[int | None, str],
                   chosen: Sequence[Sample]) -> dict:
    """run.json of a run that scores given predictions (maps or boxes): the shared fields, `scored` (what was
    read) after the source's facts, `specific` after the sample counts; `times` is (scoring seconds, start)."""
    t_score, t0 = times
    record = {
        "status": "running",
        **run_header(),
        "config": config,
        "method": name or (source or {}).get("method", "external"),
        "backend": backend,
        "overrides": (source or {}).get("overrides", []),
        "dataset": dataset_name,
        "protocol": protocol.to_dict(),
        "protocol_fingerprint": protocol.fingerprint(),
        "spec_files": spec_files(None, protocol_name),
        "random_weights": bool((source or {}).get("random_weights", False)),
        **scored,
        "source_run": source.get("config") if source else None,
        "source_verified": source_verified,
        "limit": limit,
        **dataset_identity(dataset, protocol),
        "n_samples": len(table),
        "skipped": [{"sample_id": k, "reason": v} for k, v in skipped.items()],
        "excluded": sorted(excluded),
        **specific,
        "dataset_notes": list(dataset.notes),
        "provenance": (source or {}).get("provenance", {}),
        "versions": versions(),
        "timings": {"scoring_s": round(t_score, 3), "total_s": round(time.perf_counter() - t0, 3)},
    }
    if protocol.drop_boxes != "none":
        record["model_crop"] = crop_record(crop[0], protocol, crop[1])
    if limit is not None:
        record["sample_ids"] = [s.sample_id for s in chosen]
    return record


def _unscored_files(available: set[str], everything: Sequence[Sample], chosen: Sequence[Sample],
                    protocol: Protocol) -> dict[str, int]:
    """How many heatmap files (by stem) are no sample of the scored set, by reason."""
    chosen_names = {file_name(s.sample_id) for s in chosen}
    split_names = {file_name(s.sample_id) for s in everything if s.split == protocol.split}
    all_names = {file_name(s.sample_id) for s in everything}
    out: dict[str, int] = {}
    for stem in available - chosen_names:
        if stem in split_names:
            reason = "outside the source run's --limit"
        elif stem in all_names:
            reason = f"not in split {protocol.split!r}"
        else:
            reason = "matching no sample of the dataset"
        out[reason] = out.get(reason, 0) + 1
    return dict(sorted(out.items()))
