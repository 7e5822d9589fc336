"""`gmm_seeds`: the GMM mask refitted with several seeds, the across-seed spread of each seed-dependent
metric in summary.csv and on the leaderboard pages; the scores themselves stay those of the protocol seed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score, score_dense
from bench.evaluation.seed_spread import seed_columns, seed_dependent, spread
from bench.leaderboard.pages import _cell
from bench.running.runner import run_protocol, summary_table


def test_seed_dependent_metrics_follow_the_empty_mask_rule() -> None:
    nu, do = load_protocol("nutzel2025"), load_protocol("dombrowski2024")
    assert nu.gmm_seeds == do.gmm_seeds == 5 and load_protocol("default").gmm_seeds == 1
    assert seed_dependent(nu) == nu.columns  # an empty mask zeroes every metric of the sample
    assert seed_dependent(do) == ["iou_fg", "miou_fgbg", "bbox_iou_fg", "bbox_miou_fgbg", "distance"]
    assert seed_columns(do)[:2] == ["iou_fg@seed1", "miou_fgbg@seed1"] and len(seed_columns(do)) == 4 * 5
    assert seed_columns(load_protocol("vilouras2024")) == []
    assert seed_columns(dataclasses.replace(nu, gmm_seed="none")) == []
    # gmm_seeds adds columns and changes no score: not part of the fingerprint
    assert dataclasses.replace(nu, gmm_seeds=1).fingerprint() == nu.fingerprint()


def test_refits_are_the_scores_under_each_seed() -> None:
    rng = np.random.default_rng(5)
    values = np.round(rng.random((16, 16)) * 4) / 4  # a plateau map: few levels
    heat = Heatmap(values, Geometry.whole(64, 64))
    s = Sample("s", "x.png", 64, 64, "c", "p", ((10.0, 12.0, 20.0, 18.0),), "test")
    p = dataclasses.replace(load_protocol("dombrowski2024"), crop_size=64, gmm_seeds=3)
    got = score(heat, s, p)
    assert list(got) == p.columns + seed_columns(p)
    for seed in (1, 2):
        alone = score(heat, s, dataclasses.replace(p, seed=seed, gmm_seeds=1))
        assert all(got[f"{m}@seed{seed}"] == pytest.approx(alone[m], nan_ok=True) for m in seed_dependent(p))
    assert {k: got[k] for k in p.columns} == pytest.approx(score(heat, s, dataclasses.replace(p, gmm_seeds=1)),
                                                          nan_ok=True)
    assert list(score_dense(heat, s, p)) == list(got)


def test_refits_leave_the_stale_mask_of_the_protocol_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under on_gmm_error = "previous" a failed fit reuses the last mask made: the refits with the extra
    seeds must not replace it, or the next sample's stale mask would depend on gmm_seeds."""
    from bench.evaluation.gmm_mask import PreviousMask

    made: list[np.ndarray] = []
    remember = PreviousMask.remember.__func__
    monkeypatch.setattr(PreviousMask, "remember", classmethod(lambda cls, m: made.append(m) or remember(cls, m)))
    rng = np.random.default_rng(5)
    heat = Heatmap(np.round(rng.random((16, 16)) * 4) / 4, Geometry.whole(64, 64))
    s = Sample("s", "x.png", 64, 64, "c", "p", ((10.0, 12.0, 20.0, 18.0),), "test")
    score(heat, s, dataclasses.replace(load_protocol("dombrowski2024"), crop_size=64, on_gmm_error="previous",
                                       gmm_seeds=3))
    assert len(made) == 3 and PreviousMask.last is made[0]  # the protocol seed's fit comes first


