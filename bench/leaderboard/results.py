"""The committed results folder: one entry per measured run, the input of the leaderboards.

An entry is `results/<dataset>/<protocol>/<name>/` holding the run's `run.json` (absolute paths
reduced to their last part, so the folder reads the same on every machine), `samples.csv`
(per-sample scores: intervals and paired tests can be recomputed), `summary.csv`, and optionally
`example.npz`, one downscaled image with its heatmap and boxes for the overlay figure.

Every entry's tables are checked against the digests its run.json records (the heatmaps are not
kept: their digest stays in run.json as the run recorded it). A table that differs is refused, or
with `allow_modified` shown as `NAME [modified]` with numbers recomputed from its samples.csv.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..core import atomic, npyfile
from ..core.errors import BenchError
from ..evaluation.box_metrics import POOLED_COUNTS
from ..evaluation.pooled import METRIC as POOLED
from ..evaluation.pooled import pooled_means
from ..evaluation.protocols import Protocol
from ..reporting.report import headline_metrics
from ..running import integrity
from ..running.box_files import box_set
from ..running.rundir import RunDir, record_output

RUN_FILES = ("run.json", "samples.csv", "summary.csv")
EXAMPLE = "example.npz"


@dataclass
class Entry:
    """One measured run in the results folder."""

    name: str
    dataset: str
    protocol: Protocol
    root: Path
    record: dict
    samples: pd.DataFrame
    summary: pd.DataFrame
    #: files that differ from the digests run.json records (an entry read with allow_modified)
    modified: list[str] = field(default_factory=list)

    @property
    def precision(self) -> str:
        """The precision the run's model ran in (`--precision`; runs that record none ran in fp32)."""
        return str((self.record.get("provenance") or {}).get("precision", "fp32"))

    @property
    def label(self) -> str:
        """The entry as tables and pages show it: `NAME [bf16]` when its model ran at a reduced precision,
        and `[modified]` when a file differs from its record."""
        name = self.name if self.precision == "fp32" else f"{self.name} [{self.precision}]"
        return integrity.mark(name, self.modified)

    @property
    def board(self) -> tuple[str, str]:
        return self.dataset, self.protocol.name

    @property
    def example(self) -> Path | None:
        path = self.root / EXAMPLE
        return path if path.is_file() else None


def dataset_key(record: dict) -> str:
    """The dataset a run was scored on, with its options: `phantom`, `phantom__size-mimic`."""
    config = record.get("config", {}).get("dataset", {})
    name = config.get("name") or record.get("dataset")
    if not name:
        raise BenchError("run.json names no dataset")
    options = config.get("options") or {}
    return name + "".join(f"__{k}-{v}" for k, v in sorted(options.items()))


def entry_name(record: dict) -> str:
    """The method name, with a short hash of the spec overrides when there are any."""
    name = str(record.get("method", "external"))
    overrides = record.get("overrides") or []
    if overrides:
        name += "__" + hashlib.sha256(json.dumps(sorted(overrides)).encode()).hexdigest()[:8]
    return name


