"""Dataset-level metrics: ChEX's pooled IoU in the summary table.

`pooled_iou` is not a mean of per-sample values: a group's value is the sum of the intersections
over the sum of the unions of its samples (`pooled_inter`, `pooled_union` of the samples table).
summary.csv carries it as the row of metric `pooled_iou` of each group: a category's pooled IoU
over its samples, `micro` the whole set pooled (ChEX's number), `macro` the mean of the category
values; the interval resamples the samples exactly as every other metric's does (stratified by
category, the same draws), pooling each resample again. `n` is the number of samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from .box_metrics import POOLED_COUNTS
from .stats import (
    MIN_FOR_CI,
    SUMMARY_COLUMNS,
    Resampler,
    _divide,
    _group_from_sums,
    _interval,
    canonical_order,
)

if TYPE_CHECKING:
    import pandas as pd

METRIC = "pooled_iou"


def pooled_summary(table: pd.DataFrame, groups: Sequence[str], resamples: int, level: float,
                   seed: int) -> pd.DataFrame:
    """The summary rows of `pooled_iou` (columns of summary.csv) from the samples' pixel counts."""
    import pandas as pd

    table = canonical_order(table)
    inter = table[[POOLED_COUNTS[0]]].to_numpy(np.float64)
    union = table[[POOLED_COUNTS[1]]].to_numpy(np.float64)
    res = Resampler.draw(table["category"].tolist(), resamples, seed)
    sizes = np.array([len(res.index[c]) for c in res.categories])
    obs_i, _, boot_i, _ = res.category_sums(inter)
    obs_u, _, boot_u, _ = res.category_sums(union)
    few = sizes < MIN_FOR_CI
    lows, highs = _interval(_divide(boot_i, boot_u), level)
    observed = _divide(obs_i, obs_u)
    rows = []
    for ci, cat in enumerate(res.categories):
        lo, hi = (np.nan, np.nan) if few[ci] else (lows[ci, 0], highs[ci, 0])
        rows.append((cat, METRIC, observed[ci, 0], lo, hi, int(sizes[ci])))
    for group in groups:
        obs = _group_from_sums(group, obs_i, obs_u, sizes)
        lo, hi = _interval(_group_from_sums(group, boot_i, boot_u, sizes), level)
        if few.any():
            lo, hi = np.full_like(lo, np.nan), np.full_like(hi, np.nan)
        rows.append((group, METRIC, obs[0], lo[0], hi[0], int(sizes.sum())))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def with_pooled(summary: pd.DataFrame, table: pd.DataFrame, metrics: Sequence[str], groups: Sequence[str],
                resamples: int, level: float, seed: int) -> pd.DataFrame:
    """`summary` with its `pooled_iou` rows (means of the per-sample ratios) replaced by the pooled values;
    unchanged when `pooled_iou` is not among `metrics` or the table lacks the counts."""
    if METRIC not in metrics or not set(POOLED_COUNTS) <= set(table.columns) or table.empty:
        return summary
    pooled = pooled_summary(table, groups, resamples, level, seed).set_index(["group", "metric"])
    out = summary.set_index(["group", "metric"])
    out.update(pooled)
    return out.reset_index()[list(summary.columns)]


def pooled_means(table: pd.DataFrame, groups: Sequence[str]) -> pd.DataFrame:
    """Observed pooled IoU per category and group, without resampling (columns group, metric, mean, n)."""
    import pandas as pd

    names = sorted(set(table["category"]))
    sums = table.groupby("category")[list(POOLED_COUNTS)].sum().loc[names].to_numpy(np.float64)
    sizes = table.groupby("category").size().loc[names].to_numpy()
    inter, union = sums[:, :1], sums[:, 1:]
    rows = [(c, METRIC, float(_divide(inter[ci], union[ci])[0]), int(sizes[ci])) for ci, c in enumerate(names)]
    rows.extend((g, METRIC, float(_group_from_sums(g, inter, union, sizes)[0]), int(sizes.sum())) for g in groups)
    return pd.DataFrame(rows, columns=["group", "metric", "mean", "n"])
