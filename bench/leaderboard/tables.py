"""The numbers of one leaderboard: measured summaries, ranks, paired differences, reported rows."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.errors import BenchError
from ..evaluation.protocols import LOWER_IS_BETTER, Protocol
from ..evaluation.stats import paired_difference
from ..reporting.report import headline_metrics
from ..running.rundir import record_output
from .results import Comparison, Entry, check_same_dataset

AGGREGATE_GROUPS = ("macro", "micro", "weighted")


@dataclass
class Board:
    """Everything shown on one page: a dataset under one protocol."""

    dataset: str
    protocol_name: str
    entries: list[Entry] = field(default_factory=list)
    reported: pd.DataFrame | None = None
    comparisons: list[Comparison] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{self.dataset}__{self.protocol_name}"

    @property
    def protocol(self) -> Protocol | None:
        return self.entries[0].protocol if self.entries else None

    def converted(self) -> list[str]:
        """The methods whose output is not the kind the protocol's metrics score (converted to it)."""
        want = "boxes" if self.protocol is not None and self.protocol.scores_boxes else "heatmap"
        return [e.label for e in self.entries if record_output(e.record) != want]

    @property
    def conversion(self) -> str | None:
        """The conversion the protocol applies to the page's methods of the other kind, as a column header
        says it (None when every method outputs the kind the metrics score)."""
        p = self.protocol
        if p is None or not self.converted():
            return None
        if p.scores_boxes:
            return f"maps -> boxes: {p.heatmap_to_mask} mask, {p.mask_to_boxes}, {p.component_score} score"
        kinds = {record_output(e.record) for e in self.entries}
        parts = ([f"boxes -> map: {p.boxes_to_heatmap}"] if "boxes" in kinds else []) + (
            ["masks as 0/1 maps"] if "mask" in kinds else [])
        return "; ".join(parts)

    def check(self) -> None:
        """Runs on one board must have been scored under exactly the same protocol."""
        prints = {e.record.get("protocol_fingerprint") for e in self.entries}
        if len(prints) > 1:
            names = ", ".join(f"{e.name} ({e.record.get('protocol_fingerprint')})" for e in self.entries)
            raise BenchError(f"results for {self.dataset} under {self.protocol_name} were scored with different "
                             f"protocol settings: {names}; re-score them with `bench score`")
        names = [e.name for e in self.entries]
        check_same_dataset({e.name: e.record for e in self.entries}, f"results for {self.dataset} under "
                                                                     f"{self.protocol_name}")
        if len(set(names)) != len(names):
            raise BenchError(f"two results for {self.dataset} under {self.protocol_name} are named alike")

    @property
    def stale_protocol(self) -> bool:
        """True when `protocols/NAME.toml` now sets a choice differently from the one the runs used."""
        from ..evaluation.protocols import load_protocol, protocol_names

        if not self.entries or self.protocol_name not in protocol_names():
            return False
        return load_protocol(self.protocol_name).fingerprint() != self.entries[0].record.get("protocol_fingerprint")

    @property
    def metrics(self) -> list[str]:
        return self.protocol.columns if self.protocol else []

    @property
    def headline(self) -> list[str]:
        return headline_metrics(self.metrics) if self.protocol else []

    @property
    def plotted(self) -> list[str]:
        """Metrics with a figure: every column except the single-threshold IoUs (summarised by miou)."""
        return [m for m in self.metrics if not m.startswith("iou@")]


def measured(board: Board) -> pd.DataFrame:
    """Long table: method, group, metric, mean, ci_low, ci_high, n and seed_spread (the GMM mask's across-seed
    spread, NaN when the run was scored with one seed), from each run's summary.csv."""
    columns = ["method", "group", "metric", "mean", "ci_low", "ci_high", "n", "seed_spread"]
    parts = [e.summary.assign(method=e.label) for e in board.entries]
    if not parts:
        return pd.DataFrame(columns=columns)
    table = pd.concat(parts, ignore_index=True)
    if "seed_spread" not in table:
        table["seed_spread"] = np.nan
    table = table[table["metric"].isin(board.metrics)]
    return table[columns].reset_index(drop=True)


