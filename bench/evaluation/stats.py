"""Per-category summaries with stratified bootstrap CIs, and paired bootstrap comparisons.

Resampling is stratified by category (each category keeps its size), which is what makes a
macro mean's interval meaningful; 10,000 resamples, percentile intervals, a fixed seed.

A metric may be undefined for some samples (NaN, e.g. `distance` on a finding with several
boxes). Such values are left out of every mean, in the observed table and in each resample: a
category's mean is over its samples with a value, micro is over all samples with a value, and
weighted gives each such sample the size of its category. Tables without NaN take the plain route.

The resamples are drawn over the rows in sample-id order whatever order the table comes in, so the
same samples give the same interval in a run's summary, in `bench compare` and on a leaderboard.
A category with fewer than two samples (with a value) has no interval: one sample has no spread
to resample, and its zero-width "interval" would also make every aggregate's interval too narrow.
Such categories, and the aggregates over them, get NaN bounds ("no CI" in tables).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["group", "metric", "mean", "ci_low", "ci_high", "n"]
#: fewest samples of a category for a bootstrap interval
MIN_FOR_CI = 2


def canonical_positions(sample_ids: Sequence) -> list[int]:
    """Row positions in sample-id order (stable, ids compared as text): `canonical_order` on plain columns."""
    keys = [str(s) for s in sample_ids]
    return sorted(range(len(keys)), key=keys.__getitem__)


def canonical_order(table: pd.DataFrame) -> pd.DataFrame:
    """The rows in sample-id order (stable), the order every resampling draws over."""
    if "sample_id" not in table.columns:
        return table
    return table.sort_values("sample_id", kind="mergesort", key=lambda c: c.astype(str)).reset_index(drop=True)


@dataclass
class Resampler:
    """Stratified resampling weights: for each category, a (B, n_c) matrix of draw counts."""

    categories: list[str]
    index: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]

    @classmethod
    def draw(cls, categories: Sequence[str], resamples: int, seed: int) -> "Resampler":
        labels = np.asarray(categories, dtype=object)
        names = sorted(set(labels.tolist()))
        rng = np.random.default_rng(seed)
        index = {c: np.flatnonzero(labels == c) for c in names}
        counts = {c: rng.multinomial(len(index[c]), np.full(len(index[c]), 1.0 / len(index[c])), size=resamples)
                  for c in names}
        return cls(names, index, counts)

    def category_means(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Observed (C, M) and resampled (B, C, M) category means of a (n, M) value matrix."""
        observed = np.stack([values[self.index[c]].mean(axis=0) for c in self.categories])
        boot = np.stack([self.counts[c] @ values[self.index[c]] / len(self.index[c]) for c in self.categories], axis=1)
        return observed, boot

    def category_sums(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sums and counts of the non-NaN values: observed (C, M) twice, then resampled (B, C, M) twice."""
        present = ~np.isnan(values)
        filled = np.where(present, values, 0.0)
        obs_sum = np.stack([filled[self.index[c]].sum(axis=0) for c in self.categories])
        obs_count = np.stack([present[self.index[c]].sum(axis=0) for c in self.categories]).astype(np.float64)
        boot_sum = np.stack([self.counts[c] @ filled[self.index[c]] for c in self.categories], axis=1)
        boot_count = np.stack([self.counts[c] @ present[self.index[c]] for c in self.categories], axis=1)
        return obs_sum, obs_count, boot_sum, boot_count.astype(np.float64)


def _group_weights(group: str, sizes: np.ndarray) -> np.ndarray:
    """Weights over categories: macro equal, micro by size, weighted by size squared (Nützel et al.)."""
    if group == "macro":
        w = np.ones_like(sizes, dtype=np.float64)
    elif group == "micro":
        w = sizes.astype(np.float64)
    elif group == "weighted":
        w = sizes.astype(np.float64) ** 2
    else:
        raise ValueError(f"unknown summary group {group!r}")
    return w / w.sum()


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _group_from_sums(group: str, sums: np.ndarray, counts: np.ndarray, sizes: np.ndarray,
                     weighted_nan: str = "skip") -> np.ndarray:
    """A group mean from per-category sums and counts of present values; category axis is -2.

    macro: mean of the category means that exist; micro: all present values; weighted: each
    present value weighted by its category's size (sum_c n_c^2 mean_c / sum_c n_c^2 without NaN).
    `weighted_nan = "zero"` divides the weighted sum by sum_c n_c^2 whatever is missing, as the
    published Weighted_Average does (pandas skips NaN in the sum, not in the total weight).
    """
    if group == "macro":
        present = counts > 0
        means = np.where(present, _divide(sums, counts), 0.0)
        return _divide(means.sum(axis=-2), present.sum(axis=-2).astype(np.float64))
    if group == "micro":
        return _divide(sums.sum(axis=-2), counts.sum(axis=-2))
    if group == "weighted":
        w = sizes.astype(np.float64)[:, None]
        if weighted_nan == "zero":
            return (w * sums).sum(axis=-2) / float((w * w).sum())
        return _divide((w * sums).sum(axis=-2), (w * counts).sum(axis=-2))
    raise ValueError(f"unknown summary group {group!r}")


def _nan_interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the resamples that have a value (NaN where none has)."""
    alpha = (1.0 - level) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN, as it should
        return np.nanquantile(boot, alpha, axis=0), np.nanquantile(boot, 1.0 - alpha, axis=0)


def _interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    alpha = (1.0 - level) / 2.0
    return np.quantile(boot, alpha, axis=0), np.quantile(boot, 1.0 - alpha, axis=0)


def summarise(
    table: pd.DataFrame,
    metrics: Sequence[str],
    groups: Sequence[str] = ("macro", "micro"),
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
    weighted_nan: str = "skip",
) -> pd.DataFrame:
    """Long-form summary: one row per (group, metric) with mean, CI bounds and sample count.

    `table` has a `category` column and the metric columns. Groups are every category name,
    then the requested aggregate groups (`macro`, `micro`, `weighted`); `weighted_nan` as in
    `_group_from_sums`.
    """
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    table = canonical_order(table)
    values = table[list(metrics)].to_numpy(dtype=np.float64)
    rows = summary_rows(table["category"].tolist(), values, metrics, groups, resamples, level, seed, weighted_nan)
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def summary_rows(categories: Sequence[str], values: np.ndarray, metrics: Sequence[str],
                 groups: Sequence[str] = ("macro", "micro"), resamples: int = 10_000, level: float = 0.95,
                 seed: int = 0, weighted_nan: str = "skip") -> list[tuple]:
    """`summarise` on plain columns: the rows (SUMMARY_COLUMNS) of the samples' categories and their (n, M)
    metric values (NaN where undefined), both already in sample-id order (`canonical_positions`)."""
    res = Resampler.draw(list(categories), resamples, seed)
    sizes = np.array([len(res.index[c]) for c in res.categories])
    if np.isnan(values).any():
        return _summarise_present(res, values, metrics, groups, sizes, level, weighted_nan)
    observed, boot = res.category_means(values)
    rows = []
    lows, highs = _interval(boot, level)
    few = sizes < MIN_FOR_CI
    lows, highs = np.where(few[:, None], np.nan, lows), np.where(few[:, None], np.nan, highs)
    for ci, cat in enumerate(res.categories):
        for mi, m in enumerate(metrics):
            rows.append((cat, m, observed[ci, mi], lows[ci, mi], highs[ci, mi], int(sizes[ci])))
    for group in groups:
        w = _group_weights(group, sizes)
        obs = w @ observed
        lo, hi = _interval(np.einsum("c,bcm->bm", w, boot), level)
        if few.any():
            lo, hi = np.full_like(lo, np.nan), np.full_like(hi, np.nan)
        for mi, m in enumerate(metrics):
            rows.append((group, m, obs[mi], lo[mi], hi[mi], int(sizes.sum())))
    return rows


def _summarise_present(res: Resampler, values: np.ndarray, metrics: Sequence[str], groups: Sequence[str],
                       sizes: np.ndarray, level: float, weighted_nan: str = "skip") -> list[tuple]:
    """`summarise` for tables with NaN: means over present values; `n` counts them."""
    obs_sum, obs_count, boot_sum, boot_count = res.category_sums(values)
    observed = _divide(obs_sum, obs_count)
    lows, highs = _nan_interval(_divide(boot_sum, boot_count), level)
    few = (obs_count > 0) & (obs_count < MIN_FOR_CI)  # a category without any value is left out of aggregates
    lows, highs = np.where(few, np.nan, lows), np.where(few, np.nan, highs)
    rows = []
    for ci, cat in enumerate(res.categories):
        for mi, m in enumerate(metrics):
            rows.append((cat, m, observed[ci, mi], lows[ci, mi], highs[ci, mi], int(obs_count[ci, mi])))
    for group in groups:
        obs = _group_from_sums(group, obs_sum, obs_count, sizes, weighted_nan)
        lo, hi = _nan_interval(_group_from_sums(group, boot_sum, boot_count, sizes, weighted_nan), level)
        lo, hi = np.where(few.any(axis=0), np.nan, lo), np.where(few.any(axis=0), np.nan, hi)
        for mi, m in enumerate(metrics):
            rows.append((group, m, obs[mi], lo[mi], hi[mi], int(obs_count[:, mi].sum())))
    return rows


def group_means(table: pd.DataFrame, metrics: Sequence[str], groups: Sequence[str] = ("macro", "micro"),
                weighted_nan: str = "skip") -> pd.DataFrame:
    """Observed means without resampling: one row per (group, metric) with mean and sample count.

    The same groups as `summarise` (every category, then `macro`, `micro`, `weighted`), for
    tables that only need the point values.
    """
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=["group", "metric", "mean", "n"])
    names = sorted(set(table["category"]))
    by_cat = table.groupby("category")[list(metrics)]
    sizes = by_cat.size().loc[names].to_numpy()
    if table[list(metrics)].isna().to_numpy().any():
        sums = by_cat.sum(min_count=0).loc[names].to_numpy(np.float64)
        counts = by_cat.count().loc[names].to_numpy(np.float64)
        observed = _divide(sums, counts)
        rows = [(c, m, observed[ci, mi], int(counts[ci, mi])) for ci, c in enumerate(names)
                for mi, m in enumerate(metrics)]
        for group in groups:
            obs = _group_from_sums(group, sums, counts, sizes, weighted_nan)
            rows.extend((group, m, obs[mi], int(counts[:, mi].sum())) for mi, m in enumerate(metrics))
        return pd.DataFrame(rows, columns=["group", "metric", "mean", "n"])
    observed = by_cat.mean().loc[names].to_numpy(np.float64)
    rows = [(c, m, observed[ci, mi], int(sizes[ci])) for ci, c in enumerate(names) for mi, m in enumerate(metrics)]
    for group in groups:
        obs = _group_weights(group, sizes) @ observed
        rows.extend((group, m, obs[mi], int(sizes.sum())) for mi, m in enumerate(metrics))
    return pd.DataFrame(rows, columns=["group", "metric", "mean", "n"])