def test_spread_is_the_range_of_the_group_means_by_hand() -> None:
    p = dataclasses.replace(load_protocol("dombrowski2024"), gmm_seeds=3)
    cols = seed_dependent(p)
    # categories a (2 samples) and b (1 sample); iou_fg under seeds 0, 1, 2
    iou = {0: [0.2, 0.4, 0.9], 1: [0.2, 0.6, 0.9], 2: [0.0, 0.4, 0.5]}
    table = pd.DataFrame({"category": ["a", "a", "b"]})
    for m in cols:
        table[m] = iou[0] if m == "iou_fg" else 0.5
        for seed in (1, 2):
            table[f"{m}@seed{seed}"] = iou[seed] if m == "iou_fg" else 0.5
    got = spread(table, p, ("macro", "micro")).set_index(["group", "metric"])["seed_spread"]
    # a: means 0.3, 0.4, 0.2 -> 0.2; b: 0.9, 0.9, 0.5 -> 0.4
    # macro: (0.3+0.9)/2 = 0.6, (0.4+0.9)/2 = 0.65, (0.2+0.5)/2 = 0.35 -> 0.3; micro: 1.5/3, 1.7/3, 0.9/3 -> 0.8/3
    assert got[("a", "iou_fg")] == pytest.approx(0.2) and got[("b", "iou_fg")] == pytest.approx(0.4)
    assert got[("macro", "iou_fg")] == pytest.approx(0.3) and got[("micro", "iou_fg")] == pytest.approx(0.8 / 3)
    assert got[("macro", "miou_fgbg")] == 0.0
    for c in ("sample_id", "phrase", "split", "width", "height", "boxes", "scored_boxes", "cnr", "cnr_abs", "auc_roc",
              "pointing_game"):
        table[c] = 0.0 if c not in ("sample_id", "phrase", "split", "boxes", "scored_boxes") else "x"
    summary = summary_table(table, dataclasses.replace(p, bootstrap_resamples=10)).set_index(["group", "metric"])
    assert summary.loc[("macro", "iou_fg"), "seed_spread"] == pytest.approx(0.3)
    assert np.isnan(summary.loc[("macro", "cnr"), "seed_spread"])  # not a mask metric under on_empty_mask = score


def test_gmm_seeds_option_and_page_cell() -> None:
    assert run_protocol("nutzel2025", 2).gmm_seeds == 2
    with pytest.raises(BenchError, match="fits no GMM mask"):
        run_protocol("vilouras2024", 3)
    row = pd.DataFrame([{"method": "m", "group": "macro", "metric": "iou_fg", "mean": 0.5, "ci_low": 0.4,
                         "ci_high": 0.6, "n": 10, "seed_spread": 0.0123}])
    assert _cell(row, "m", "macro", "iou_fg") == "0.500 [0.400, 0.600] s=0.012"
    assert _cell(row.assign(seed_spread=np.nan), "m", "macro", "iou_fg") == "0.500 [0.400, 0.600]"


def test_bench_score_gmm_seeds_writes_the_spread(tmp_path: Path, bench_cli) -> None:
    from test_model_crop import H, W, ms_cxr_maps

    maps = ms_cxr_maps(tmp_path, lambda rng: np.round(rng.random((H, W)) * 3) / 3)
    out = tmp_path / "run"
    got = bench_cli("score", "--heatmaps", maps, "-d", "ms-cxr", "--data-root", tmp_path / "data", "-p", "nutzel2025",
                    "--gmm-seeds", "3", "--out", out)
    assert got.code == 0, got.err
    assert json.loads((out / "run.json").read_text())["protocol"]["gmm_seeds"] == 3
    samples = pd.read_csv(out / "samples.csv")
    assert "iou_fg@seed2" in samples and "iou_fg@seed3" not in samples
    summary = pd.read_csv(out / "summary.csv")
    assert summary["seed_spread"].notna().all() and (summary["seed_spread"] >= 0).all()
    refused = bench_cli("score", "--heatmaps", maps, "-d", "ms-cxr", "--data-root", tmp_path / "data", "--gmm-seeds",
                        "3", "--out", tmp_path / "other")
    assert refused.code != 0 and "fits no GMM mask" in refused.err
