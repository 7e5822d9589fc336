"""`bench compare --protocols`: stored heatmaps re-scored under several protocols, cached, ranked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.reporting.sensitivity import rescored_folder
from bench.running import integrity

PHANTOM = ["-O", "n_test=8", "-O", "n_train=0"]


def _low_on_findings(bench_cli, tmp_path: Path) -> Path:
    """A run of 32 x 32 maps that are noisy and lower on the boxes than off them (AUC well below 1/2)."""
    listing = tmp_path / "samples.csv"
    assert bench_cli("dataset", "phantom", *PHANTOM, "--out", listing).code == 0
    folder = tmp_path / "low_maps"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for row in pd.read_csv(listing).itertuples():
        centres_y = (np.arange(32) + 0.5) * row.height / 32
        centres_x = (np.arange(32) + 0.5) * row.width / 32
        inside = np.zeros((32, 32), dtype=bool)
        for x, y, w, h in json.loads(row.boxes):
            inside |= ((centres_y >= y) & (centres_y < y + h))[:, None] & ((centres_x >= x) & (centres_x < x + w))[None, :]
        values = 0.5 + 0.5 * rng.random((32, 32)) - 0.3 * inside
        Heatmap(values, Geometry.whole(row.height, row.width)).save(folder / f"{row.sample_id}.npz")
    out = tmp_path / "low"
    r = bench_cli("score", "--heatmaps", folder, "--dataset", "phantom", *PHANTOM, "--out", out)
    assert r.code == 0, r.err
    return out


@pytest.fixture
def two_runs(bench_cli, tmp_path: Path) -> tuple[Path, Path]:
    uniform = tmp_path / "uniform"
    assert bench_cli("run", "--method", "uniform", "--dataset", "phantom", *PHANTOM, "--out", uniform).code == 0
    return uniform, _low_on_findings(bench_cli, tmp_path)


def _macro(table: pd.DataFrame, protocol: str, metric: str) -> pd.DataFrame:
    part = table[(table["protocol"] == protocol) & (table["metric"] == metric) & (table["group"] == "macro")]
    return part.set_index("run")


def test_ranks_move_between_protocols_and_repeat_is_read_back(bench_cli, tmp_path: Path, two_runs) -> None:
    uniform, low = two_runs
    args = ["compare", "--protocols", "default,nutzel2025", uniform, low, "--out", tmp_path / "sens"]
    sens = tmp_path / "sens" / "rescored"
    r = bench_cli(*args)
    assert r.code == 0, r.err
    assert "auc_roc: rank under each protocol" in r.out and "moves" in r.out and "miou_fgbg" in r.out
    assert "2 of 4 run x protocol tables scored now" in r.out  # the runs' own default tables are reused
    table = pd.read_csv(tmp_path / "sens" / "sensitivity.csv")
    assert list(table.columns) == ["protocol", "metric", "run", "group", "mean", "n", "rank"]
    default, g2g = _macro(table, "default", "auc_roc"), _macro(table, "nutzel2025", "auc_roc")
    # a constant map: AUC 1/2 under the default; under G2G its GMM mask is empty, which scores 0
    assert default.at["uniform", "mean"] == 0.5 and g2g.at["uniform", "mean"] == 0.0
    assert 0.0 < default.at["external", "mean"] < 0.5 and 0.0 < g2g.at["external", "mean"] < 0.5
    assert (default.at["uniform", "rank"], default.at["external", "rank"]) == (1, 2)
    assert (g2g.at["uniform", "rank"], g2g.at["external", "rank"]) == (2, 1)
    # distance (box centres, in pixels) is the one metric where lower is better
    r = bench_cli("compare", "--protocols", "nutzel2025", "--metric", "distance", uniform, low, "--out", tmp_path / "d")
    assert r.code == 0, r.err
    dist = _macro(pd.read_csv(tmp_path / "d" / "sensitivity.csv"), "nutzel2025", "distance")
    assert dist["mean"].nunique() == 2
    assert dist["rank"].astype(int).to_dict() == dist["mean"].rank(method="min").astype(int).to_dict()
    # the per-pathology numbers are the category means of the cached rescored samples
    rescored = pd.read_csv(rescored_folder(low, "nutzel2025", sens) / "samples.csv")
    assert len(rescored) == 8 and "miou_fgbg" in rescored.columns and "miou" not in rescored.columns
    cell = table[(table["protocol"] == "nutzel2025") & (table["metric"] == "cnr") & (table["run"] == "external")
                 & (table["group"] == "edema")]
    assert cell["mean"].iloc[0] == pytest.approx(rescored.loc[rescored["category"] == "edema", "cnr"].mean())
    assert not rescored_folder(uniform, "default", sens).exists()
    assert not (uniform / "rescored").exists() and not (low / "rescored").exists()  # the runs are only read
    # a repeat scores nothing and writes the same table
    cached = rescored_folder(uniform, "nutzel2025", sens) / "samples.csv"
    stamp = cached.stat().st_mtime_ns
    first = (tmp_path / "sens" / "sensitivity.csv").read_text()
    r = bench_cli(*args)
    assert r.code == 0 and "0 of 4 run x protocol tables scored now" in r.out
    assert cached.stat().st_mtime_ns == stamp
    assert (tmp_path / "sens" / "sensitivity.csv").read_text() == first


def test_cache_follows_the_run(bench_cli, tmp_path: Path) -> None:
    run = tmp_path / "oracle"
    assert bench_cli("run", "--method", "oracle_gaussian", "--dataset", "phantom", *PHANTOM, "--out", run).code == 0
    r = bench_cli("compare", "--protocols", "vilouras2024", run)
    assert r.code == 0 and "1 of 1 run x protocol tables scored now" in r.out
    key = json.loads((rescored_folder(run, "vilouras2024") / "source.json").read_text())
    assert key["protocol"] == "vilouras2024"
    # the run changes (here: its record is rewritten): its rescored tables are made again
    record = json.loads((run / "run.json").read_text())
    record["note"] = "rewritten"
    (run / "run.json").write_text(json.dumps(record))
    r = bench_cli("compare", "--protocols", "vilouras2024", run)
    assert r.code == 0 and "1 of 1 run x protocol tables scored now" in r.out
    table = pd.read_csv(rescored_folder(run, "vilouras2024") / "samples.csv")
    assert {"auc_roc", "auc_roc_binned", "cnr_abs", "miou"} <= set(table.columns)
    # the oracle under Vilouras et al.: its multi-threshold miou stays near the published 0.675
    assert table["miou"].mean() == pytest.approx(0.675, abs=0.03)


@pytest.mark.parametrize("protocols, metric, words", [
    ("default,nope", [], "unknown protocol 'nope'"),
    (" , ", [], "give one or more protocol names"),
    ("default,default", [], "named twice"),
    ("vilouras2024", ["--metric", "miou_fgbg"], "'miou_fgbg' is in none of the protocols"),
])
def test_sensitivity_errors_are_one_line(bench_cli, tmp_path: Path, protocols: str, metric: list, words: str) -> None:
    run = tmp_path / "uniform"
    assert bench_cli("run", "--method", "uniform", "--dataset", "phantom", *PHANTOM, "--out", run).code == 0
    r = bench_cli("compare", "--protocols", protocols, *metric, run)
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    r = bench_cli("compare", "--protocols", "default", "--group", "pneumonia", run)
    assert r.code == 2 and "cannot rank on group 'pneumonia'" in r.err


def test_rescored_runs_keep_the_backend_value_policy(bench_cli, tmp_path: Path) -> None:
    """A run re-scored with `bench score` and then under another protocol keeps its method's value policy.

    Under vilouras2024 BioViL maps are clamped at 0 and not min-maxed: maps that never exceed 0.4 then
    have no pixel above the 0.5 threshold, where a min-maxed copy would.
    """
    run = tmp_path / "cosine"
    assert bench_cli("run", "--method", "oracle_gaussian", "--dataset", "phantom", *PHANTOM, "--out", run).code == 0
    for path in (run / "heatmaps").glob("*.npz"):
        heatmap = Heatmap.load(path)
        Heatmap(0.4 * heatmap.values, heatmap.geometry, heatmap.meta).save(path)
    record = json.loads((run / "run.json").read_text())
    record["config"]["method"]["backend"] = "biovil"
    record["digests"]["heatmaps"] = integrity.heatmap_set(run / "heatmaps").digest  # as a BioViL run records them
    (run / "run.json").write_text(json.dumps(record))
    again = tmp_path / "again"
    r = bench_cli("score", "--heatmaps", run, "--dataset", "phantom", *PHANTOM, "--out", again)
    assert r.code == 0, r.err
    assert json.loads((again / "run.json").read_text())["backend"] == "biovil"
    assert bench_cli("compare", "--protocols", "vilouras2024", run, again).code == 0
    direct = pd.read_csv(rescored_folder(run, "vilouras2024") / "samples.csv")
    chained = pd.read_csv(rescored_folder(again, "vilouras2024") / "samples.csv")
    assert (direct["iou@0.5"] == 0).all() and direct["iou@0.1"].gt(0).all()
    pd.testing.assert_frame_equal(direct, chained)
    assert json.loads((rescored_folder(again, "vilouras2024") / "run.json").read_text())["backend"] == "biovil"


def test_runs_are_only_read_by_a_protocol_comparison(bench_cli, tmp_path: Path) -> None:
    """A run folder may be read-only (committed results, a colleague's runs): nothing is written into it."""
    run = tmp_path / "ro"
    assert bench_cli("run", "--method", "oracle_gaussian", "--dataset", "phantom", *PHANTOM, "--out", run).code == 0
    before = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    r = bench_cli("compare", "--protocols", "vilouras2024", run)
    assert r.code == 0, r.err
    assert (rescored_folder(run, "vilouras2024") / "samples.csv").is_file()
    r = bench_cli("compare", "--protocols", "nutzel2025", run, "--out", tmp_path / "o")
    assert r.code == 0, r.err
    assert (rescored_folder(run, "nutzel2025", tmp_path / "o" / "rescored") / "samples.csv").is_file()
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == before
