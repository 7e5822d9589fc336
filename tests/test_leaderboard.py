"""`bench leaderboard`: pages from a tiny hand-made results folder, refusals, --check and --add."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_PHANTOM
from test_reported import GOOD, write_rows

from bench.evaluation.protocols import load_protocol
from bench.evaluation.stats import summarise
from bench.running import integrity
from bench.running.rundir import RunDir

PROTOCOL = dataclasses.replace(load_protocol("default"), bootstrap_resamples=200)
# per-sample value of every metric column: category means are hand-checkable
GOOD_RUN = {"atelectasis": [0.2, 0.4], "effusion": [0.6]}  # macro 0.45, micro 0.4
POOR_RUN = {"atelectasis": [0.1, 0.1], "effusion": [0.0]}  # macro 0.05; minus good: macro -0.4


def make_run(root: Path, method: str, values: dict[str, list[float]], protocol=PROTOCOL,
             undefined: tuple[str, str] | None = None, **record) -> Path:
    """A finished run directory (no heatmaps) whose every metric column holds the given values.

    `undefined` = (category, metric): that metric is NaN on that category's samples.
    """
    rows = []
    for cat, vals in values.items():
        for i, v in enumerate(vals):
            scores = {c: (np.nan if (cat, c) == undefined else v) for c in protocol.columns}
            rows.append({"sample_id": f"{cat}-{i}", "category": cat, "phrase": cat, "split": "test", "width": 10,
                         "height": 10, "boxes": "[[1, 1, 4, 4]]", **scores})
    table = pd.DataFrame(rows)
    run = RunDir(root)
    root.mkdir(parents=True)
    run.write_table(run.samples_csv, table)
    run.write_table(run.summary_csv, summarise(table, protocol.columns, protocol.groups, 200, 0.95, 0))
    record = {"digests": integrity.record_digests(root, len(table), None), **record}
    run.write_run({"status": "complete",
                   "config": {"method": {"name": method, "backend": method},
                              "dataset": {"name": "chestx-ray14", "options": {}, "data_root": "/data/sites/nih"}},
                   "method": method, "overrides": [], "dataset": "chestx-ray14", "protocol": protocol.to_dict(),
                   "protocol_fingerprint": protocol.fingerprint(), "random_weights": False, "limit": None,
                   "dataset_fingerprint": "0123456789abcdef", "dataset_samples": len(rows), "excluded": [],
                   "skipped": [], "versions": {"cxr-grounding-bench": "0.1.0"}, **record})
    return root


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/ with two methods on chestx-ray14, reported/ with two rows, leaderboards/ built once."""
    from bench.leaderboard import build as leaderboard
    from bench.leaderboard.results import add_run

    root = tmp_path_factory.mktemp("board")
    (root / "reported").mkdir()
    write_rows(root / "reported" / "paper.csv", [
        {**GOOD, "dataset": "chestx-ray14", "protocol": "default", "category": "effusion", "value": "0.7",
         "printed": "70.0 ± 12.5"},
        GOOD])
    for method, values in (("good", GOOD_RUN), ("poor", POOR_RUN)):
        add_run(make_run(root / "runs" / method, method, values), root / "results")
    leaderboard.write(leaderboard.build(root / "results", root / "reported"), root / "leaderboards")
    return root


@pytest.fixture
def board(pristine: Path, tmp_path: Path):
    """A private copy of the pristine folders, and the CLI arguments that point at them."""
    import shutil

    for name in ("results", "reported", "leaderboards"):
        shutil.copytree(pristine / name, tmp_path / name)
    paths = {k: tmp_path / k for k in ("results", "reported", "leaderboards")}
    args = ["--results", paths["results"], "--reported", paths["reported"], "--out", paths["leaderboards"]]
    return paths, args


def test_page_holds_the_hand_computed_numbers(board) -> None:
    paths, _ = board
    out = paths["leaderboards"]
    page = (out / "chestx-ray14__default.md").read_text()
    lines = page.splitlines()
    ranking = [ln for ln in lines if ln.startswith("| 1 | ") or ln.startswith("| 2 | ")]
    assert ranking[0].startswith("| 1 | good | 3 | 0.450 [")
    assert ranking[0].endswith("(1) | 1.00 |")
    assert ranking[1].startswith("| 2 | poor | 3 | 0.050 [")
    assert ranking[1].endswith("(2) | 2.00 |")
    # a one-sample category has no interval (nor has an aggregate over it); methods in rank order
    assert "| effusion | 1 | 0.600 [no CI, n<2] | 0.000 [no CI, n<2] |" in lines
    assert ranking[0].startswith("| 1 | good | 3 | 0.450 [no CI, n<2] (1) |")
    assert any(ln.startswith("| atelectasis | 2 | 0.300 [") and "| 0.100 [0.100, 0.100] |" in ln for ln in lines)
    assert any(ln.startswith("| micro | 3 | 0.400 [") for ln in lines)
    assert any(ln.startswith("| poor | -0.400 [") for ln in lines)
    summary = pd.read_csv(out / "chestx-ray14__default" / "summary.csv")
    macro = summary[(summary["group"] == "macro") & (summary["metric"] == "miou")].set_index("method")["mean"]
    assert macro.to_dict() == pytest.approx({"good": 0.45, "poor": 0.05})
    index = (out / "README.md").read_text()
    assert "| chestx-ray14 | default | 2 | 1 | good (miou 0.450) | [page](chestx-ray14__default.md) |" in index
    # these runs used 200 resamples, protocols/default.toml says 10,000
    assert "`protocols/default.toml` has changed since these runs were scored" in page


