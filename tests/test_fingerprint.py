"""What a run was scored on: the dataset fingerprint, the --limit subset, and the checks built on them."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_PHANTOM

from bench.core.fingerprint import dataset_fingerprint
from bench.core.samples import Sample
from bench.datasets import get_dataset
from bench.evaluation.subset import limit_subset


def _run(bench_cli, method: str, out: Path, *extra: str):
    return bench_cli("run", "--method", method, "--dataset", "phantom", *SMALL_PHANTOM, "--out", out, *extra)


def _sample(sid: str, category: str, box=(1.0, 2.0, 3.0, 4.0)) -> Sample:
    return Sample(sid, f"/img/{sid}.png", 10, 12, category, f"{category} phrase", (box,))


def test_fingerprint_is_the_sample_list_not_its_order_or_paths() -> None:
    samples = [_sample("a", "x"), _sample("b", "y")]
    fp = dataset_fingerprint("d", {}, samples)
    assert fp == dataset_fingerprint("d", {}, samples[::-1])
    moved = [Sample(s.sample_id, f"/elsewhere/{s.sample_id}.png", s.width, s.height, s.category, s.phrase, s.boxes)
             for s in samples]
    assert dataset_fingerprint("d", {}, moved) == fp
    assert dataset_fingerprint("d", {}, [_sample("a", "x", (1.0, 2.0, 3.0, 5.0)), samples[1]]) != fp
    assert dataset_fingerprint("d", {}, [_sample("a", "y"), samples[1]]) != fp
    assert dataset_fingerprint("d", {}, samples[:1]) != fp
    assert dataset_fingerprint("d", {"size": "mimic"}, samples) != fp
    assert dataset_fingerprint("e", {}, samples) != fp
    # integral float boxes hash as the integers samples.csv writes
    assert dataset_fingerprint("d", {}, [_sample("a", "x", (1, 2, 3, 4)), samples[1]]) == fp


def test_phantom_options_in_force_are_hashed_not_as_spelled() -> None:
    plain = get_dataset("phantom", None, {"n_test": "16", "n_train": "16"})
    spelled = get_dataset("phantom", None, {"n_test": "16", "n_train": "16", "seed": "0", "size": "default"})
    assert plain.fingerprint_options() == spelled.fingerprint_options()
    other = get_dataset("phantom", None, {"n_test": "16", "n_train": "16", "seed": "1"})
    assert other.fingerprint_options()["seed"] == "1"


def test_limit_takes_every_category_in_turn_and_the_same_for_everyone() -> None:
    # a dataset listed category by category: a head-8 cut would cover two categories of four
    samples = [_sample(f"{c}-{i}", c) for c in "abcd" for i in range(4)]
    chosen = limit_subset(samples, 8)
    assert len(chosen) == 8
    assert pd.Series([s.category for s in chosen]).value_counts().to_dict() == {"a": 2, "b": 2, "c": 2, "d": 2}
    assert [s.sample_id for s in chosen] == [s.sample_id for s in samples if s in chosen]  # dataset order kept
    assert limit_subset(samples[::-1], 8) == chosen[::-1]  # the same ids whatever the listing order
    assert len(limit_subset(samples, 3)) == 3 and len({s.category for s in limit_subset(samples, 3)}) == 3
    assert limit_subset(samples, 100) == samples
    # uneven categories: the small one is used up, the rest fill the limit
    uneven = [_sample("a-0", "a")] + [_sample(f"b-{i}", "b") for i in range(6)]
    assert {s.sample_id for s in limit_subset(uneven, 4)} >= {"a-0"} and len(limit_subset(uneven, 4)) == 4


def test_run_json_records_the_fingerprint_and_how_the_run_was_made(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(bench_cli, "uniform", out).code == 0
    run = json.loads((out / "run.json").read_text())
    from bench import __version__
    from bench.evaluation.protocols import load_protocol
    from bench.evaluation.scoring import select_samples

    ds = get_dataset("phantom", None, {"n_test": "16", "n_train": "16"})
    expected = dataset_fingerprint("phantom", ds.fingerprint_options(), select_samples(ds.samples(),
                                                                                         load_protocol("default")))
    assert run["dataset_fingerprint"] == expected and run["dataset_samples"] == 16 and run["excluded"] == []
    assert run["schema_version"] == 3 and run["harness"]["version"] == __version__
    assert run["command"][1:5] == ["run", "--method", "uniform", "--dataset"]
    assert run["date"].endswith("+00:00")
    # a --limit run is on the same sample list, and says it covers a part of it
    lim = tmp_path / "lim"
    assert _run(bench_cli, "uniform", lim, "--limit", "8").code == 0
    limited = json.loads((lim / "run.json").read_text())
    assert limited["dataset_fingerprint"] == expected and limited["limit"] == 8
    assert len(pd.read_csv(lim / "samples.csv")) == 8
    # another seed is another sample list
    other = tmp_path / "other"
    assert bench_cli("run", "--method", "uniform", "--dataset", "phantom", *SMALL_PHANTOM, "-O", "seed=3",
                     "--out", other).code == 0
    assert json.loads((other / "run.json").read_text())["dataset_fingerprint"] != expected


def test_limit_subset_is_the_same_for_every_method_and_marks_one_sample_categories(bench_cli, tmp_path: Path) -> None:
    r = _run(bench_cli, "oracle_gaussian", tmp_path / "a", "--limit", "8")
    assert r.code == 0, r.err
    assert _run(bench_cli, "uniform", tmp_path / "b", "--limit", "8").code == 0
    a, b = (pd.read_csv(tmp_path / n / "samples.csv") for n in "ab")
    assert list(a["sample_id"]) == list(b["sample_id"]) and a["category"].nunique() == 8
    # one sample per category: no interval is printed or stored for it
    assert "[no CI, n<2]" in r.out and "0.000, 0.000]" not in r.out
    summary = pd.read_csv(tmp_path / "a" / "summary.csv")
    assert summary["ci_low"].isna().all() and summary["mean"].notna().all()


def test_compare_refuses_other_sample_lists_and_warns_on_other_sample_sets(bench_cli, tmp_path: Path) -> None:
    assert _run(bench_cli, "oracle_gaussian", tmp_path / "a").code == 0
    assert _run(bench_cli, "uniform", tmp_path / "lim", "--limit", "8").code == 0
    r = bench_cli("compare", tmp_path / "a", tmp_path / "lim")
    assert r.code == 0, r.err
    assert (f"WARNING: the runs cover different samples ({tmp_path / 'a'}: 16, {tmp_path / 'lim'}: 8); every "
            "number below is on the 8 samples they all have") in r.err
    assert "mean on 8 common samples" in r.out
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "a", other)
    run = json.loads((other / "run.json").read_text())
    run["dataset_fingerprint"] = "f" * 16
    (other / "run.json").write_text(json.dumps(run))
    r = bench_cli("compare", tmp_path / "a", other)
    assert r.code == 2 and "different sample lists" in r.err and "f" * 16 in r.err
    assert len(r.err.strip().splitlines()) == 1
    del run["dataset_fingerprint"]
    (other / "run.json").write_text(json.dumps(run))
    r = bench_cli("compare", tmp_path / "a", other)
    assert r.code == 0 and "no dataset fingerprint" in r.err


def test_compare_on_one_category(bench_cli, tmp_path: Path) -> None:
    assert _run(bench_cli, "oracle_gaussian", tmp_path / "a").code == 0
    assert _run(bench_cli, "uniform", tmp_path / "b").code == 0
    r = bench_cli("compare", tmp_path / "a", tmp_path / "b", "--group", "pneumothorax", "--out", tmp_path / "cmp")
    assert r.code == 0, r.err
    assert "pneumothorax mean on 2 common samples" in r.out
    diffs = pd.read_csv(tmp_path / "cmp" / "differences.csv").set_index("metric")
    a = pd.read_csv(tmp_path / "a" / "samples.csv")
    b = pd.read_csv(tmp_path / "b" / "samples.csv")
    pick = a["category"] == "pneumothorax"
    assert diffs.at["miou", "difference"] == pytest.approx(b[pick]["miou"].mean() - a[pick]["miou"].mean())
    assert diffs.at["miou", "n"] == 2 and diffs.at["miou", "group"] == "pneumothorax"
    r = bench_cli("compare", tmp_path / "a", tmp_path / "b", "--group", "fracture")
    assert r.code == 2 and "--group 'fracture'" in r.err and "pneumothorax" in r.err


def test_a_skip_bad_run_cannot_enter_a_leaderboard(bench_cli, tmp_path: Path) -> None:
    from bench.core.heatmap import Heatmap

    out = tmp_path / "run"
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    user = tmp_path / "user"
    shutil.copytree(out / "heatmaps", user)
    victim = sorted(user.glob("*.npz"))[3]
    hm = Heatmap.load(victim)
    hm.values[0, 0] = float("inf")
    hm.save(victim)
    part = tmp_path / "part"
    assert bench_cli("score", "--heatmaps", user, "--dataset", "phantom", *SMALL_PHANTOM, "--out", part,
                     "--skip-bad").code == 0
    r = bench_cli("leaderboard", "--add", part, "--results", tmp_path / "results", "--reported", tmp_path / "rep",
                  "--out", tmp_path / "boards")
    assert r.code == 2 and f"skipped 1 of the protocol's 16 samples (first: {victim.stem})" in r.err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("run.json"))
    # the whole run goes in
    r = bench_cli("leaderboard", "--add", out, "--results", tmp_path / "results", "--reported", tmp_path / "rep",
                  "--out", tmp_path / "boards")
    assert r.code == 0, r.err
    entry = next((tmp_path / "results").glob("*/*/*/"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o777 & ~umask  # not the 0700 of a temporary folder


def test_relative_data_root_is_stored_resolved(bench_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert _run(bench_cli, "uniform", Path("run"), "--data-root", "images").code == 0
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["config"]["dataset"]["data_root"] == str((tmp_path / "images").resolve())
    assert os.path.isabs(run["config"]["dataset"]["data_root"])


def test_native_maps_written_by_the_helper_score_as_the_run_and_say_their_grid(bench_cli, tmp_path: Path) -> None:
    """The same maps as native .npz (values + geometry) score exactly as the run they came from, also under a
    GMM protocol; as upsampled .npy they need not. run.json and the page say which grid was scored."""
    import numpy as np

    from bench.core.heatmap import Heatmap
    from bench.evaluation.resample import to_original
    from bench.leaderboard.pages import scored_from
    from bench.running.byo import write_native_map

    run = tmp_path / "run"
    tiny = ["--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=0"]
    assert bench_cli("run", "--method", "box_prior", *tiny, "--protocol", "nutzel2025", "--out", run).code == 0
    native, upsampled = tmp_path / "native", tmp_path / "up"
    upsampled.mkdir()
    for path in sorted((run / "heatmaps").glob("*.npz")):
        hm = Heatmap.load(path)
        write_native_map(native, path.stem, hm.values, hm.geometry)
        np.save(upsampled / f"{path.stem}.npy", to_original(hm))
    for name, folder in (("n", native), ("u", upsampled)):
        r = bench_cli("score", "--heatmaps", folder, *tiny, "--protocol", "nutzel2025", "--out", tmp_path / name)
        assert r.code == 0, r.err
    ref, got = pd.read_csv(run / "samples.csv"), pd.read_csv(tmp_path / "n" / "samples.csv")
    pd.testing.assert_frame_equal(ref, got)
    record = json.loads((tmp_path / "n" / "run.json").read_text())
    assert record["heatmap_grid"] == {"native": 8, "original": 0} and scored_from(record) == "native grid"
    record = json.loads((tmp_path / "u" / "run.json").read_text())
    assert record["heatmap_grid"] == {"native": 0, "original": 8} and scored_from(record) == "original-size .npy"
    assert scored_from({"heatmap_grid": {"native": 3, "original": 1}}) == "mixed: 3 native, 1 original-size"
    assert scored_from({"n_samples": 5}) == "native grid"  # a model run: its own maps


def test_the_same_samples_give_the_same_interval_in_a_run_and_in_compare(bench_cli, tmp_path: Path) -> None:
    """ChestX-ray14 lists its samples category by category, not in id order: the run's summary.csv
    and `bench compare` must still resample alike."""
    nih = os.environ.get("BENCH_NIH_ROOT")
    if not nih or not Path(nih, "BBox_List_2017.csv").is_file():
        if os.environ.get("CI"):
            pytest.fail("CI needs the NIH sample (BENCH_NIH_ROOT)")
        pytest.skip("BENCH_NIH_ROOT not set")
    for method in ("box_prior", "uniform"):
        r = bench_cli("run", "--method", method, "--dataset", "chestx-ray14", "--data-root", nih, "--out",
                      tmp_path / method)
        assert r.code == 0, r.err
    ids = pd.read_csv(tmp_path / "box_prior" / "samples.csv")["sample_id"].astype(str)
    assert not ids.is_monotonic_increasing  # the order the dataset lists them in
    r = bench_cli("compare", tmp_path / "box_prior", tmp_path / "uniform", "--out", tmp_path / "cmp")
    assert r.code == 0, r.err
    compared = pd.read_csv(tmp_path / "cmp" / "summaries.csv")
    compared = compared[compared["run"] == "box_prior"].set_index(["group", "metric"])
    own = pd.read_csv(tmp_path / "box_prior" / "summary.csv").set_index(["group", "metric"])
    for col in ("mean", "ci_low", "ci_high"):
        np.testing.assert_allclose(compared.loc[own.index, col], own[col], rtol=1e-9)
