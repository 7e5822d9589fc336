"""The human bar of a leaderboard page: each method's gap to the `reader2` run, the dataset's second reading.

For every headline metric and every other run on the page: the gap `method - reader2` of the macro
mean, with a paired bootstrap interval over the samples both runs scored, and CheXlocalize's
percentage decrease from the human benchmark, 100 (HB - method) / HB, with its interval. Under a
protocol with `bootstrap = "images"` both come from CheXlocalize's image resampling
(`bench.evaluation.image_bootstrap.paired_images`: the mean of the resampled values, the index-rule
interval); otherwise from the protocol's stratified resampling (the observed macro means, percentile
intervals of the same resamples).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..evaluation.image_bootstrap import paired_images
from ..evaluation.stats import Resampler, _group_from_sums, _nan_interval, paired_difference
from .tables import Board

REFERENCE = "reader2"
COLUMNS = ["metric", "method", "reference", "method_mean", "reference_mean", "difference", "ci_low", "ci_high",
           "pct_decrease", "pct_low", "pct_high", "n"]


def reference_entry(board: Board):
    """The board's `reader2` entry, or None."""
    return next((e for e in board.entries if e.name == REFERENCE), None)


def _stratified_pct(a: np.ndarray, b: np.ndarray, categories: list[str], board: Board) -> tuple[float, float, float]:
    """100 (B - A) / B of the macro means, and its percentile interval over the protocol's paired resamples."""
    p = board.protocol
    res = Resampler.draw(categories, p.bootstrap_resamples, p.seed)
    sizes = np.array([len(res.index[c]) for c in res.categories])
    means = []
    for values in (a, b):
        obs_sum, obs_count, boot_sum, boot_count = res.category_sums(values)
        means.append((_group_from_sums("macro", obs_sum, obs_count, sizes)[0],
                      _group_from_sums("macro", boot_sum, boot_count, sizes)[:, 0]))
    (obs_a, boot_a), (obs_b, boot_b) = means
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        point = 100.0 * (obs_b - obs_a) / obs_b if obs_b != 0 else float("nan")
        pct = 100.0 * (boot_b - boot_a) / boot_b
        pct = np.where(np.isfinite(pct), pct, np.nan)
        lo, hi = _nan_interval(pct[:, None], p.ci_level)
    return float(point), float(lo[0]), float(hi[0])


def human_gaps(board: Board, table: pd.DataFrame) -> pd.DataFrame:
    """One row per (headline metric, method other than reader2): see the module docstring."""
    ref = reference_entry(board)
    if ref is None:
        return pd.DataFrame(columns=COLUMNS)
    p = board.protocol
    macro = table[table["group"] == "macro"].set_index(["method", "metric"])["mean"]
    rows = []
    hb = ref.samples.set_index("sample_id")
    for entry in sorted(board.entries, key=lambda e: e.name):
        if entry is ref:
            continue
        other = entry.samples.set_index("sample_id")
        common = sorted(set(hb.index) & set(other.index))
        if not common:
            continue
        for metric in board.headline:
            a, b = other.loc[common].reset_index(), hb.loc[common].reset_index()
            if p.bootstrap == "images":
                out = paired_images(a, b, [metric], "macro", p.bootstrap_resamples, p.ci_level, p.seed)
                d, lo, hi = out["difference"][0], out["ci_low"][0], out["ci_high"][0]
                pct, plo, phi = out["pct_decrease"][0], out["pct_low"][0], out["pct_high"][0]
            else:
                av, bv = a[[metric]].to_numpy(np.float64), b[[metric]].to_numpy(np.float64)
                cats = b["category"].astype(str).tolist()
                dd, dlo, dhi, _ = paired_difference(av, bv, cats, "macro", p.bootstrap_resamples, p.ci_level, p.seed)
                d, lo, hi = dd[0], dlo[0], dhi[0]
                pct, plo, phi = _stratified_pct(av, bv, cats, board)
            rows.append({"metric": metric, "method": entry.label, "reference": ref.label,
                         "method_mean": macro.get((entry.label, metric), np.nan),
                         "reference_mean": macro.get((ref.label, metric), np.nan),
                         "difference": d, "ci_low": lo, "ci_high": hi,
                         "pct_decrease": pct, "pct_low": plo, "pct_high": phi, "n": len(common)})
    return pd.DataFrame(rows, columns=COLUMNS)


def human_bar_lines(board: Board, table: pd.DataFrame) -> list[str]:
    """The page section: empty when the page has no `reader2` run."""
    from .pages import ci, md_table, num

    gaps = human_gaps(board, table)
    if reference_entry(board) is None:
        return []
    p = board.protocol
    how = ("CheXlocalize's image bootstrap: mean of the resampled values, interval at the sorted resamples' "
           "index rule" if p.bootstrap == "images" else "paired stratified bootstrap, percentile interval")
    lines = ["## Measured: gap to the human reference (reader2)", "",
             f"`{REFERENCE}` is the dataset's second, independent reading scored as a method: the human reference. "
             f"Gap = method − {REFERENCE} (macro), over the samples both runs scored; percentage decrease from the "
             f"human benchmark = 100 (HB − method) / HB, CheXlocalize's measure; {p.ci_level:.0%} intervals from "
             f"{p.bootstrap_resamples} resamples ({how}).", ""]
    if gaps.empty:
        return lines + ["No other run to compare with the human reference.", ""]
    for metric, part in gaps.groupby("metric", sort=False):
        rows = [[r["method"], num(r["method_mean"]), num(r["reference_mean"]),
                 ci(r["difference"], r["ci_low"], r["ci_high"]),
                 ci(r["pct_decrease"], r["pct_low"], r["pct_high"]), str(int(r["n"]))]
                for _, r in part.iterrows()]
        lines += [f"**{metric}**", ""]
        lines += md_table(["method", "method (macro)", f"{REFERENCE} (macro)", f"gap to {REFERENCE} [{p.ci_level:.0%} CI]",
                           f"percentage decrease from HB [{p.ci_level:.0%} CI]", "paired samples"], rows) + [""]
    return lines


__all__ = ["COLUMNS", "REFERENCE", "human_bar_lines", "human_gaps", "reference_entry"]