#: resampled differences closer to zero than this are zero (rounding of the category weights)
ZERO_TOLERANCE = 1e-12


def paired_difference(
    a: np.ndarray,
    b: np.ndarray,
    categories: Sequence[str],
    group: str = "macro",
    resamples: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Difference A - B of a group mean per metric, resampling the same samples for both.

    `a` and `b` are (n, M) matrices over the same samples in the same order. Returns
    (difference, ci_low, ci_high, two-sided p-value); p is the bootstrap estimate of how often
    the resampled difference falls on the other side of zero, with the +1 correction. With a
    category of fewer than two samples the interval and p are NaN (see the module docstring).
    """
    res = Resampler.draw(categories, resamples, seed)
    delta = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    sizes = np.array([len(res.index[c]) for c in res.categories])
    if np.isnan(delta).any():
        obs_sum, obs_count, boot_sum, boot_count = res.category_sums(delta)
        diff = _group_from_sums(group, obs_sum, obs_count, sizes)
        dist = _group_from_sums(group, boot_sum, boot_count, sizes)
        lo, hi = _nan_interval(dist, level)
    else:
        observed, boot = res.category_means(delta)
        w = _group_weights(group, sizes)
        diff = w @ observed
        dist = np.einsum("c,bcm->bm", w, boot)
        lo, hi = _interval(dist, level)
    valid = (~np.isnan(dist)).sum(axis=0)
    # a resampled difference that is zero up to the rounding of the weighted sums counts on both sides,
    # so a metric's p-value does not depend on the other columns of the call
    zero = np.isclose(dist, 0.0, rtol=0.0, atol=ZERO_TOLERANCE)
    below = (((dist < 0) | zero).sum(axis=0) + 1) / (valid + 1)
    above = (((dist > 0) | zero).sum(axis=0) + 1) / (valid + 1)
    p = np.minimum(1.0, 2.0 * np.minimum(below, above))
    with np.errstate(invalid="ignore"):
        same = np.all(np.isclose(dist, 0.0) | np.isnan(dist), axis=0) & np.isclose(diff, 0.0)
    p = np.where(same, 1.0, p)
    p = np.where(np.isnan(diff), np.nan, p)
    if (sizes < MIN_FOR_CI).any():  # a one-sample category has no spread: no interval, no test
        lo, hi, p = (np.full_like(diff, np.nan) for _ in range(3))
    return diff, lo, hi, p
