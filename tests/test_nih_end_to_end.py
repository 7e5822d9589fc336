"""The baselines end to end on real radiographs: the NIH ChestX-ray14 box sample.

Runs when BENCH_NIH_ROOT points at a box folder; in CI (CI=true) a missing folder is a failure,
not a skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

NIH = os.environ.get("BENCH_NIH_ROOT")


@pytest.fixture(scope="module")
def nih_root() -> Path:
    if not NIH or not Path(NIH, "BBox_List_2017.csv").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"BENCH_NIH_ROOT={NIH!r} does not hold BBox_List_2017.csv; CI needs the NIH sample")
        pytest.skip("BENCH_NIH_ROOT not set")
    return Path(NIH)


@pytest.mark.parametrize("method", ["oracle_gaussian", "box_prior", "uniform"])
def test_baselines_on_nih_sample(bench_cli, tmp_path: Path, nih_root: Path, method: str) -> None:
    out = tmp_path / method
    r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", nih_root, "--out", out)
    assert r.code == 0, r.err
    samples = pd.read_csv(out / "samples.csv")
    boxes = pd.read_csv(nih_root / "BBox_List_2017.csv")
    n_pairs = boxes.iloc[:, :2].drop_duplicates().shape[0]
    assert len(samples) == n_pairs
    assert samples["category"].nunique() == 8
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["skipped"] == []
    if method == "oracle_gaussian":
        assert samples["miou"].mean() == pytest.approx(0.675, abs=0.03)
        assert samples["pointing_game"].mean() > 0.95
    elif method == "uniform":
        assert (samples["auc_roc"] == 0.5).all() and (samples["miou"] == 0).all()
    else:
        assert run["provenance"]["fit"].startswith("leave-one-out")
        assert 0.55 < samples["auc_roc"].mean() < 0.95


@pytest.mark.parametrize(("method", "grid"), [("biovil", 15), ("biovil_t", 14)])
def test_biovil_random_weights_on_nih_sample(bench_cli, tmp_path: Path, nih_root: Path, method: str, grid: int) -> None:
    """The real architectures read real radiographs end to end (random weights, a few samples)."""
    out = tmp_path / method
    r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", nih_root,
                  "--random-weights", "--limit", "3", "--out", out)
    assert r.code == 0, r.err
    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == 3 and samples[["miou", "cnr", "auc_roc", "pointing_game"]].notna().all().all()
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["random_weights"] is True
    shapes = {np.load(p)["values"].shape for p in (out / "heatmaps").glob("*.npz")}
    assert shapes == {(grid, grid)}
