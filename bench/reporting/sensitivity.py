"""Protocol sensitivity: the same stored heatmaps scored under several protocols, and how ranks move.

Every run's heatmaps are re-scored under each protocol (no model is run). A rescored result is a
complete run directory cached outside the run (whose folder may be read-only, or shared):
`OUT/rescored/RUN-HASH/PROTOCOL/` with `--out`, else the same under the user cache (BENCH_CACHE,
default ~/.cache/cxr-grounding-bench), keyed by the protocol's fingerprint, the content of the
run's `run.json` and the digest of the heatmap set it scores; a repeat reads it back without
scoring, and maps that changed are scored again. The maps are checked against the digest the
run recorded (refused when they differ, unless allow_modified). A run already scored under a
protocol with the same fingerprint is used as it is.

Within each protocol the methods are compared on their common samples (the protocols differ in
sample units, splits and dropped samples), per pathology and per aggregate group, and ranked on
one aggregate group (higher is better, except for `distance`). Each protocol brings its own
metrics: a metric is shown for the protocols that have it and ranked within each of them; the
others show "-" in its tables and have no rows for it in the long table.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..core import atomic
from ..core.cache import cache_root
from ..core.errors import BenchError
from ..datasets import get_dataset
from ..evaluation.box_metrics import POOLED_COUNTS
from ..evaluation.pooled import pooled_means
from ..evaluation.protocols import LOWER_IS_BETTER, Protocol, load_protocol
from ..evaluation.stats import group_means
from ..running import box_files, integrity
from ..running.integrity import HeatmapSet
from ..running.model_crop import source_crop
from ..running.rundir import RunDir, file_name, record_backend, safe_name
from ..running.runner import (
    _user_heatmap_loader,
    dataset_identity,
    eval_samples,
    finish,
    score_all,
    validate_all,
    versions,
)
from .compare import LoadedRun, _labels, load_run
from .report import headline_metrics

CACHE = "rescored"
KEY_FILE = "source.json"
COLUMNS = ["protocol", "metric", "run", "group", "mean", "n", "rank"]


@dataclass
class Rescored:
    """One run's per-sample table under one protocol, and where it came from."""

    label: str
    protocol: Protocol
    samples: pd.DataFrame
    cached: bool
    skipped: int


def default_cache() -> Path:
    """Where rescored tables go without --out: BENCH_CACHE/rescored [default: ~/.cache/cxr-grounding-bench]."""
    return cache_root() / CACHE


def rescored_folder(root: Path, protocol_name: str, cache: Path | None = None) -> Path:
    """The cached rescored run of the run at `root` under a protocol (one folder per run location)."""
    where = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    base = cache if cache is not None else default_cache()
    return base / f"{safe_name(Path(root).resolve().name)}-{where}" / safe_name(protocol_name)


def _box_folder(run: LoadedRun) -> Path | None:
    """A box run's boxes/ folder (None for a run of heatmaps)."""
    folder = RunDir(run.root).boxes
    return folder if (integrity.recorded(run.record) or {}).get("boxes") and folder.is_dir() else None


def _heatmap_folder(run: LoadedRun) -> Path:
    boxes = _box_folder(run)
    if boxes is not None:
        return boxes
    folder = integrity.maps_folder(run.root, run.record)
    if folder is None:
        raise BenchError(f"{run.root} has no heatmaps to re-score")
    return folder


def _cache_key(run: LoadedRun, protocol: Protocol, maps: HeatmapSet) -> dict:
    """What a cached rescored table was made from: the protocol, the run's record and its maps' digest."""
    digest = hashlib.sha256(RunDir(run.root).run_json.read_bytes()).hexdigest()
    return {"protocol": protocol.name, "fingerprint": protocol.fingerprint(), "source_run": digest,
            "heatmaps": maps.digest}


def check_maps(run: LoadedRun, allow_modified: bool = False) -> tuple[Path, HeatmapSet]:
    """The run's heatmap folder and its digest, checked against the digest its run.json records.

    Maps that differ are refused in one line, or with `allow_modified` added to `run.modified`.
    """
    folder = _heatmap_folder(run)
    if folder == _box_folder(run):
        found = box_files.box_set(folder)
        if found is None or found.digest != integrity.recorded(run.record).get("boxes"):
            if not allow_modified:
                raise BenchError(f"{folder} was changed after the run was written (the boxes' digest differs from the "
                                 "one run.json records); use --allow-modified to read it anyway, marked as modified")
            run.modified.append("boxes/")
        return folder, found
    if run.maps is not None and folder == RunDir(run.root).heatmaps:
        return folder, run.maps  # the run's own maps, checked when it was loaded
    checked, maps = integrity.verify_heatmaps(folder, run.record, allow_modified)
    run.modified.extend(m for m in checked.modified if m not in run.modified)
    if maps is None:
        raise BenchError(f"{run.root} has no heatmaps to re-score")
    return folder, maps


