"""`bench compare`: several runs on their common samples, with paired bootstrap differences."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..evaluation.image_bootstrap import paired_image_test, protocol_summary
from ..evaluation.pooled import with_pooled
from ..evaluation.protocols import Protocol
from ..evaluation.stats import paired_difference
from ..running import integrity
from ..running.rundir import RunDir


@dataclass
class LoadedRun:
    """A finished run directory: its name (the method), run.json and per-sample table.

    `modified` names the files that differ from the digests run.json records (read with
    allow_modified); `verified` is False for a run of an older harness that records no digests.
    """

    name: str
    root: Path
    record: dict
    samples: pd.DataFrame
    modified: list[str] = field(default_factory=list)
    verified: bool = True
    #: the digest of the run's own heatmaps/ as read (None when it has none)
    maps: integrity.HeatmapSet | None = None

    @property
    def label(self) -> str:
        """The name as tables show it: `name [modified]` when a file differs from its record."""
        return integrity.mark(self.name, self.modified)

    @property
    def protocol(self) -> Protocol:
        """The protocol the run was scored under, as recorded in its run.json."""
        return Protocol.from_dict(self.record["protocol"])

    @property
    def summary(self) -> pd.DataFrame:
        """The run's summary.csv: per category and aggregate group, mean with CI bounds and n."""
        return pd.read_csv(RunDir(self.root).summary_csv, dtype={"group": str})


def _stderr_warning(text: str) -> None:
    print(f"WARNING: {text}", file=sys.stderr)


def load_run(root: Path, allow_modified: bool = False, warn: Callable[[str], None] = _stderr_warning) -> LoadedRun:
    """The finished run in `root`, its tables checked against the digests its run.json records.

    BenchError for a folder that holds no run or an unfinished one, a table or its own heatmaps/
    that differ from their digests (unless `allow_modified`: the run is then marked modified), or a
    repeated sample id. A run of an older harness (no digests) is read with a warning that it is
    unverified. Maps a `bench score` run read from another folder are checked only where they are
    read again (re-scoring): that folder is not the run's.
    """
    rundir = RunDir(root)
    record = rundir.read_run()
    if record is None:
        raise BenchError(f"{root} is not a run directory (no run.json)")
    if record.get("status") != "complete":
        raise BenchError(f"{root} is an unfinished run; re-run its command to complete it")
    samples = rundir.read_samples(unique=False)
    checked = integrity.verify_tables(rundir.root, record, allow_modified, len(samples))
    integrity.check_unique_rows(samples, rundir.samples_csv)
    maps_checked, maps = integrity.verify_heatmaps(rundir.heatmaps, record, allow_modified)
    checked = checked.merge(maps_checked)
    if not checked.verified:
        integrity.unverified_warning(root, warn)
    if checked.modified:
        warn(f"{root}: read although modified: {', '.join(checked.modified)} changed since the run was written")
    return LoadedRun(str(record.get("method", Path(root).name)), Path(root), record, samples, checked.modified,
                     checked.verified, maps)


def check_same_samples(runs: Sequence[LoadedRun], warn: Callable[[str], None]) -> None:
    """Refuse runs on different sample lists (dataset fingerprints); warn when they scored different samples.

    Different fingerprints mean other boxes, phrases, splits or dataset options: no pairing can make
    those numbers comparable. Runs on one list that scored different subsets of it (skipped samples,
    a protocol that drops samples per model) are compared on the samples they share, and say so.
    """
    prints = {r.record.get("dataset_fingerprint") for r in runs}
    if len(prints - {None}) > 1:
        names = ", ".join(f"{r.root} ({r.record.get('dataset_fingerprint')})" for r in runs)
        raise BenchError(f"runs were scored on different sample lists (dataset fingerprints: {names}); "
                         "run them on the same dataset, options and boxes")
    if None in prints:
        old = ", ".join(str(r.root) for r in runs if r.record.get("dataset_fingerprint") is None)
        warn(f"{old}: no dataset fingerprint in run.json (older harness); cannot check the runs used the same "
             "sample list")
    sets = [set(r.samples["sample_id"]) for r in runs]
    common = set.intersection(*sets)
    if any(len(s) != len(common) for s in sets):
        sizes = ", ".join(f"{r.root}: {len(s)}" for r, s in zip(runs, sets))
        warn(f"the runs cover different samples ({sizes}); every number below is on the {len(common)} "
             "samples they all have")


