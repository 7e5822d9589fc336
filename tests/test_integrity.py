"""A run holds what its run.json says: digests of its tables and maps, checked wherever a run is read.

Each test hand-edits a run the way a user could (one miou, a duplicated or deleted row, swapped
maps) and checks that every reader refuses it in one line naming the file, or with
--allow-modified reads it marked as modified.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench.core.heatmap import Heatmap
from bench.reporting.sensitivity import rescored_folder
from bench.running import integrity

PHANTOM = ["--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=0"]
ENTRY_KEY = "phantom__n_test-8__n_train-0"


@pytest.fixture(scope="module")
def pristine_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An oracle_gaussian and a uniform run on 8 phantom samples, made once."""
    import os
    import sys

    from bench.cli import main

    root = tmp_path_factory.mktemp("runs")
    argv, cache = sys.argv, os.environ.get("BENCH_CACHE")
    os.environ["BENCH_CACHE"] = str(root / "cache")
    try:
        for method in ("oracle_gaussian", "uniform"):
            sys.argv = ["bench", "run", "--method", method, *PHANTOM, "--out", str(root / method)]
            try:
                main()
            except SystemExit as exc:
                assert not exc.code
    finally:
        sys.argv = argv
        if cache is None:
            os.environ.pop("BENCH_CACHE", None)
        else:
            os.environ["BENCH_CACHE"] = cache
    return root