def _cached(folder: Path) -> tuple[pd.DataFrame, dict] | None:
    """A finished rescored table in the cache, its tables checked against their digests (else None)."""
    rundir = RunDir(folder)
    try:
        done = rundir.read_run()
        if done is None or done.get("status") != "complete" or integrity.recorded(done) is None:
            return None
        table = rundir.read_samples(unique=False)
        integrity.verify_tables(folder, done, rows=len(table))
        integrity.check_unique_rows(table, rundir.samples_csv)
    except BenchError:
        return None
    return table, done


def _read_key(folder: Path) -> dict | None:
    try:
        return json.loads((folder / KEY_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def rescore(run: LoadedRun, protocol: Protocol, cache: Path | None = None, allow_modified: bool = False,
            checked: tuple[Path, HeatmapSet] | None = None) -> tuple[pd.DataFrame, bool, int]:
    """(samples table, read from the cache?, samples skipped) of `run` under `protocol`; the run is only read.

    `checked` is the run's heatmap folder and digest when `check_maps` already gave them.
    """
    if run.record.get("protocol_fingerprint") == protocol.fingerprint():
        return run.samples, True, len(run.record.get("skipped", []))
    heatmaps, maps = checked or check_maps(run, allow_modified)
    folder = rescored_folder(run.root, protocol.name, cache)
    key = _cache_key(run, protocol, maps)
    if folder.exists() and _read_key(folder) != key:
        shutil.rmtree(folder)  # made from another version of the run, of its maps or of the protocol
    cached = _cached(folder)
    if cached is not None:
        return cached[0], True, len(cached[1].get("skipped", []))
    if (folder / "run.json").is_file():
        shutil.rmtree(folder)  # a finished table that no longer matches its digests, or an unreadable record
    rundir = RunDir(folder)
    atomic.write_text(folder / KEY_FILE, json.dumps(key, indent=2) + "\n")
    rundir.remove_stale_temporaries()
    return _score(run, protocol, rundir, heatmaps, maps), False, len((rundir.read_run() or {}).get("skipped", []))


def _score(run: LoadedRun, protocol: Protocol, rundir: RunDir, heatmaps: Path, maps: HeatmapSet) -> pd.DataFrame:
    """Score the run's stored heatmaps under `protocol` into `rundir` (resumable, atomic writes)."""
    t0 = time.perf_counter()
    config = run.record.get("config", {})
    data = config.get("dataset") or {}
    name = data.get("name") or run.record.get("dataset")
    if not name:
        raise BenchError(f"{run.root}/run.json does not name its dataset")
    root = data.get("data_root")
    dataset = get_dataset(name, Path(root) if root else None, data.get("options") or {},
                          bool(data.get("allow_outside_root")))
    heatmaps = _heatmap_folder(run)
    is_boxes = heatmaps == _box_folder(run)
    suffixes = (box_files.SUFFIX,) if is_boxes else (".npy", ".npz")
    available = {p.stem for p in heatmaps.iterdir() if p.suffix in suffixes}
    _, chosen = eval_samples(dataset, protocol, None)
    skipped: dict[str, str] = {}
    chosen = validate_all([s for s in chosen if file_name(s.sample_id) in available], True, skipped)
    if not chosen:
        raise BenchError(f"{run.root}: none of its heatmaps belongs to a sample of protocol {protocol.name}")
    backend = record_backend(run.record)
    loader = box_files.folder_loader(heatmaps) if is_boxes else _user_heatmap_loader(heatmaps)
    table, seconds = score_all(chosen, protocol, rundir, loader, False, skipped, backend,
                               model_crop=source_crop(run.record, protocol))
    record = {
        "status": "running",
        "method": run.record.get("method", "external"),
        "backend": backend,
        "dataset": name,
        "protocol": protocol.to_dict(),
        "protocol_fingerprint": protocol.fingerprint(),
        **dataset_identity(dataset, protocol),
        "random_weights": bool(run.record.get("random_weights", False)),
        "heatmaps": str(heatmaps.resolve()),
        "source_run": str(Path(run.root).resolve()),
        "n_samples": len(table),
        "skipped": [{"sample_id": k, "reason": v} for k, v in skipped.items()],
        "versions": versions(),
        "timings": {"scoring_s": round(seconds, 3), "total_s": round(time.perf_counter() - t0, 3)},
    }
    if is_boxes:
        finish(rundir, table, protocol, record, None, maps)
    else:
        finish(rundir, table, protocol, record, maps)
    return rundir.read_samples()  # as a repeat reads it back, so a first and a repeated report agree to the digit


def parse_protocols(text: str) -> list[Protocol]:
    """Protocols from a comma-separated list of names; BenchError for an empty or repeated list."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise BenchError("--protocols: give one or more protocol names separated by commas")
    if len(set(names)) != len(names):
        raise BenchError(f"--protocols {text!r}: a protocol is named twice")
    return [load_protocol(n) for n in names]


#: the headline metrics of the built-in protocols, in the order their tables are shown
WANTED = ("miou", "miou_fgbg", "cnr", "auc_roc", "pointing_game", "acc@0.5", "top1_iou_best", "ap@0.5", "pooled_iou")


def protocol_metrics(protocol: Protocol) -> list[str]:
    """A protocol's own headline metrics: those of `WANTED` it reports, else its first metric columns
    (`seg_iou` and `hit_rate` of chexlocalize2022)."""
    return [m for m in WANTED if m in protocol.columns] or headline_metrics(protocol.columns)


def default_metrics(protocols: Sequence[Protocol]) -> list[str]:
    """Every protocol's own headline metrics: those of `WANTED` first, in its order, then the others by protocol."""
    own = [m for p in protocols for m in protocol_metrics(p)]
    return [m for m in WANTED if m in own] + [m for m in dict.fromkeys(own) if m not in WANTED]


def _common(tables: Sequence[pd.DataFrame]) -> list[pd.DataFrame]:
    common = set(tables[0]["sample_id"])
    for t in tables[1:]:
        common &= set(t["sample_id"])
    return [t[t["sample_id"].isin(common)] for t in tables]


def sensitivity(roots: Sequence[Path], protocols: Sequence[Protocol], metrics: Sequence[str] | None = None,
                rank_group: str = "macro", cache: Path | None = None,
                allow_modified: bool = False) -> tuple[pd.DataFrame, list[Rescored]]:
    """Long table (protocol, metric, run, group, mean, n, rank) and the rescored tables (cached in `cache`).

    `rank` is set on the `rank_group` rows: 1 is the best mean of that metric under that protocol.
    Runs (tables and the maps re-scored) that differ from their digests are refused, or with
    `allow_modified` labelled `NAME [modified]`.
    """
    if not roots:
        raise BenchError("compare needs at least one run directory")
    if rank_group not in ("macro", "micro", "weighted"):
        raise BenchError(f"cannot rank on group {rank_group!r}: choose macro, micro or weighted")
    runs = [load_run(Path(r), allow_modified) for r in roots]
    checked = {}  # every run's maps checked once, before any scoring, so the labels say which are modified
    for i, run in enumerate(runs):
        if any(run.record.get("protocol_fingerprint") != p.fingerprint() for p in protocols):
            checked[i] = check_maps(run, allow_modified)
    labels = _labels(runs)
    metrics = list(metrics) if metrics else default_metrics(protocols)
    unknown = [m for m in metrics if not any(m in p.columns for p in protocols)]
    if unknown:
        raise BenchError(f"metric {unknown[0]!r} is in none of the protocols {', '.join(p.name for p in protocols)}")
    parts, rescored = [], []
    for protocol in protocols:
        tables = []
        for i, (label, run) in enumerate(zip(labels, runs)):
            table, cached, skipped = rescore(run, protocol, cache, allow_modified, checked.get(i))
            rescored.append(Rescored(label, protocol, table, cached, skipped))
            tables.append(table)
        common = _common(tables)
        if common[0].empty:
            raise BenchError(f"the runs share no sample under protocol {protocol.name}")
        here = [m for m in metrics if m in protocol.columns]
        groups = list(dict.fromkeys([rank_group, *protocol.groups]))
        for label, table in zip(labels, common):
            means = group_means(table, here, groups, protocol.weighted_nan)
            if "pooled_iou" in here and set(POOLED_COUNTS) <= set(table.columns):
                pooled = pooled_means(table, groups)
                means = pd.concat([means[means["metric"] != "pooled_iou"], pooled], ignore_index=True)
            parts.append(means.assign(protocol=protocol.name, run=label))
    long = pd.concat(parts, ignore_index=True)
    order = {m: i for i, m in enumerate(metrics)}
    long = long.sort_values("metric", key=lambda col: col.map(order), kind="stable").reset_index(drop=True)
    long["rank"] = pd.Series(pd.NA, index=long.index, dtype="Int64")
    ranked = long["group"] == rank_group
    for metric, part in long[ranked].groupby("metric"):
        # among the runs with a value: a mean over no defined sample (NaN) has no rank
        long.loc[part.index, "rank"] = (part.groupby("protocol")["mean"]
                                        .rank(method="min", ascending=metric in LOWER_IS_BETTER).astype("Int64"))
    return long[COLUMNS], rescored


def rank_table(long: pd.DataFrame, metric: str, protocols: Sequence[str] = ()) -> pd.DataFrame:
    """Ranks of each run (rows) under each protocol (columns) for one metric, and the largest move.

    `protocols` adds a column (all NA) for each listed protocol without the metric; a move is taken
    over the ranks a run has.
    """
    rows = long[long["metric"] == metric]
    part = rows[rows["rank"].notna()]
    wide = part.pivot(index="run", columns="protocol", values="rank").astype("Int64")
    columns = list(dict.fromkeys([*protocols, *rows["protocol"]]))
    wide = wide.reindex(index=list(dict.fromkeys(rows["run"])), columns=columns)
    wide["moves"] = wide.max(axis=1) - wide.min(axis=1)
    return wide


def _cell(value: object) -> str:
    """A rank as a table shows it: '-' where there is none."""
    return "-" if pd.isna(value) else str(int(value))


def print_report(long: pd.DataFrame, rescored: Sequence[Rescored], rank_group: str) -> None:
    """Per metric: each method's per-pathology and aggregate means under each protocol, with its
    rank ("-" rows for the protocols without the metric); then, when two or more protocols have it,
    how each method's rank moves between them."""
    from .report import print_table

    aggregates = ("macro", "micro", "weighted")
    protocols = list(dict.fromkeys(r.protocol.name for r in rescored))
    runs = list(dict.fromkeys(r.label for r in rescored))
    for metric in dict.fromkeys(long["metric"]):
        part = long[long["metric"] == metric]
        cats = [g for g in dict.fromkeys(part["group"]) if g not in aggregates]
        aggs = [g for g in aggregates if g in set(part["group"])]
        blocks = {key: block.set_index("group") for key, block in part.groupby(["protocol", "run"], sort=False)}
        lacking = [p for p in protocols if p not in set(part["protocol"])]
        rows = []
        for protocol in protocols:
            for run in runs:
                values = blocks.get((protocol, run))
                if values is None:
                    rows.append([protocol, run, *["-"] * (len(cats) + len(aggs) + 1)])
                    continue
                cells = [f"{values.at[g, 'mean']:.3f}" if g in values.index else "-" for g in cats + aggs]
                rows.append([protocol, run, *cells, _cell(values.at[rank_group, "rank"])])
        note = f" ('-': not a metric of {', '.join(lacking)})" if lacking else ""
        print_table(f"{metric}: per pathology and aggregate, rank on {rank_group}{note}",
                    ["protocol", "method", *cats, *aggs, "rank"], rows)
        ranks = rank_table(long, metric, protocols)
        if len(protocols) - len(lacking) > 1:
            rows = [[run, *(_cell(v) for v in ranks.loc[run])] for run in ranks.index]
            print_table(f"{metric}: rank under each protocol", ["method", *ranks.columns], rows)
    fresh = [r for r in rescored if not r.cached]
    skipped = [r for r in rescored if r.skipped]
    for r in skipped:
        print(f"{r.label} under {r.protocol.name}: {r.skipped} sample(s) not scored (reasons in its run.json)")
    print(f"{len(fresh)} of {len(rescored)} run x protocol tables scored now, the rest read back")


def compare_protocols(roots: Sequence[Path], protocols: str, metrics: Sequence[str] | None, rank_group: str,
                      out: Path | None, allow_modified: bool = False) -> pd.DataFrame:
    """`bench compare --protocols`: score, print the report, and write `sensitivity.csv` into `out`.

    The rescored tables are cached under `out` when given, else in the user cache; never in the runs.
    """
    cache = Path(out) / CACHE if out is not None else None
    long, rescored = sensitivity(roots, parse_protocols(protocols), metrics, rank_group, cache, allow_modified)
    print_report(long, rescored, rank_group)
    if out is not None:
        path = Path(out) / "sensitivity.csv"
        atomic.write_text(path, long.to_csv(index=False, float_format="%.10g"))
        print(f"table written to {path}")
    return long


__all__ = ["CACHE", "Rescored", "compare_protocols", "default_cache", "default_metrics", "parse_protocols",
           "print_report", "protocol_metrics", "rank_table", "rescore", "rescored_folder", "sensitivity"]