def _portable(value):
    """A copy of a JSON value with absolute paths reduced to their last part."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and value.startswith("/") and len(value) > 1:
        return Path(value).name
    return value


def check_admissible(record: dict, where: str, scored: int | None = None) -> None:
    """Refuse runs that must not enter a leaderboard, with the reason.

    A leaderboard row stands for the protocol's whole sample set: every sample of it must be
    scored (`scored` rows in samples.csv) or left out by the protocol itself (`excluded`), and the
    run must carry the dataset fingerprint that identifies that set.
    """
    if record.get("random_weights"):
        raise BenchError(f"{where} was run with random weights (run.json random_weights: true); "
                         "such runs never enter a leaderboard")
    if record.get("status") != "complete":
        raise BenchError(f"{where} is an unfinished run; re-run its command to complete it")
    if record.get("limit") is not None:
        raise BenchError(f"{where} scored only a {record['limit']}-sample subset (--limit); "
                         "a leaderboard needs the protocol's whole sample set")
    if integrity.recorded(record) is None:
        raise BenchError(f"{where} records no digests of its tables in run.json (made by an older harness); "
                         "run its command again (it resumes and records them), then add it")
    if record.get("source_verified") is False:
        raise BenchError(f"{where} scored the maps of a run made by an older harness, which records no heatmap "
                         "digest, so they cannot be shown to be its method's; run that run's command again, "
                         "then score it again")
    if not record.get("dataset_fingerprint") or record.get("dataset_samples") is None:
        raise BenchError(f"{where} has no dataset fingerprint in run.json (made by an older harness); "
                         "re-score it with `bench score` to record which samples it covers")
    excluded = set(record.get("excluded") or [])
    failed = [item["sample_id"] for item in record.get("skipped") or [] if item["sample_id"] not in excluded]
    if failed:
        raise BenchError(f"{where} skipped {len(failed)} of the protocol's {record['dataset_samples']} samples "
                         f"(first: {failed[0]}); a leaderboard needs every sample scored")
    if scored is not None and scored + len(excluded) != int(record["dataset_samples"]):
        raise BenchError(f"{where} scored {scored} samples (+{len(excluded)} left out by the protocol) of the "
                         f"protocol's {record['dataset_samples']}; a leaderboard needs the whole sample set")


def check_same_dataset(records: dict[str, dict], where: str) -> None:
    """Runs on one page must have been scored on the same sample list (one dataset fingerprint)."""
    prints = {r.get("dataset_fingerprint") for r in records.values()}
    if len(prints) > 1:
        names = ", ".join(f"{n} ({r.get('dataset_fingerprint')})" for n, r in sorted(records.items()))
        raise BenchError(f"{where}: runs scored on different sample lists (dataset fingerprints {names}); a "
                         "run on another box list, split or dataset option cannot share a leaderboard page")


@dataclass
class Added:
    """What `add_run` did: the entry folder, the entry it replaced (with the headline moves), the example."""

    entry: Path
    replaced: str | None = None
    example: bool = False


def _headline_moves(old: pd.DataFrame, new: pd.DataFrame, protocol: Protocol, group: str = "macro") -> str:
    """`miou 0.345 -> 0.412, cnr 1.200 -> 1.310`: the headline means on `group`, old entry to new run."""
    def means(summary: pd.DataFrame) -> dict[str, float]:
        part = summary[summary["group"] == group]
        return dict(zip(part["metric"], part["mean"]))

    before, after = means(old), means(new)
    return ", ".join(f"{m} {before.get(m, float('nan')):.3f} -> {after.get(m, float('nan')):.3f}"
                     for m in headline_metrics(protocol.columns))


def _verified_tables(run: RunDir, record: dict, where: str, allow_modified: bool) -> tuple[pd.DataFrame, list[str]]:
    """The run's samples table and the files that differ from its digests (BenchError unless allowed)."""
    for f in RUN_FILES:
        if not (run.root / f).is_file():
            raise BenchError(f"{where} has no {f}")
    samples = run.read_samples(unique=False)
    checked = integrity.verify_tables(run.root, record, allow_modified, len(samples))
    integrity.check_unique_rows(samples, run.samples_csv)
    return samples, checked.modified


