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


MASK_PHANTOM = {"n_test": "8", "n_train": "8", "gt": "mask"}


@pytest.fixture(scope="module")
def mask_runs(tmp_path_factory) -> dict[str, Path]:
    """oracle_gaussian, box_prior and uniform on the mask-GT phantom, run once for the tests below."""
    from bench.running.runner import RunRequest, run

    root = tmp_path_factory.mktemp("mask_runs")
    for method in ("oracle_gaussian", "box_prior", "uniform"):
        run(RunRequest(method=method, dataset="phantom", dataset_options=dict(MASK_PHANTOM), out=root / method))
    return {m: root / m for m in ("oracle_gaussian", "box_prior", "uniform")}


def _rows(out: str, first: str) -> list[list[str]]:
    """The cells of every terminal table row whose first cell is `first`."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    return [r for r in rows if r and r[0] == first]


def test_each_protocol_brings_its_own_metrics() -> None:
    from bench.evaluation.protocols import load_protocol
    from bench.reporting.sensitivity import default_metrics, protocol_metrics

    default, chex, boxes, g2g = (load_protocol(n) for n in ("default", "chexlocalize2022", "boxes", "nutzel2025"))
    assert protocol_metrics(default) == ["miou", "cnr", "auc_roc", "pointing_game"]
    assert protocol_metrics(chex) == ["seg_iou", "hit_rate"]
    assert default_metrics([chex, default]) == ["miou", "cnr", "auc_roc", "pointing_game", "seg_iou", "hit_rate"]
    # the protocols that had headline metrics before keep them, in the same order
    assert default_metrics([default, g2g]) == ["miou", "miou_fgbg", "cnr", "auc_roc", "pointing_game"]
    assert default_metrics([boxes]) == ["acc@0.5", "top1_iou_best", "ap@0.5", "pooled_iou"]


def test_protocol_specific_metrics_are_shown_beside_the_others(bench_cli, tmp_path: Path, mask_runs) -> None:
    runs = list(mask_runs.values())
    out = tmp_path / "sens"
    r = bench_cli("compare", "--protocols", "default,chexlocalize2022", *runs, "--out", out)
    assert r.code == 0, r.err
    table = pd.read_csv(out / "sensitivity.csv")
    # every protocol's own metrics, each with rows only under the protocols that have it
    assert list(dict.fromkeys(table["metric"])) == ["miou", "cnr", "auc_roc", "pointing_game", "seg_iou", "hit_rate"]
    assert set(table.loc[table["protocol"] == "default", "metric"]) == {"miou", "cnr", "auc_roc", "pointing_game"}
    assert set(table.loc[table["protocol"] == "chexlocalize2022", "metric"]) == {"seg_iou", "hit_rate"}
    # the numbers are the category means of each run's table under each protocol
    for name, run in mask_runs.items():
        own = pd.read_csv(run / "summary.csv")
        assert _macro(table, "default", "miou").at[name, "mean"] == pytest.approx(
            own.loc[(own["group"] == "macro") & (own["metric"] == "miou"), "mean"].iloc[0])
        chex = pd.read_csv(rescored_folder(run, "chexlocalize2022", out / "rescored") / "samples.csv")
        for metric in ("seg_iou", "hit_rate"):
            expected = chex.groupby("category")[metric].mean().mean()  # NaN (undefined) samples skipped
            got = _macro(table, "chexlocalize2022", metric).at[name, "mean"]
            assert got == pytest.approx(expected, nan_ok=True)
    seg, hit = _macro(table, "chexlocalize2022", "seg_iou"), _macro(table, "chexlocalize2022", "hit_rate")
    # a constant map: Otsu leaves its mask empty, so no image defines seg_iou (no mean, no rank);
    # its maximum is the first pixel, in the corner, off every phantom lesion: hit rate 0
    assert np.isnan(seg.at["uniform", "mean"]) and seg.at["uniform", "n"] == 0 and pd.isna(seg.at["uniform", "rank"])
    assert hit.at["uniform", "mean"] == 0.0
    assert seg.at["oracle_gaussian", "mean"] > 0.6 > seg.at["box_prior", "mean"] > 0.0
    assert (seg.at["oracle_gaussian", "rank"], seg.at["box_prior", "rank"]) == (1, 2)
    assert hit["rank"].astype(int).to_dict() == {"oracle_gaussian": 1, "box_prior": 2, "uniform": 3}
    # the terminal: the metric's table shows '-' for the protocol without it
    assert "seg_iou: per pathology and aggregate, rank on macro ('-': not a metric of default)" in r.out
    assert "miou: per pathology and aggregate, rank on macro ('-': not a metric of chexlocalize2022)" in r.out
    rows = _rows(r.out, "default")
    assert rows[-1][1] == "uniform" and set(rows[-1][2:]) == {"-"}  # the hit_rate table's default rows
    uniform = [row for row in _rows(r.out, "chexlocalize2022") if row[1] == "uniform"]
    assert uniform[-2][-2:] == ["nan", "-"] and uniform[-1][-2:] == ["0.000", "3"]  # seg_iou, hit_rate: macro, rank


def test_a_metric_some_protocols_lack_is_ranked_among_those_that_have_it(bench_cli, tmp_path: Path,
                                                                         mask_runs) -> None:
    runs = [mask_runs["oracle_gaussian"], mask_runs["box_prior"]]
    r = bench_cli("compare", "--protocols", "default,vilouras2025,chexlocalize2022", "--metric", "hit_rate",
                  "--metric", "miou", *runs, "--out", tmp_path / "sens")
    assert r.code == 0, r.err
    table = pd.read_csv(tmp_path / "sens" / "sensitivity.csv")
    assert list(dict.fromkeys(zip(table["metric"], table["protocol"]))) == [
        ("hit_rate", "chexlocalize2022"), ("miou", "default"), ("miou", "vilouras2025")]
    assert "hit_rate: rank under each protocol" not in r.out  # one protocol has it: no moves to show
    assert "miou: rank under each protocol" in r.out
    assert _rows(r.out, "oracle_gaussian")[-1] == ["oracle_gaussian", "1", "1", "-", "0"]
    assert _rows(r.out, "box_prior")[-1] == ["box_prior", "2", "2", "-", "0"]
    r = bench_cli("compare", "--protocols", "default,vilouras2025", "--metric", "seg_iou", *runs)
    assert r.code == 2 and r.err.strip() == ("error: metric 'seg_iou' is in none of the protocols default, "
                                             "vilouras2025")