@pytest.fixture
def runs(pristine_runs: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Private copies of the two runs: (oracle_gaussian, uniform)."""
    out = []
    for method in ("oracle_gaussian", "uniform"):
        shutil.copytree(pristine_runs / method, tmp_path / method)
        out.append(tmp_path / method)
    return out[0], out[1]


def _edit_samples(run: Path, edit) -> None:
    """Rewrite samples.csv by hand (as a user with a spreadsheet would), through `edit(table) -> table`."""
    table = pd.read_csv(run / "samples.csv", dtype={"sample_id": str, "category": str})
    edit(table).to_csv(run / "samples.csv", index=False, float_format="%.10g")


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_run_records_the_digests_of_what_it_holds(runs) -> None:
    oracle, _ = runs
    record = json.loads((oracle / "run.json").read_text())
    digests = record["digests"]
    assert record["schema_version"] == 3
    assert digests["samples.csv"] == hashlib.sha256((oracle / "samples.csv").read_bytes()).hexdigest()
    assert digests["summary.csv"] == hashlib.sha256((oracle / "summary.csv").read_bytes()).hexdigest()
    maps = sorted((oracle / "heatmaps").glob("*.npz"))
    lines = "".join(f"{p.name}\t{hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in maps)
    assert digests["heatmaps"] == hashlib.sha256(lines.encode()).hexdigest()
    assert (digests["rows"], digests["heatmap_files"]) == (8, 8)


def test_a_hand_edited_miou_is_refused_by_compare_load_run_and_the_leaderboard(runs, bench_cli, tmp_path: Path,
                                                                                capsys) -> None:
    oracle, uniform = runs
    first = pd.read_csv(oracle / "samples.csv")["miou"].iloc[0]

    def better(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[0, "miou"] = 0.99
        return table

    _edit_samples(oracle, better)
    r = bench_cli("compare", uniform, oracle)
    assert r.code == 2
    assert _one_line(r.err) == (f"error: {oracle / 'samples.csv'} was changed after the run was written (its sha256 "
                                "differs from the one run.json records); use --allow-modified (allow_modified=True "
                                "in Python) to read it anyway, marked as modified")
    with pytest.raises(bench.BenchError, match="samples.csv was changed after the run was written"):
        bench.load_run(oracle)
    loaded = bench.load_run(oracle, allow_modified=True)
    assert loaded.modified == ["samples.csv"] and loaded.label == "oracle_gaussian [modified]"
    assert loaded.samples["miou"].iloc[0] == 0.99 and first != 0.99
    # read anyway: marked in every table it shows in
    r = bench_cli("compare", uniform, oracle, "--allow-modified")
    assert r.code == 0, r.err
    assert "oracle_gaussian [modified]" in r.out and "oracle_gaussian [modified] - uniform" in r.out
    assert "read although modified: samples.csv changed since" in r.err
    cmp = bench.compare_runs([uniform, oracle], allow_modified=True)
    assert set(cmp.summaries["run"]) == {"uniform", "oracle_gaussian [modified]"}
    assert "read although modified" in capsys.readouterr().err  # the API warns on stderr too
    # the leaderboard: --add refuses it and copies nothing; --allow-modified takes it, marked on the page
    results, board = tmp_path / "results", tmp_path / "lb"
    args = ["--results", results, "--reported", tmp_path / "none", "--out", board]
    r = bench_cli("leaderboard", "--add", oracle, *args)
    assert r.code == 2 and "samples.csv was changed after the run was written" in _one_line(r.err)
    assert not results.exists()
    assert bench_cli("leaderboard", "--add", uniform, *args).code == 0
    r = bench_cli("leaderboard", "--add", oracle, "--allow-modified", *args)
    assert r.code == 0, r.err
    page = (board / f"{ENTRY_KEY}__default.md").read_text()
    assert "| oracle_gaussian [modified] |" in page and "**Modified:** `oracle_gaussian`: samples.csv changed" in page
    # an entry edited in results/ stops the build and the check, unless --allow-modified
    for extra in ([], ["--check"]):
        r = bench_cli("leaderboard", *extra, *args)
        assert r.code == 2 and "oracle_gaussian/samples.csv was changed after the run was written" in _one_line(r.err)
    assert bench_cli("leaderboard", "--check", "--allow-modified", *args).code == 0


def test_a_nan_where_a_metric_was_is_refused(runs, bench_cli) -> None:
    oracle, uniform = runs

    def undefined(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[3, "cnr"] = np.nan
        return table

    _edit_samples(oracle, undefined)
    r = bench_cli("compare", uniform, oracle)
    assert r.code == 2 and "samples.csv was changed after the run was written" in _one_line(r.err)


def test_duplicated_and_deleted_rows_are_one_line(runs, bench_cli) -> None:
    oracle, uniform = runs
    text = (oracle / "samples.csv").read_text().splitlines(keepends=True)
    (oracle / "samples.csv").write_text("".join(text + [text[2]]))  # the second sample's row twice
    r = bench_cli("compare", uniform, oracle)
    assert r.code == 2 and "(its sha256 differs from the one run.json records; 9 rows, 8 recorded)" in _one_line(r.err)
    # read anyway, a table with a repeated sample cannot be paired: one line, never a traceback
    sid = text[2].split(",")[0]
    for args in (["compare", uniform, oracle, "--allow-modified"], ["compare", oracle, uniform, "--allow-modified"],
                 ["compare", "--protocols", "default", uniform, oracle, "--allow-modified"]):
        r = bench_cli(*args)
        assert r.code == 2
        assert _one_line(r.err) == (f"error: {oracle / 'samples.csv'}: sample id {sid!r} is in 2 rows (1 id(s) "
                                    "repeated); a run's table has one row per sample, so it was edited or damaged")
    with pytest.raises(bench.BenchError, match="is in 2 rows"):
        bench.load_run(oracle, allow_modified=True)
    # two rows deleted
    (oracle / "samples.csv").write_text("".join(text[:2] + text[4:]))
    r = bench_cli("compare", uniform, oracle)
    assert r.code == 2 and "; 6 rows, 8 recorded)" in _one_line(r.err)
    r = bench_cli("compare", uniform, oracle, "--allow-modified")
    assert r.code == 0, r.err
    assert "read although modified: samples.csv (6 rows, 8 recorded) changed" in r.err and "on 6 common samples" in r.out
    assert "oracle_gaussian [modified]" in r.out


def test_a_run_of_an_older_harness_is_read_unverified_and_kept_off_the_leaderboard(runs, bench_cli,
                                                                                    tmp_path: Path) -> None:
    oracle, uniform = runs
    record = json.loads((oracle / "run.json").read_text())
    del record["digests"]
    record["schema_version"] = 2
    (oracle / "run.json").write_text(json.dumps(record))
    r = bench_cli("compare", uniform, oracle)
    assert r.code == 0, r.err
    assert f"WARNING: {oracle}: run.json records no digests (made by an older harness)" in r.err
    assert not bench.load_run(oracle).verified and bench.load_run(uniform).verified
    r = bench_cli("leaderboard", "--add", oracle, "--results", tmp_path / "results", "--reported", tmp_path / "none",
                  "--out", tmp_path / "lb")
    assert r.code == 2 and "records no digests of its tables in run.json (made by an older harness)" in r.err
    # its maps re-scored keep the method's name, unverified, and that cannot enter a leaderboard either
    r = bench_cli("score", "--heatmaps", oracle, *PHANTOM, "--out", tmp_path / "again")
    assert r.code == 0, r.err
    assert "records no heatmap digest (made by an older harness)" in r.err
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    assert again["method"] == "oracle_gaussian" and again["source_verified"] is False
    r = bench_cli("leaderboard", "--add", tmp_path / "again", "--results", tmp_path / "results",
                  "--reported", tmp_path / "none", "--out", tmp_path / "lb")
    assert r.code == 2 and "scored the maps of a run made by an older harness" in _one_line(r.err)
    assert not (tmp_path / "results").exists()


def test_maps_swapped_into_a_run_folder_do_not_inherit_its_method(runs, bench_cli, tmp_path: Path) -> None:
    oracle, uniform = runs
    r = bench_cli("score", "--heatmaps", oracle, *PHANTOM, "--out", tmp_path / "same")
    assert r.code == 0, r.err
    same = json.loads((tmp_path / "same" / "run.json").read_text())
    assert (same["method"], same["backend"], same["source_verified"]) == ("oracle_gaussian", "oracle_gaussian", True)
    assert same["digests"]["heatmaps"] == json.loads((oracle / "run.json").read_text())["digests"]["heatmaps"]
    # the uniform run's maps put into the oracle's folder
    shutil.rmtree(oracle / "heatmaps")
    shutil.copytree(uniform / "heatmaps", oracle / "heatmaps")
    r = bench_cli("score", "--heatmaps", oracle, *PHANTOM, "--out", tmp_path / "swapped")
    assert r.code == 2
    assert _one_line(r.err) == (f"error: --heatmaps {oracle / 'heatmaps'}: these are not the maps "
                                f"{oracle / 'run.json'} records for method 'oracle_gaussian' (the heatmap set's "
                                "digest differs); score them as your own maps with --name NAME")
    assert not (tmp_path / "swapped").exists()
    r = bench_cli("score", "--heatmaps", oracle, *PHANTOM, "--out", tmp_path / "swapped", "--name", "mine")
    assert r.code == 0, r.err
    mine = json.loads((tmp_path / "swapped" / "run.json").read_text())
    assert (mine["method"], mine["backend"], mine["source_run"], mine["source_verified"]) == ("mine", None, None, None)
    # they are the uniform run's maps: its numbers, under the name given
    scored = pd.read_csv(tmp_path / "swapped" / "samples.csv")
    assert (scored["miou"] == 0).all() and (scored["auc_roc"] == 0.5).all()
    # the oracle's folder no longer holds what it says: compare refuses it, or marks it
    r = bench_cli("compare", uniform, oracle)
    assert r.code == 2 and _one_line(r.err).startswith(f"error: {oracle / 'heatmaps'} was changed after the run")
    r = bench_cli("compare", uniform, oracle, "--allow-modified")
    assert r.code == 0 and "oracle_gaussian [modified]" in r.out and "read although modified: heatmaps/ (maps) changed" in r.err
    # one map fewer is a different heatmap set too
    next((oracle / "heatmaps").glob("*.npz")).unlink()
    r = bench_cli("score", "--heatmaps", oracle, *PHANTOM, "--out", tmp_path / "fewer")
    assert r.code == 2 and "(7 maps, 8 recorded; the heatmap set's digest differs)" in _one_line(r.err)
    # a scored run's tables stay its own when the folder it read changes; re-scoring those maps is refused
    r = bench_cli("compare", tmp_path / "swapped", uniform)
    assert r.code == 0 and "mine [modified]" not in r.out
    r = bench_cli("compare", "--protocols", "vilouras2024", tmp_path / "swapped")
    assert r.code == 2
    assert _one_line(r.err).startswith(f"error: {oracle / 'heatmaps'} was changed after the run was written (the "
                                       "maps' digest differs from the one run.json records; 7 maps, 8 recorded)")


def test_the_rescore_cache_follows_the_maps(runs, bench_cli, tmp_path: Path) -> None:
    oracle, _ = runs
    cache = tmp_path / "sens"
    args = ["compare", "--protocols", "vilouras2024", oracle, "--out", cache]
    r = bench_cli(*args)
    assert r.code == 0 and "1 of 1 run x protocol tables scored now" in r.out
    before = pd.read_csv(rescored_folder(oracle, "vilouras2024", cache / "rescored") / "samples.csv")
    key = json.loads((rescored_folder(oracle, "vilouras2024", cache / "rescored") / "source.json").read_text())
    assert key["heatmaps"] == json.loads((oracle / "run.json").read_text())["digests"]["heatmaps"]
    # every map flattened to a constant: run.json is untouched, the maps are not the run's any more
    for path in (oracle / "heatmaps").glob("*.npz"):
        heatmap = Heatmap.load(path)
        Heatmap(np.full_like(heatmap.values, 0.5), heatmap.geometry, heatmap.meta).save(path)
    r = bench_cli(*args)
    assert r.code == 2
    assert _one_line(r.err).startswith(f"error: {oracle / 'heatmaps'} was changed after the run was written (the "
                                       "maps' digest differs from the one run.json records)")
    r = bench_cli(*args, "--allow-modified")
    assert r.code == 0, r.err
    assert "1 of 1 run x protocol tables scored now" in r.out and "oracle_gaussian [modified]" in r.out
    after = pd.read_csv(rescored_folder(oracle, "vilouras2024", cache / "rescored") / "samples.csv")
    assert before["miou"].mean() > 0.5 and (after["miou"] == 0).all()
    r = bench_cli(*args, "--allow-modified")
    assert r.code == 0 and "0 of 1 run x protocol tables scored now" in r.out
    with pytest.raises(bench.BenchError, match="heatmaps was changed after the run was written"):
        bench.rescore([oracle], ["vilouras2024"])
    moved = bench.rescore([oracle], ["vilouras2024"], allow_modified=True)
    assert list(moved.samples) == [("oracle_gaussian [modified]", "vilouras2024")]


def test_the_rescore_cache_of_an_unverified_run_follows_its_maps(runs, bench_cli, tmp_path: Path) -> None:
    """A run without digests cannot be checked, but its rescored tables are still made again when its maps change."""
    oracle, _ = runs
    record = json.loads((oracle / "run.json").read_text())
    del record["digests"]
    (oracle / "run.json").write_text(json.dumps(record))
    args = ["compare", "--protocols", "vilouras2024", oracle, "--out", tmp_path / "sens"]
    assert "1 of 1 run x protocol tables scored now" in bench_cli(*args).out
    for path in (oracle / "heatmaps").glob("*.npz"):
        heatmap = Heatmap.load(path)
        Heatmap(np.full_like(heatmap.values, 0.5), heatmap.geometry, heatmap.meta).save(path)
    r = bench_cli(*args)
    assert r.code == 0 and "1 of 1 run x protocol tables scored now" in r.out
    after = pd.read_csv(rescored_folder(oracle, "vilouras2024", tmp_path / "sens" / "rescored") / "samples.csv")
    assert (after["miou"] == 0).all()


def test_a_failed_add_leaves_results_untouched(runs, bench_cli, tmp_path: Path) -> None:
    oracle, uniform = runs
    results = tmp_path / "results"
    args = ["--results", results, "--reported", tmp_path / "none", "--out", tmp_path / "lb"]
    assert bench_cli("leaderboard", "--add", uniform, *args).code == 0

    def snapshot() -> dict[str, bytes]:
        return {p.relative_to(results).as_posix(): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}

    before = snapshot()
    # a run scored with other protocol settings cannot share the page: refused before the copy
    record = json.loads((oracle / "run.json").read_text())
    record["protocol_fingerprint"] = "0000000000000000"
    (oracle / "run.json").write_text(json.dumps(record))
    r = bench_cli("leaderboard", "--add", oracle, *args)
    assert r.code == 2 and "were scored with different protocol settings" in _one_line(r.err)
    assert snapshot() == before and not any(p.name.startswith(".") for p in results.rglob("*"))
    # a table without a metric column (its digests recorded as the run's): refused, no dataset folder left behind
    record["protocol_fingerprint"] = json.loads((uniform / "run.json").read_text())["protocol_fingerprint"]
    record["config"]["dataset"]["options"]["n_test"] = "9"  # another page, whose folders do not exist yet
    _edit_samples(oracle, lambda t: t.drop(columns=["pointing_game"]))
    record["digests"] = integrity.record_digests(oracle, 8, None)
    (oracle / "run.json").write_text(json.dumps(record))
    r = bench_cli("leaderboard", "--add", oracle, *args)
    assert r.code == 2 and "samples.csv has no column 'pointing_game'" in _one_line(r.err)
    assert snapshot() == before and sorted(p.name for p in results.iterdir()) == [ENTRY_KEY]
    # and the results folder still builds
    assert bench_cli("leaderboard", *args).code == 0