def compare_runs(roots: Sequence[Path], group: str = "macro", metrics: Sequence[str] | None = None,
                 warn: Callable[[str], None] = _stderr_warning,
                 allow_modified: bool = False) -> tuple[pd.DataFrame, pd.DataFrame, Protocol]:
    """(per-run summaries on the common samples, differences of each run against the first).

    Refuses runs scored under different protocols or on different sample lists (dataset
    fingerprints): their numbers are not comparable. Runs that scored different samples of one
    list are compared on their common samples, with a warning. `group` is macro, micro or a
    category name (its mean and the paired difference on that category's samples). A run whose
    tables differ from its digests is refused, or with `allow_modified` labelled `NAME [modified]`.
    """
    if len(roots) < 2:
        raise BenchError("compare needs at least two run directories")
    resolved = [Path(r).resolve() for r in roots]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise BenchError(f"run {roots[i]} is given twice (as {roots[resolved.index(r)]} and {roots[i]}); "
                             "compare distinct runs")
    runs = [load_run(r, allow_modified, warn) for r in roots]
    fingerprints = {r.record.get("protocol_fingerprint") for r in runs}
    if len(fingerprints) > 1:
        names = ", ".join(f"{r.root} ({r.record['protocol']['name']})" for r in runs)
        raise BenchError(f"runs were scored under different protocols: {names}; re-score them with `bench score`")
    protocol = Protocol.from_dict(runs[0].record["protocol"])
    columns = list(metrics) if metrics else protocol.columns
    missing = [c for c in columns if c not in runs[0].samples.columns]
    if missing:
        raise BenchError(f"unknown metric {missing[0]!r} (known: {', '.join(protocol.columns)})")
    check_same_samples(runs, warn)
    common = set(runs[0].samples["sample_id"])
    for r in runs[1:]:
        common &= set(r.samples["sample_id"])
    if not common:
        raise BenchError("the runs share no sample")
    categories = set(runs[0].samples.loc[runs[0].samples["sample_id"].isin(common), "category"])
    if group not in ("macro", "micro") and group not in categories:
        raise BenchError(f"--group {group!r}: choose macro, micro or a category of the common samples "
                         f"({', '.join(sorted(categories))})")
    tables = []
    for r in runs:
        t = r.samples[r.samples["sample_id"].isin(common)].sort_values("sample_id").reset_index(drop=True)
        tables.append(t)
    cats = tables[0]["category"].tolist()
    summaries = []
    labels = _labels(runs)
    for label, t in zip(labels, tables):
        s = protocol_summary(t, columns, protocol)
        s = with_pooled(s, t, columns, protocol.groups, protocol.bootstrap_resamples, protocol.ci_level, protocol.seed)
        summaries.append(s.assign(run=label))
    diffs = []
    rows = np.ones(len(cats), dtype=bool) if group in ("macro", "micro") else np.asarray(cats, dtype=object) == group
    paired_group = group if group in ("macro", "micro") else "macro"  # one category: its mean is the macro
    ref = tables[0][columns].to_numpy(np.float64)[rows]
    for label, t in zip(labels[1:], tables[1:]):
        if protocol.bootstrap == "images":  # CheXlocalize's: images resampled, a category is a column of them
            d, lo, hi, p = paired_image_test(t, tables[0], columns, group, protocol.bootstrap_resamples,
                                             protocol.ci_level, protocol.seed)
        else:
            d, lo, hi, p = paired_difference(t[columns].to_numpy(np.float64)[rows], ref,
                                             [c for c, keep in zip(cats, rows) if keep], paired_group,
                                             protocol.bootstrap_resamples, protocol.ci_level, protocol.seed)
        for i, m in enumerate(columns):
            diffs.append({"run": label, "reference": labels[0], "group": group, "metric": m, "difference": d[i],
                          "ci_low": lo[i], "ci_high": hi[i], "p_value": p[i], "n": int(rows.sum())})
    return pd.concat(summaries, ignore_index=True), pd.DataFrame(diffs), protocol


def _labels(runs: Sequence[LoadedRun]) -> list[str]:
    """Each run's label in tables: its method name (with the folder when two share one), marked when modified."""
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        names = [f"{r.name} ({r.root.name})" for r in runs]
    return [integrity.mark(n, r.modified) for n, r in zip(names, runs)]