def groups(table: pd.DataFrame) -> list[str]:
    """Categories in sorted order, then the aggregate groups present."""
    present = list(dict.fromkeys(table["group"]))
    return sorted(g for g in present if g not in AGGREGATE_GROUPS) + [g for g in AGGREGATE_GROUPS if g in present]


def ranks(table: pd.DataFrame, metrics: list[str], group: str = "macro") -> pd.DataFrame:
    """Rank of every method per metric on `group` (1 = best mean: highest, lowest for `distance`; ties
    share the best rank), and the mean rank; rows ordered by mean rank, then name."""
    part = table[table["group"] == group].pivot(index="method", columns="metric", values="mean")
    out = pd.DataFrame(index=part.index)
    for m in metrics:
        out[m] = part[m].rank(ascending=m in LOWER_IS_BETTER, method="min").astype(int)
    out["mean_rank"] = out[metrics].mean(axis=1)
    out = out.reset_index().sort_values(["mean_rank", "method"], kind="mergesort").reset_index(drop=True)
    return out


def _paired(board: Board, method: str, reference: str, metric: str, group: str) -> dict | None:
    """Entry `method` minus entry `reference` on `metric`: paired bootstrap on the samples both runs
    scored (None when they share none). Keys: difference, ci_low, ci_high, p_value, n."""
    protocol = board.protocol
    by_name = {**{e.name: e for e in board.entries}, **{e.label: e for e in board.entries}}
    ref = by_name[reference].samples.set_index("sample_id")
    other = by_name[method].samples.set_index("sample_id")
    common = sorted(set(ref.index) & set(other.index))
    if not common:
        return None
    a = other.loc[common, [metric]].to_numpy(np.float64)
    b = ref.loc[common, [metric]].to_numpy(np.float64)
    d, lo, hi, p = paired_difference(a, b, ref.loc[common, "category"].tolist(), group,
                                     protocol.bootstrap_resamples, protocol.ci_level, protocol.seed)
    return {"difference": d[0], "ci_low": lo[0], "ci_high": hi[0], "p_value": p[0], "n": len(common)}


def paired_against_best(board: Board, table: pd.DataFrame, group: str = "macro") -> pd.DataFrame:
    """Per headline metric: each method minus the best one (rank 1, first by name on ties), paired
    bootstrap on the samples both runs scored. Columns: metric, method, best, difference, ci_low,
    ci_high, p_value, n."""
    rows = []
    agg = table[table["group"] == group]
    for metric in board.headline:
        part = agg[agg["metric"] == metric].sort_values(["mean", "method"], ascending=[metric in LOWER_IS_BETTER, True],
                                                        kind="mergesort")
        best = part["method"].iloc[0]
        for method in sorted(e.label for e in board.entries):
            row = None if method == best else _paired(board, method, best, metric, group)
            if row is not None:
                rows.append({"metric": metric, "method": method, "best": best, **row})
    return pd.DataFrame(rows, columns=["metric", "method", "best", "difference", "ci_low", "ci_high", "p_value", "n"])


def declared_comparisons(board: Board, group: str = "macro") -> pd.DataFrame:
    """The board's declared comparisons (`results/comparisons.toml`) whose two entries it holds, per
    headline metric. Columns: what, method, against, metric, difference, ci_low, ci_high, p_value, n."""
    names = {e.name for e in board.entries}
    rows = []
    for c in board.comparisons:
        if c.dataset != board.dataset or not {c.method, c.against} <= names:
            continue
        for metric in board.headline:
            row = _paired(board, c.method, c.against, metric, group)
            if row is not None:
                rows.append({"what": c.what, "method": c.method, "against": c.against, "metric": metric, **row})
    return pd.DataFrame(rows, columns=["what", "method", "against", "metric", "difference", "ci_low", "ci_high",
                                       "p_value", "n"])
