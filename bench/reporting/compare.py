"""`bench compare`: several runs on their common samples, with paired bootstrap differences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..evaluation.protocols import Protocol
from ..evaluation.stats import paired_difference, summarise
from ..running.rundir import RunDir


@dataclass
class LoadedRun:
    name: str
    root: Path
    record: dict
    samples: pd.DataFrame


def load_run(root: Path) -> LoadedRun:
    rundir = RunDir(root)
    record = rundir.read_run()
    if record is None:
        raise BenchError(f"{root} is not a run directory (no run.json)")
    if record.get("status") != "complete":
        raise BenchError(f"{root} is an unfinished run; re-run its command to complete it")
    return LoadedRun(str(record.get("method", Path(root).name)), Path(root), record, rundir.read_samples())


def compare_runs(roots: Sequence[Path], group: str = "macro", metrics: Sequence[str] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, Protocol]:
    """(per-run summaries on the common samples, differences of each run against the first).

    Refuses runs scored under different protocols: their numbers are not comparable.
    """
    if len(roots) < 2:
        raise BenchError("compare needs at least two run directories")
    resolved = [Path(r).resolve() for r in roots]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise BenchError(f"run {roots[i]} is given twice (as {roots[resolved.index(r)]} and {roots[i]}); "
                             "compare distinct runs")
    runs = [load_run(r) for r in roots]
    fingerprints = {r.record.get("protocol_fingerprint") for r in runs}
    if len(fingerprints) > 1:
        names = ", ".join(f"{r.root} ({r.record['protocol']['name']})" for r in runs)
        raise BenchError(f"runs were scored under different protocols: {names}; re-score them with `bench score`")
    protocol = Protocol.from_dict(runs[0].record["protocol"])
    columns = list(metrics) if metrics else protocol.columns
    missing = [c for c in columns if c not in runs[0].samples.columns]
    if missing:
        raise BenchError(f"unknown metric {missing[0]!r} (known: {', '.join(protocol.columns)})")
    common = set(runs[0].samples["sample_id"])
    for r in runs[1:]:
        common &= set(r.samples["sample_id"])
    if not common:
        raise BenchError("the runs share no sample")
    tables = []
    for r in runs:
        t = r.samples[r.samples["sample_id"].isin(common)].sort_values("sample_id").reset_index(drop=True)
        tables.append(t)
    cats = tables[0]["category"].tolist()
    summaries = []
    labels = _labels(runs)
    for label, t in zip(labels, tables):
        s = summarise(t, columns, protocol.groups, protocol.bootstrap_resamples, protocol.ci_level, protocol.seed,
                      protocol.weighted_nan)
        summaries.append(s.assign(run=label))
    diffs = []
    ref = tables[0][columns].to_numpy(np.float64)
    for label, t in zip(labels[1:], tables[1:]):
        d, lo, hi, p = paired_difference(t[columns].to_numpy(np.float64), ref, cats, group,
                                         protocol.bootstrap_resamples, protocol.ci_level, protocol.seed)
        for i, m in enumerate(columns):
            diffs.append({"run": label, "reference": labels[0], "group": group, "metric": m, "difference": d[i],
                          "ci_low": lo[i], "ci_high": hi[i], "p_value": p[i], "n": len(common)})
    return pd.concat(summaries, ignore_index=True), pd.DataFrame(diffs), protocol


def _labels(runs: Sequence[LoadedRun]) -> list[str]:
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{r.name} ({r.root.name})" for r in runs]
