"""Summary statistics and paired comparisons against hand computations and direct resampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.evaluation.stats import Resampler, _summarise_present, group_means, paired_difference, summarise


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


def test_paired_p_value_of_a_metric_does_not_depend_on_the_other_metrics() -> None:
    # a 0/1 metric whose paired difference is often exactly zero on a resample: the p-value counts
    # those zeros on both sides, whatever rounding the other columns bring to the weighted sums
    rng = np.random.default_rng(0)
    cats = [f"c{i}" for i in range(7) for _ in range(25)]
    hit = (rng.random((175, 1)) < 0.1).astype(float)
    miss = (rng.random((175, 1)) < 0.06).astype(float)
    others_a, others_b = rng.normal(size=(175, 3)), rng.normal(size=(175, 3))
    alone = paired_difference(hit, miss, cats, resamples=2000)
    joint = paired_difference(np.hstack([others_a, hit]), np.hstack([others_b, miss]), cats, resamples=2000)
    assert [float(x[0]) for x in alone] == pytest.approx([float(x[-1]) for x in joint], abs=1e-12)
    assert alone[3][0] == joint[3][-1]


def test_undefined_values_are_left_out_of_every_mean() -> None:
    # a: 1, NaN, 3 -> 2 over 2 values; b: NaN, 4 -> 4 over 1 value
    table = pd.DataFrame({"category": ["a", "a", "a", "b", "b"], "d": [1.0, np.nan, 3.0, np.nan, 4.0],
                          "m": [1.0, 1.0, 1.0, 0.0, 0.0]})
    s = summarise(table, ["d", "m"], groups=("macro", "micro", "weighted"), resamples=300).set_index(["group", "metric"])
    assert s.at[("a", "d"), "mean"] == 2.0 and s.at[("b", "d"), "mean"] == 4.0
    assert s.at[("macro", "d"), "mean"] == pytest.approx(3.0)
    assert s.at[("micro", "d"), "mean"] == pytest.approx(8 / 3)
    # each present value weighted by its category's size: (3 * (1 + 3) + 2 * 4) / (3 * 2 + 2 * 1)
    assert s.at[("weighted", "d"), "mean"] == pytest.approx(20 / 8)
    assert (s.at[("a", "d"), "n"], s.at[("b", "d"), "n"], s.at[("micro", "d"), "n"]) == (2, 1, 3)
    # a metric without NaN in the same table keeps its plain means and counts
    assert s.at[("weighted", "m"), "mean"] == pytest.approx(9 / 13) and s.at[("micro", "m"), "n"] == 5
    # b has one value: no interval for it, nor for the aggregates of d over it; m keeps its intervals
    assert np.isnan(s.at[("b", "d"), "ci_low"]) and np.isnan(s.at[("b", "d"), "ci_high"])
    assert np.isnan(s.at[("macro", "d"), "ci_low"]) and np.isfinite(s.at[("a", "d"), "ci_low"])
    assert np.isfinite(s.at[("macro", "m"), "ci_low"])
    means = group_means(table, ["d"], ("macro", "micro", "weighted")).set_index("group")
    assert (means.at["macro", "mean"], means.at["micro", "mean"]) == (pytest.approx(3.0), pytest.approx(8 / 3))
    assert means.at["weighted", "mean"] == pytest.approx(2.5) and means.at["micro", "n"] == 3


def test_nan_route_equals_plain_route_without_nan() -> None:
    rng = np.random.default_rng(8)
    cats = np.array(["x"] * 13 + ["y"] * 30 + ["z"] * 7)
    values = rng.normal(size=(50, 3))
    plain = summarise(pd.DataFrame({"category": cats, "p": values[:, 0], "q": values[:, 1], "r": values[:, 2]}),
                      ["p", "q", "r"], ("macro", "micro", "weighted"), resamples=700, seed=4)
    res = Resampler.draw(cats.tolist(), 700, 4)
    sizes = np.array([len(res.index[c]) for c in res.categories])
    present = pd.DataFrame(_summarise_present(res, values, ["p", "q", "r"], ("macro", "micro", "weighted"), sizes,
                                              0.95), columns=plain.columns)
    pd.testing.assert_frame_equal(plain, present, check_exact=False, rtol=0, atol=1e-12)


def test_nan_bootstrap_matches_direct_resampling() -> None:
    rng = np.random.default_rng(2)
    cats = np.array(["x"] * 15 + ["y"] * 25)
    vals = rng.normal(size=40)
    vals[[1, 4, 20, 33]] = np.nan
    s = summarise(pd.DataFrame({"category": cats, "d": vals}), ["d"], ("macro", "micro"), resamples=1500, seed=9)
    res = Resampler.draw(cats.tolist(), 1500, 9)
    draws = {c: [np.repeat(vals[res.index[c]], k) for k in res.counts[c]] for c in ("x", "y")}
    macro = np.array([(np.nanmean(a) + np.nanmean(b)) / 2 for a, b in zip(draws["x"], draws["y"])])
    micro = np.array([np.nanmean(np.concatenate([a, b])) for a, b in zip(draws["x"], draws["y"])])
    rows = s.set_index("group")
    assert rows.at["macro", "ci_low"] == pytest.approx(np.quantile(macro, 0.025), abs=1e-12)
    assert rows.at["micro", "ci_high"] == pytest.approx(np.quantile(micro, 0.975), abs=1e-12)
    assert rows.at["micro", "mean"] == pytest.approx(np.nanmean(vals)) and rows.at["micro", "n"] == 36


def test_paired_difference_on_the_samples_both_runs_score() -> None:
    cats = ["c"] * 4 + ["d"] * 4
    a = np.array([[1.0], [np.nan], [3.0], [5.0], [2.0], [2.0], [np.nan], [2.0]])
    b = np.array([[0.0], [9.0], [1.0], [np.nan], [1.0], [1.0], [1.0], [1.0]])
    # c: differences 1, 2 -> 1.5; d: 1, 1, 1 -> 1; macro 1.25
    diff, lo, hi, p = paired_difference(a, b, cats, resamples=500)
    assert diff[0] == pytest.approx(1.25) and lo[0] >= 1.0 and hi[0] <= 1.5 and p[0] < 0.01


def test_intervals_do_not_depend_on_row_order() -> None:
    rng = np.random.default_rng(3)
    table = pd.DataFrame({"sample_id": [f"s{i:03d}" for i in range(60)], "category": ["a", "b", "c"] * 20,
                          "m": rng.normal(size=60)})
    shuffled = table.sample(frac=1.0, random_state=7)
    by_id = summarise(table, ["m"], resamples=500)
    assert not shuffled["sample_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(summarise(shuffled, ["m"], resamples=500), by_id)
    pd.testing.assert_frame_equal(summarise(shuffled.sort_values("category"), ["m"], resamples=500), by_id)


def test_a_one_sample_category_gives_a_difference_without_interval_or_p() -> None:
    a = np.array([[1.0], [2.0], [3.0]])
    b = np.zeros((3, 1))
    d, lo, hi, p = paired_difference(a, b, ["x", "x", "y"], resamples=200)
    assert d[0] == pytest.approx((1.5 + 3.0) / 2)
    assert np.isnan(lo[0]) and np.isnan(hi[0]) and np.isnan(p[0])
    d, lo, hi, p = paired_difference(a, b, ["x", "x", "x"], resamples=200)
    assert d[0] == pytest.approx(2.0) and lo[0] <= 2.0 <= hi[0] and p[0] < 0.05
