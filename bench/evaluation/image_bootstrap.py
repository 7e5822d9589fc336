"""CheXlocalize's bootstrap (`bootstrap = "images"` of a protocol): images resampled, every pathology together.

What the published `eval.py` does (`bootstrap_metric`, `compute_cis`), and this module with it:

- The per-image table (one row per image, sorted by image id; one column per pathology, NaN where
  the metric is undefined) is resampled 1,000 times: each resample draws as many row indices as
  there are images, with replacement, by `np.random.choice` after `np.random.seed(seed)` (NumPy's
  legacy generator; `RandomState(seed).choice` gives the same draws). A resample's value of a
  pathology is the mean over its drawn rows with a value (pandas skips NaN; a row drawn twice
  counts twice).
- The interval: the resampled values sorted ascending (NaN last), the lower bound at index
  `int(0.025 * B) - 1` and the upper at `int(0.975 * B) - 1` (24 and 974 of 1,000: the 25th and
  975th smallest). With B < 40 the published lower index is -1, which wraps to the largest value;
  here it is clamped to 0 (the smallest).
- The reported value is the mean of the resampled means (NaN resamples left out), not the mean
  of the observed table. The published code rounds all three to 3 decimals; the harness keeps them.

A sample here is one (image, pathology) pair; the images are the values of the samples table's
`image_id` column (the sample id where the table has none), so an image with no finding in a
category simply has no sample of it. Published tables also hold images with no positive finding
at all (all NaN): they change which images a resample draws, so on such a dataset the intervals
match the published ones only when the dataset lists those images too, as samples with an empty GT
(`chexlocalize -O negatives=keep`).
`macro` is the mean of the category means of each resample (the published "Average" of the
percentage decrease), `micro` the mean over every drawn value.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..core.samples import Sample
from .protocols import Protocol
from .stats import SUMMARY_COLUMNS, summarise

if TYPE_CHECKING:
    import pandas as pd

IMAGE_COLUMN = "image_id"
#: the groups this bootstrap summarises (the category-size weighting of Nützel et al. is not defined for it)
GROUPS = ("macro", "micro")


def draw_counts(n_images: int, resamples: int, seed: int) -> np.ndarray:
    """(B, n) how often each image is drawn in each resample: `np.random.choice(n, n)` B times after seeding."""
    rng = np.random.RandomState(seed)
    counts = np.empty((resamples, n_images), dtype=np.float64)
    for b in range(resamples):
        counts[b] = np.bincount(rng.choice(n_images, size=n_images, replace=True), minlength=n_images)
    return counts


def index_interval(boot: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """CheXlocalize's interval along axis 0: sorted values (NaN last) at `int(a B) - 1` and `int((1 - a) B) - 1`,
    a = (1 - level) / 2 (the lower index clamped at 0)."""
    boot = np.asarray(boot, dtype=np.float64)
    b = boot.shape[0]
    alpha = round((1.0 - level) / 2.0, 12)
    lower = max(int(alpha * b) - 1, 0)
    upper = min(max(int(round(1.0 - alpha, 12) * b) - 1, 0), b - 1)
    ordered = np.sort(boot, axis=0)
    return ordered[lower], ordered[upper]


def bootstrap_mean(boot: np.ndarray) -> np.ndarray:
    """The mean of the resampled values along axis 0, NaN resamples left out (NaN when all are)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(boot, dtype=np.float64), axis=0)