def add_run(run_dir: Path, results: Path, name: str | None = None, replace: bool = False,
            allow_modified: bool = False, check: Callable[[list[Entry]], None] | None = None) -> Added:
    """Copy a finished run into the results folder; everything is checked before the copy.

    The run's tables are checked against their digests and the run must be admissible; the entry
    is staged in a hidden folder beside its place and read back as the build reads it, and `check`
    (the page build) runs on the page's entries with it. Only then is it renamed into place, so a
    refused run leaves results/ as it was. An entry of the same name is replaced, as a whole, only
    with `replace`. The example for the overlay figure is made from the run's heatmaps when they
    (checked against their digest) and the dataset's images are at hand.
    """
    from .examples import make_example

    run = RunDir(Path(run_dir))
    record = run.read_run()
    if record is None:
        raise BenchError(f"{run_dir} is not a run directory (no run.json)")
    samples, _ = _verified_tables(run, record, str(run_dir), allow_modified)
    check_admissible(record, str(run_dir), len(samples))
    own, found = integrity.verify_heatmaps(run.heatmaps, record, allow_modified)  # heatmaps/ is part of the run
    maps = integrity.maps_folder(run.root, record)
    if maps is not None and maps != run.heatmaps:
        found = integrity.heatmap_set(maps)
    # the example only from the maps the run scored (a folder `bench score` read may have changed since)
    example_maps = not own.modified and found is not None and found.digest == integrity.recorded(record)["heatmaps"]
    if record_output(record) == "boxes":  # the example from the boxes the run recorded, unchanged
        boxes = box_set(run.boxes)
        example_maps = boxes is not None and boxes.digest == integrity.recorded(record).get("boxes")
    protocol = Protocol.from_dict(record["protocol"])
    entry_name_ = name or entry_name(record)
    if not entry_name_ or "/" in entry_name_ or entry_name_.startswith("."):
        raise BenchError(f"--name {entry_name_!r}: a plain folder name is needed")
    parent = Path(results) / dataset_key(record) / protocol.name
    target = parent / entry_name_
    replaced = None
    if (target / "run.json").is_file():
        old = RunDir(target)
        moves = _headline_moves(pd.read_csv(old.summary_csv, dtype={"group": str}),
                                pd.read_csv(run.summary_csv, dtype={"group": str}), protocol)
        what = f"{target} already holds {entry_name_} (added {(old.read_run() or {}).get('date') or 'undated'})"
        if not replace:
            raise BenchError(f"{what}; this run would move the macro means {moves}; give --replace to replace it, "
                             "or --name for an entry of its own")
        replaced = f"{what}; macro means {moves}"
    elif target.exists():
        raise BenchError(f"{target} exists and holds no run; move it away first")
    others = {p.parent.name: RunDir(p.parent).read_run() for p in parent.glob("*/run.json")
              if p.parent.name != entry_name_ and not p.parent.name.startswith(".")}
    check_same_dataset({entry_name_: record, **others}, f"{dataset_key(record)} under {protocol.name}")
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry_name_}.", suffix=".tmp", dir=parent))
    try:
        staging.chmod(0o777 & ~atomic.current_umask())  # mkdtemp makes it private
        (staging / "run.json").write_text(json.dumps(_portable(record), indent=2) + "\n")
        for f in ("samples.csv", "summary.csv"):
            shutil.copyfile(run.root / f, staging / f)
        example = example_maps and make_example(run, record, protocol, staging / EXAMPLE)
        entry = _load_entry(staging, allow_modified, at=target)
        if check is not None:
            check([entry, *(_load_entry(p.parent, allow_modified) for p in sorted(parent.glob("*/run.json"))
                            if p.parent.name != entry_name_ and not p.parent.name.startswith("."))])
        old_copy = None
        if target.exists():
            old_copy = Path(tempfile.mkdtemp(prefix=f".{entry_name_}.old.", suffix=".tmp", dir=parent))
            target.rename(old_copy / "entry")
        try:
            staging.rename(target)
        except BaseException:
            if old_copy is not None:
                (old_copy / "entry").rename(target)
            raise
        if old_copy is not None:
            shutil.rmtree(old_copy, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # the dataset and protocol folders this call made, if still empty
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return Added(target, replaced, example)


def _load_entry(root: Path, allow_modified: bool = False, at: Path | None = None) -> Entry:
    """The entry in `root` (or staged there for the place `at`), checked as the build needs it."""
    at = at or root
    rundir = RunDir(root)
    record = rundir.read_run()
    if record is None:
        raise BenchError(f"{at} has no run.json")
    samples, modified = _verified_tables(rundir, record, str(at), allow_modified)
    check_admissible(record, str(at), len(samples))
    protocol = Protocol.from_dict(record["protocol"])
    dataset = dataset_key(record)
    if (at.parent.parent.name, at.parent.name) != (dataset, protocol.name):
        raise BenchError(f"{at} holds a run of {dataset} under {protocol.name}; it belongs in "
                         f"{at.parent.parent.parent / dataset / protocol.name}")
    missing = [c for c in protocol.columns if c not in samples.columns]
    if missing:
        raise BenchError(f"{at}/samples.csv has no column {missing[0]!r}")
    if modified:  # the numbers shown are those of the table as it now is
        from ..running.runner import summary_table

        summary = summary_table(samples, protocol)
    else:
        summary = pd.read_csv(root / "summary.csv", dtype={"group": str})
        _check_summary(at, samples, summary, protocol)
    return Entry(at.name, dataset, protocol, root, record, samples, summary, modified)


def _check_summary(root: Path, samples: pd.DataFrame, summary: pd.DataFrame, protocol: Protocol) -> None:
    """summary.csv must belong to samples.csv: the category means must match (under CheXlocalize's image
    bootstrap the means of the bootstrap means, recomputed from samples.csv)."""
    recomputed = None
    if protocol.bootstrap == "images":
        from ..evaluation.image_bootstrap import protocol_summary

        recomputed = protocol_summary(samples, protocol.columns, protocol)
    for metric in protocol.columns:
        if metric == POOLED and set(POOLED_COUNTS) <= set(samples.columns):
            means = pooled_means(samples, ()).set_index("group")["mean"]  # a dataset-level value, pooled
        elif recomputed is None:
            means = samples.groupby("category")[metric].mean()
        else:
            part = recomputed[(recomputed["metric"] == metric) & recomputed["group"].isin(set(samples["category"]))]
            means = part.set_index("group")["mean"]
        part = summary[summary["metric"] == metric].set_index("group")
        for cat, mean in means.items():
            if cat not in part.index or not np.isclose(part.at[cat, "mean"], mean, rtol=1e-7, atol=1e-9, equal_nan=True):
                raise BenchError(f"{root}: summary.csv does not match samples.csv ({cat}, {metric}), so the two "
                                 "tables are not from one run; run its command again to rewrite both, then add it")


def load_results(results: Path, allow_modified: bool = False) -> list[Entry]:
    """Every entry under `results/` (none is fine), sorted by dataset, protocol and name."""
    results = Path(results)
    if not results.exists():
        return []
    if not results.is_dir():
        raise BenchError(f"--results {results} is not a folder")
    roots = sorted(p.parent for p in results.glob("*/*/*/run.json") if not p.parent.name.startswith("."))
    return [_load_entry(r, allow_modified) for r in roots]


COMPARISONS = "comparisons.toml"
COMPARISON_FIELDS = ("dataset", "method", "against", "what")


@dataclass(frozen=True)
class Comparison:
    """A paired comparison a page shows besides the differences to the best method: entry `method`
    minus entry `against` on one dataset, on every page (protocol) that holds both."""

    dataset: str
    method: str
    against: str
    what: str


def load_comparisons(results: Path) -> list[Comparison]:
    """The `[[comparison]]` tables of `results/comparisons.toml` (none when the file is absent);
    BenchError in one line on an unknown or missing field."""
    path = Path(results) / COMPARISONS
    if not path.is_file():
        return []
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"{path}: {exc}") from None
    unknown = sorted(set(raw) - {"comparison"})
    if unknown:
        raise BenchError(f"{path}: unknown table {unknown[0]!r} (only [[comparison]])")
    out = []
    for i, item in enumerate(raw.get("comparison", []), start=1):
        extra = sorted(set(item) - set(COMPARISON_FIELDS))
        missing = [f for f in COMPARISON_FIELDS if not isinstance(item.get(f), str) or not item.get(f)]
        if extra or missing:
            problem = f"unknown field {extra[0]!r}" if extra else f"field {missing[0]!r} missing or not a string"
            raise BenchError(f"{path}: comparison {i}: {problem} (fields: {', '.join(COMPARISON_FIELDS)})")
        out.append(Comparison(**{f: item[f] for f in COMPARISON_FIELDS}))
    return out


def read_example(path: Path) -> dict:
    """The stored overlay example: image, heatmap (NaN outside the field of view), boxes, phrase."""
    small, text = npyfile.at_most(4096 * 4096), npyfile.at_most(1, 4 * 100_000)
    try:
        data = npyfile.read_npz(path, {"image": small, "heatmap": small, "boxes": small, "sample_id": text,
                                       "phrase": text})
    except ValueError as exc:
        raise BenchError(f"overlay example: {exc}") from None
    out = {"image": data["image"], "heatmap": data["heatmap"].astype(np.float64), "boxes": data["boxes"],
           "sample_id": str(data["sample_id"]), "phrase": str(data["phrase"]), "pred_boxes": None}
    with zipfile.ZipFile(path) as archive:
        if "pred_boxes.npy" in archive.namelist():  # a box method's boxes, or those converted from its map
            out["pred_boxes"] = npyfile.read_npz(path, {"pred_boxes": small})["pred_boxes"]
    return out