def test_committed_pages_match_the_protocol_files() -> None:
    committed = Path(__file__).resolve().parents[1] / "leaderboards"
    pages = sorted(committed.glob("*__default.md"))
    assert pages, "no committed default-protocol page"
    assert all("has changed since these runs were scored" not in p.read_text() for p in pages)


def test_reported_rows_stay_in_their_own_table(board) -> None:
    paths, _ = board
    page = (paths["leaderboards"] / "chestx-ray14__default.md").read_text()
    measured, reported = page.split("## Reported by the papers (not measured here)")
    assert "0.700" not in measured and "Example et al." not in measured
    assert "### Example et al. 2099, Table 1" in reported
    assert "| BioViL-T | [biovil_t](../adapters/biovil_t.toml) | miou | 0.700 ± 0.125 |" in reported
    only_reported = (paths["leaderboards"] / "ms-cxr__vilouras2024.md").read_text()
    assert "No measured run yet" in only_reported
    assert "| BioViL-T | [biovil_t](../adapters/biovil_t.toml) | miou | 0.250 ± 0.125 |" in only_reported


def test_results_are_portable_and_complete(board) -> None:
    paths, _ = board
    entry = paths["results"] / "chestx-ray14" / "default" / "good"
    assert sorted(p.name for p in entry.iterdir()) == ["run.json", "samples.csv", "summary.csv"]
    record = json.loads((entry / "run.json").read_text())
    assert record["config"]["dataset"]["data_root"] == "nih"
    figures = sorted(p.name for p in (paths["leaderboards"] / "chestx-ray14__default").glob("*.png"))
    assert figures == ["auc_roc.png", "cnr.png", "cnr_abs.png", "miou.png", "pointing_game.png"]
    vectors = sorted(p.name for p in (paths["leaderboards"] / "chestx-ray14__default").glob("*.svg"))
    assert vectors == [f[:-4] + ".svg" for f in figures]


def test_check_passes_on_a_fresh_build_and_fails_on_an_edited_page(board, bench_cli) -> None:
    paths, args = board
    assert bench_cli("leaderboard", "--check", *args).code == 0
    page = paths["leaderboards"] / "chestx-ray14__default.md"
    page.write_text(page.read_text().replace("| 1 | good | 3 | 0.450", "| 1 | good | 3 | 0.460"))
    (paths["leaderboards"] / "chestx-ray14__default" / "miou.png").unlink()
    (paths["leaderboards"] / "notes.txt").write_text("hand-written")
    res = bench_cli("leaderboard", "--check", *args)
    assert res.code == 1
    assert "differs: chestx-ray14__default.md" in res.err
    assert "-| 1 | good | 3 | 0.460" in res.err and "+| 1 | good | 3 | 0.450" in res.err
    assert "missing figure: chestx-ray14__default/miou.png" in res.err
    assert "not produced by the results: notes.txt" in res.err
    assert "leaderboards are out of date (3 file(s))" in res.err
    (paths["leaderboards"] / "notes.txt").unlink()
    assert bench_cli("leaderboard", *args).code == 0
    assert bench_cli("leaderboard", "--check", *args).code == 0


def test_check_fails_when_a_result_is_added_without_rebuilding(board, bench_cli, tmp_path: Path) -> None:
    paths, args = board
    entry = paths["results"] / "chestx-ray14" / "default"
    (entry / "poor").rename(entry / "weak")
    res = bench_cli("leaderboard", "--check", *args)
    assert res.code == 1 and "differs: chestx-ray14__default.md" in res.err


def test_random_weight_runs_are_refused(tmp_path: Path, bench_cli, board) -> None:
    paths, args = board
    run = make_run(tmp_path / "rw", "rand", GOOD_RUN, random_weights=True)
    res = bench_cli("leaderboard", "--add", run, *args)
    assert res.code == 2
    assert res.err.strip() == (f"error: {run} was run with random weights (run.json random_weights: true); "
                               "such runs never enter a leaderboard")
    assert not (paths["results"] / "chestx-ray14" / "default" / "rand").exists()
    # a random-weight run copied in by hand stops the build too
    target = paths["results"] / "chestx-ray14" / "default" / "rand"
    target.mkdir()
    for f in ("run.json", "samples.csv", "summary.csv"):
        (target / f).write_bytes((run / f).read_bytes())
    res = bench_cli("leaderboard", *args)
    assert res.code == 2 and "random weights" in res.err