class ImageTable:
    """Per-image sums and counts of every (category, metric) of a samples table, images sorted by id."""

    def __init__(self, table: pd.DataFrame, metrics: Sequence[str]) -> None:
        import pandas as pd

        key = table[IMAGE_COLUMN] if IMAGE_COLUMN in table.columns else table["sample_id"]
        key = key.astype(str)
        self.images = sorted(set(key))
        self.categories = sorted(set(table["category"].astype(str)))
        self.metrics = list(metrics)
        row = pd.Index(self.images).get_indexer(key)
        col = pd.Index(self.categories).get_indexer(table["category"].astype(str))
        values = table[self.metrics].to_numpy(np.float64)
        present = ~np.isnan(values)
        shape = (len(self.images), len(self.categories), len(self.metrics))
        self.sums, self.counts = np.zeros(shape), np.zeros(shape)
        np.add.at(self.sums, (row, col), np.where(present, values, 0.0))
        np.add.at(self.counts, (row, col), present.astype(np.float64))

    def resampled(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, C, M) sums and counts of present values of each resample."""
        flat_s = self.sums.reshape(len(self.images), -1)
        flat_c = self.counts.reshape(len(self.images), -1)
        shape = (counts.shape[0], len(self.categories), len(self.metrics))
        return (counts @ flat_s).reshape(shape), (counts @ flat_c).reshape(shape)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def group_values(group: str, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """A group's value from (..., C, M) sums and counts: macro the mean of the category means that exist
    (pandas' row mean skipping NaN), micro the mean of every present value."""
    if group == "macro":
        means = _divide(sums, counts)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(means, axis=-2)
    if group == "micro":
        return _divide(sums.sum(axis=-2), counts.sum(axis=-2))
    raise ValueError(f"the image bootstrap summarises macro and micro, not {group!r}")


def resampled_groups(table: pd.DataFrame, metrics: Sequence[str], groups: Sequence[str], resamples: int,
                     seed: int) -> tuple[ImageTable, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The image table; every category's and group's (B, M) resampled values; and its (M,) count of samples
    with a value."""
    images = ImageTable(table, metrics)
    sums, counts = images.resampled(draw_counts(len(images.images), resamples, seed))
    per_cat = _divide(sums, counts)
    present = images.counts.sum(axis=0)
    boot = {c: per_cat[:, i] for i, c in enumerate(images.categories)}
    observed = {c: present[i] for i, c in enumerate(images.categories)}
    for g in groups:
        boot[g] = group_values(g, sums, counts)
        observed[g] = present.sum(axis=0)
    return images, boot, observed


def summarise_images(table: pd.DataFrame, metrics: Sequence[str], groups: Sequence[str] = GROUPS,
                     resamples: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Long-form summary as `stats.summarise` gives it (group, metric, mean, ci_low, ci_high, n), by
    CheXlocalize's rules: `mean` is the mean of the resampled means, the bounds by its index rule, `n` the
    samples with a value."""
    import pandas as pd

    if table.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    images, boot, counts = resampled_groups(table, metrics, groups, resamples, seed)
    rows = []
    for name in [*images.categories, *groups]:
        lo, hi = index_interval(boot[name], level)
        mean = bootstrap_mean(boot[name])
        rows.extend((name, m, mean[i], lo[i], hi[i], int(counts[name][i])) for i, m in enumerate(images.metrics))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _paired_draws(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str], group: str, resamples: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, M) resampled values of `group` for A and B over the same image draws."""
    groups = [g for g in GROUPS if g == group]
    ia, boot_a, _ = resampled_groups(a, metrics, groups, resamples, seed)
    ib, boot_b, _ = resampled_groups(b, metrics, groups, resamples, seed)
    if ia.images != ib.images:
        raise ValueError("paired image bootstrap: the two tables hold different images")
    return boot_a[group], boot_b[group]


def paired_image_test(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str], group: str, resamples: int,
                      level: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A - B of a group as `stats.paired_difference` returns it (difference, ci_low, ci_high, p), by the image
    bootstrap: the mean of the resampled differences, the index-rule interval, and the two-sided share of
    resampled differences on the other side of zero (with the +1 correction)."""
    ra, rb = _paired_draws(a, b, metrics, group, resamples, seed)
    dist = ra - rb
    lo, hi = index_interval(dist, level)
    valid = (~np.isnan(dist)).sum(axis=0)
    with np.errstate(invalid="ignore"):
        below = ((dist <= 0).sum(axis=0) + 1) / (valid + 1)
        above = ((dist >= 0).sum(axis=0) + 1) / (valid + 1)
    p = np.minimum(1.0, 2.0 * np.minimum(below, above))
    diff = bootstrap_mean(dist)
    return diff, lo, hi, np.where(np.isnan(diff), np.nan, p)


def paired_images(a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str], group: str, resamples: int,
                  level: float, seed: int) -> dict[str, np.ndarray]:
    """A - B and the percentage decrease 100 (B - A) / B of a group (a category, macro or micro), both over
    the same image draws (the tables must hold the same images, as two runs on one sample list do).

    Returns `difference`, `ci_low`, `ci_high` (mean of the resampled differences and its index interval),
    and `pct_decrease`, `pct_low`, `pct_high`: CheXlocalize's `calculate_percentage_decrease.py`, whose
    point value is (mean of B's resampled means - mean of A's) / mean of B's, its interval the index rule
    over the resampled 100 (B - A) / B. Arrays over `metrics`.
    """
    ra, rb = _paired_draws(a, b, metrics, group, resamples, seed)
    diff = ra - rb
    lo, hi = index_interval(diff, level)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = 100.0 * (rb - ra) / rb
        mean_a, mean_b = bootstrap_mean(ra), bootstrap_mean(rb)
        point = 100.0 * (mean_b - mean_a) / mean_b
    pct = np.where(np.isfinite(pct), pct, np.nan)
    plo, phi = index_interval(pct, level)
    return {"difference": bootstrap_mean(diff), "ci_low": lo, "ci_high": hi,
            "pct_decrease": point, "pct_low": plo, "pct_high": phi}


def image_id(sample: Sample) -> str:
    """The image a sample belongs to: the dataset's `extra["image_id"]` or `extra["cxr_id"]` (CheXpert's
    `patient64541_study1_view1_frontal`, whose file names repeat across patients), else the image file's name
    without its suffix."""
    extra = sample.extra if isinstance(sample.extra, dict) else {}
    given = extra.get("image_id") or extra.get("cxr_id")
    if given:
        return str(given)
    name = sample.image_path.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def protocol_summary(table: pd.DataFrame, metrics: Sequence[str], protocol: Protocol) -> pd.DataFrame:
    """The summary a protocol asks for: the harness's stratified bootstrap, or CheXlocalize's image bootstrap."""
    if protocol.bootstrap == "images":
        return summarise_images(table, metrics, protocol.groups, protocol.bootstrap_resamples, protocol.ci_level,
                                protocol.seed)
    return summarise(table, metrics, protocol.groups, protocol.bootstrap_resamples, protocol.ci_level, protocol.seed,
                     protocol.weighted_nan)


__all__ = ["image_id", "protocol_summary", "GROUPS", "IMAGE_COLUMN", "ImageTable", "bootstrap_mean", "draw_counts", "group_values", "index_interval",
           "paired_image_test", "paired_images", "summarise_images"]
