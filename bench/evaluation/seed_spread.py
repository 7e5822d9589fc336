"""The GMM mask's own seed noise: metrics refitted with several seeds, and their across-seed spread.

A two-component mixture fitted by k-means starts can land on different solutions for the same
map (plateau-shaped maps above all), so every metric computed from the mask moves with the seed.
With `gmm_seeds = K` (protocol default, or `--gmm-seeds K`) each sample is also scored with the
fit seeded `seed + 1` ... `seed + K - 1`; those values go to the samples table as `METRIC@seedS`
columns beside the main column (seed `seed`), and the summary gets `seed_spread`: the largest
minus the smallest of the K values of each group mean. A difference between two methods smaller
than that spread is within the mask's own noise.

The seed-dependent metrics are the mask metrics, and every metric where an empty mask zeroes the
whole sample (`on_empty_mask = "zero"`).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .protocols import MASK_METRICS, Protocol
from .stats import group_means

if TYPE_CHECKING:
    import pandas as pd

#: spreads below this are summation-order rounding of equal values, not seed noise
ROUNDING = 1e-12


def seed_dependent(protocol: Protocol) -> list[str]:
    """Metric columns whose value depends on the GMM fit's seed (none without a GMM mask)."""
    if protocol.binary_mask != "gmm":
        return []
    if protocol.on_empty_mask == "zero":
        return list(protocol.columns)
    return [c for c in protocol.columns if c in MASK_METRICS]


def extra_seeds(protocol: Protocol) -> list[int]:
    """The seeds refitted beside the protocol's own: seed + 1 ... seed + gmm_seeds - 1 (none for an unseeded fit)."""
    if protocol.gmm_seeds <= 1 or protocol.gmm_seed != "fixed" or not seed_dependent(protocol):
        return []
    return [protocol.seed + k for k in range(1, protocol.gmm_seeds)]


def seed_column(metric: str, seed: int) -> str:
    return f"{metric}@seed{seed}"


def seed_columns(protocol: Protocol) -> list[str]:
    """The samples-table columns of the refitted seeds, in order."""
    return [seed_column(m, s) for s in extra_seeds(protocol) for m in seed_dependent(protocol)]


def spread(table: pd.DataFrame, protocol: Protocol, groups: Sequence[str]) -> pd.DataFrame:
    """(group, metric, seed_spread): max minus min over the seeds of each group mean; empty without extra seeds."""
    import pandas as pd

    seeds = extra_seeds(protocol)
    metrics = seed_dependent(protocol)
    if not seeds or table.empty:
        return pd.DataFrame(columns=["group", "metric", "seed_spread"])
    means = [group_means(table, metrics, groups, protocol.weighted_nan)]
    for s in seeds:
        renamed = table[["category"]].assign(**{m: table[seed_column(m, s)] for m in metrics})
        means.append(group_means(renamed, metrics, groups, protocol.weighted_nan))
    stacked = np.stack([m["mean"].to_numpy(np.float64) for m in means])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a group without any value (distance) stays NaN
        width = np.nanmax(stacked, axis=0) - np.nanmin(stacked, axis=0)
    width[np.abs(width) < ROUNDING] = 0.0  # the same masks, summed in another order
    return means[0][["group", "metric"]].assign(seed_spread=width)


__all__ = ["extra_seeds", "seed_column", "seed_columns", "seed_dependent", "spread"]