def test_partial_and_unfinished_runs_are_refused(tmp_path: Path, bench_cli, board) -> None:
    _, args = board
    res = bench_cli("leaderboard", "--add", make_run(tmp_path / "lim", "lim", GOOD_RUN, limit=2), *args)
    assert res.code == 2 and "scored only a 2-sample subset (--limit)" in res.err
    res = bench_cli("leaderboard", "--add", make_run(tmp_path / "unf", "unf", GOOD_RUN, status="running"), *args)
    assert res.code == 2 and "unfinished run" in res.err
    # --skip-bad: 3 scored, 1 skipped of the protocol's 4
    run = make_run(tmp_path / "skip", "skip", GOOD_RUN, dataset_samples=4,
                   skipped=[{"sample_id": "effusion-1", "reason": "unreadable image"}])
    res = bench_cli("leaderboard", "--add", run, *args)
    assert res.code == 2
    assert res.err.strip() == (f"error: {run} skipped 1 of the protocol's 4 samples (first: effusion-1); "
                               "a leaderboard needs every sample scored")
    # rows missing without a record of why (a samples table cut by hand, a partial score)
    res = bench_cli("leaderboard", "--add", make_run(tmp_path / "few", "few", GOOD_RUN, dataset_samples=221), *args)
    assert res.code == 2 and "scored 3 samples (+0 left out by the protocol) of the protocol's 221" in res.err
    # samples the protocol itself leaves out do count as covered
    run = make_run(tmp_path / "exc", "exc", GOOD_RUN, dataset_samples=4, excluded=["effusion-1"],
                   skipped=[{"sample_id": "effusion-1", "reason": "no box inside the crop"}])
    res = bench_cli("leaderboard", "--add", run, *args)
    assert res.code == 0, res.err
    res = bench_cli("leaderboard", "--add", make_run(tmp_path / "old", "old", GOOD_RUN, dataset_fingerprint=None),
                    *args)
    assert res.code == 2 and "has no dataset fingerprint" in res.err


def test_a_run_on_another_sample_list_cannot_join_a_page(tmp_path: Path, bench_cli, board) -> None:
    paths, args = board
    run = make_run(tmp_path / "other", "other", GOOD_RUN, dataset_fingerprint="fedcba9876543210")
    res = bench_cli("leaderboard", "--add", run, *args)
    assert res.code == 2 and "runs scored on different sample lists" in res.err and "fedcba9876543210" in res.err
    assert not (paths["results"] / "chestx-ray14" / "default" / "other").exists()
    # copied in by hand, it stops the build
    target = paths["results"] / "chestx-ray14" / "default" / "other"
    target.mkdir()
    for f in ("run.json", "samples.csv", "summary.csv"):
        (target / f).write_bytes((run / f).read_bytes())
    res = bench_cli("leaderboard", *args)
    assert res.code == 2 and "different sample lists" in res.err


def test_add_replaces_an_entry_only_with_replace_and_says_how_the_numbers_move(tmp_path: Path, bench_cli,
                                                                               board) -> None:
    paths, args = board
    better = make_run(tmp_path / "again", "poor", {"atelectasis": [0.9, 0.9], "effusion": [0.9]})
    folder = paths["results"] / "chestx-ray14" / "default"
    before = (folder / "poor" / "samples.csv").read_bytes()
    res = bench_cli("leaderboard", "--add", better, *args)
    assert res.code == 2 and len(res.err.strip().splitlines()) == 1
    # poor's macro mean is 0.05 on every metric (0.1, 0.1 | 0.0); the new run's 0.9
    assert f"{folder / 'poor'} already holds poor" in res.err
    assert "would move the macro means miou 0.050 -> 0.900, cnr 0.050 -> 0.900" in res.err
    assert "give --replace to replace it" in res.err
    assert (folder / "poor" / "samples.csv").read_bytes() == before
    res = bench_cli("leaderboard", "--add", better, "--replace", *args)
    assert res.code == 0, res.err
    assert "replaced: " in res.out and "macro means miou 0.050 -> 0.900" in res.out
    assert sorted(p.name for p in folder.iterdir()) == ["good", "poor"]
    samples = pd.read_csv(folder / "poor" / "samples.csv")
    assert samples["miou"].tolist() == [0.9, 0.9, 0.9]
    index = (paths["leaderboards"] / "README.md").read_text()
    assert "| poor (miou 0.900) |" in index
    assert bench_cli("leaderboard", "--add", better, "--name", "poor_v2", *args).code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["good", "poor", "poor_v2"]


