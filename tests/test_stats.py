"""Summary statistics and paired comparisons against hand computations and direct resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.stats import Resampler, paired_difference, summarise


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "category": ["a", "a", "b", "b", "b", "b", "b", "b"],
        "m": [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    })


def test_group_means_match_hand_computation() -> None:
    # classes of 2 and 6 samples with means 1 and 0: macro 0.5, micro 0.25, weighted (n^2) 0.10
    s = summarise(_table(), ["m"], groups=("macro", "micro", "weighted"), resamples=200)
    means = dict(zip(s["group"], s["mean"]))
    assert means["a"] == 1.0 and means["b"] == 0.0
    assert means["macro"] == pytest.approx(0.5)
    assert means["micro"] == pytest.approx(0.25)
    assert means["weighted"] == pytest.approx(4 / 40)
    assert dict(zip(s["group"], s["n"])) == {"a": 2, "b": 6, "macro": 8, "micro": 8, "weighted": 8}
    # constant within category: every resample gives the same means, so the CI collapses
    macro = s[s["group"] == "macro"].iloc[0]
    assert macro["ci_low"] == pytest.approx(0.5) and macro["ci_high"] == pytest.approx(0.5)


def test_bootstrap_ci_matches_direct_resampling() -> None:
    rng = np.random.default_rng(3)
    n = 60
    cats = np.array(["x"] * 20 + ["y"] * 40)
    vals = rng.normal(size=n)
    table = pd.DataFrame({"category": cats, "m": vals})
    s = summarise(table, ["m"], resamples=4000, seed=11)
    res = Resampler.draw(cats.tolist(), 4000, 11)
    # direct: expand counts into index draws and average by hand
    x_means = np.array([np.repeat(vals[res.index["x"]], c).mean() for c in res.counts["x"]])
    y_means = np.array([np.repeat(vals[res.index["y"]], c).mean() for c in res.counts["y"]])
    macro = (x_means + y_means) / 2
    row = s[s["group"] == "macro"].iloc[0]
    assert row["ci_low"] == pytest.approx(np.quantile(macro, 0.025))
    assert row["ci_high"] == pytest.approx(np.quantile(macro, 0.975))
    # the interval is about 1.96 standard errors of the macro mean
    se = 0.5 * np.sqrt(vals[:20].var() / 20 + vals[20:].var() / 40)
    assert row["ci_high"] - row["ci_low"] == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_seeded_and_stratified() -> None:
    table = _table().assign(m=np.arange(8.0))
    a = summarise(table, ["m"], resamples=500, seed=1)
    b = summarise(table, ["m"], resamples=500, seed=1)
    pd.testing.assert_frame_equal(a, b)
    res = Resampler.draw(table["category"].tolist(), 500, 1)
    assert (res.counts["a"].sum(axis=1) == 2).all() and (res.counts["b"].sum(axis=1) == 6).all()


def test_paired_difference_detects_shift_and_not_noise() -> None:
    rng = np.random.default_rng(5)
    cats = ["c"] * 100 + ["d"] * 100
    base = rng.normal(size=(200, 1))
    shifted = base + 0.3 + rng.normal(scale=0.1, size=(200, 1))
    diff, lo, hi, p = paired_difference(shifted, base, cats, resamples=2000)
    assert diff[0] == pytest.approx((shifted - base).mean(), abs=1e-12)
    assert lo[0] > 0 and p[0] < 0.001
    noise = base + rng.normal(scale=0.1, size=(200, 1))
    _, lo, hi, p = paired_difference(noise, base, cats, resamples=2000)
    assert lo[0] < 0 < hi[0] and p[0] > 0.05
    _, _, _, p = paired_difference(base, base, cats, resamples=100)
    assert p[0] == 1.0