def test_a_phantom_run_enters_with_its_example_overlay(tmp_path: Path, bench_cli) -> None:
    run = tmp_path / "run"
    assert bench_cli("run", "--method", "box_prior", "--dataset", "phantom", *SMALL_PHANTOM, "--out", run).code == 0
    args = ["--results", tmp_path / "results", "--reported", tmp_path / "none", "--out", tmp_path / "lb"]
    res = bench_cli("leaderboard", "--add", run, *args)
    assert res.code == 0, res.err
    entry = tmp_path / "results" / "phantom__n_test-16__n_train-16" / "default" / "box_prior"
    with np.load(entry / "example.npz") as ex:
        assert str(ex["sample_id"]) == "phantom-test-00000"
        assert max(ex["image"].shape) <= 256 and ex["image"].shape == ex["heatmap"].shape
        assert ex["image"].dtype == np.uint8 and np.nanmax(ex["heatmap"].astype(float)) == 1.0
    page = (tmp_path / "lb" / "phantom__n_test-16__n_train-16__default.md").read_text()
    assert "![box_prior](phantom__n_test-16__n_train-16__default/example-box_prior.png)" in page
    png = tmp_path / "lb" / "phantom__n_test-16__n_train-16__default" / "example-box_prior.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a re-scored run takes its example from the heatmaps it scored
    scored = tmp_path / "scored"
    assert bench_cli("score", "--heatmaps", run, "--dataset", "phantom", *SMALL_PHANTOM, "--out", scored).code == 0
    res = bench_cli("leaderboard", "--add", scored, "--name", "box_prior_rescored", *args)
    assert res.code == 0 and "no example map" not in res.out
    with np.load(entry.parent / "box_prior_rescored" / "example.npz") as ex, np.load(entry / "example.npz") as first:
        assert np.array_equal(ex["heatmap"], first["heatmap"], equal_nan=True)


def test_a_metric_undefined_on_a_category_shows_a_dash_and_its_own_count(tmp_path: Path) -> None:
    from bench.leaderboard import build as leaderboard
    from bench.leaderboard.results import add_run

    nutzel = dataclasses.replace(load_protocol("nutzel2025"), bootstrap_resamples=200)
    add_run(make_run(tmp_path / "runs" / "good", "good", GOOD_RUN, nutzel, ("effusion", "distance")),
            tmp_path / "results")
    leaderboard.write(leaderboard.build(tmp_path / "results", tmp_path / "none"), tmp_path / "lb")
    page = (tmp_path / "lb" / "chestx-ray14__nutzel2025.md").read_text()
    distance = page.split("### distance")[1].split("###")[0]
    # atelectasis 0.2, 0.4; effusion has no distance: macro and micro are the atelectasis mean over 2 samples
    assert "| effusion | 0 | — |" in distance and "| atelectasis | 2 | 0.300 [" in distance
    assert "| macro | 2 | 0.300 [" in distance
    cnr = page.split("### cnr")[1].split("###")[0]
    assert "| effusion | 1 | 0.600 [" in cnr and "| macro | 3 | 0.450 [" in cnr


def test_a_declared_comparison_gets_its_own_paired_table(board, bench_cli) -> None:
    paths, args = board
    declared = paths["results"] / "comparisons.toml"
    declared.write_text('[[comparison]]\ndataset = "chestx-ray14"\nmethod = "poor"\nagainst = "good"\n'
                        'what = "the poor run against the good one"\n')
    r = bench_cli("leaderboard", *args)
    assert r.code == 0, r.err
    lines = (paths["leaderboards"] / "chestx-ray14__default.md").read_text().splitlines()
    at = lines.index("**poor − good**: the poor run against the good one")
    assert lines[at - 2] == "## Measured: paired comparison (macro)"
    # every sample's scores differ by the same amounts as the category means: macro -0.4 on each metric
    rows = [ln for ln in lines[at:at + 8] if ln.startswith("| miou | ") or ln.startswith("| cnr | ")]
    assert len(rows) == 2 and all(ln.split(" | ")[1].startswith("-0.400 [") and ln.endswith("| 3 |") for ln in rows)
    declared.write_text('[[comparison]]\ndataset = "chestx-ray14"\nmethod = "poor"\nagainst = "best"\nwhat = "x"\n')
    r = bench_cli("leaderboard", *args)
    assert r.code != 0 and "no chestx-ray14 page holds both 'poor' and 'best'" in r.err and "Traceback" not in r.err
    declared.write_text('[[comparison]]\ndataset = "chestx-ray14"\nmethod = "poor"\nversus = "good"\nwhat = "x"\n')
    r = bench_cli("leaderboard", *args)
    assert r.code != 0 and "comparison 1: unknown field 'versus'" in r.err
