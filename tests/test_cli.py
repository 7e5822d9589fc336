"""End-to-end behaviour of the command line on the built-in phantom dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_PHANTOM

CATEGORIES = {"atelectasis", "cardiomegaly", "consolidation", "edema", "lung opacity", "pleural effusion",
              "pneumonia", "pneumothorax"}


def _run(bench_cli, method: str, out: Path, *extra: str):
    return bench_cli("run", "--method", method, "--dataset", "phantom", *SMALL_PHANTOM, "--out", out, *extra)


def test_list_commands(bench_cli) -> None:
    r = bench_cli("list", "methods")
    assert r.code == 0 and "oracle_gaussian" in r.out and "box_prior" in r.out and "uniform" in r.out
    r = bench_cli("list", "datasets")
    assert r.code == 0 and all(n in r.out for n in ("phantom", "chestx-ray14", "ms-cxr"))
    r = bench_cli("list", "protocols")
    assert r.code == 0 and "default" in r.out


def test_run_writes_full_run_directory(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = _run(bench_cli, "oracle_gaussian", out)
    assert r.code == 0, r.err
    assert "macro" in r.out and "micro" in r.out and "pneumothorax" in r.out
    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == 16
    assert list(samples.columns[:2]) == ["sample_id", "category"]
    for col in ("cnr", "cnr_abs", "iou@0.1", "iou@0.5", "miou", "auc_roc", "pointing_game"):
        assert col in samples.columns
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.columns) == ["group", "metric", "mean", "ci_low", "ci_high", "n"]
    assert set(summary["group"]) == set(samples["category"]) | {"macro", "micro"}
    macro = summary[(summary["group"] == "macro") & (summary["metric"] == "miou")].iloc[0]
    assert macro["ci_low"] <= macro["mean"] <= macro["ci_high"]
    # the oracle is near its published 0.675 and always points inside the boxes
    assert samples["miou"].mean() == pytest.approx(0.675, abs=0.03)
    assert samples["pointing_game"].min() == 1.0
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["method"] == "oracle_gaussian" and run["random_weights"] is False
    assert run["protocol"]["name"] == "default" and run["skipped"] == []
    assert {"versions", "timings", "seed", "provenance"} <= set(run)
    assert len(list((out / "heatmaps").glob("*.npz"))) == 16
    assert not (out / "scores.jsonl").exists()


def test_uniform_scores_the_constant_floor(bench_cli, tmp_path: Path) -> None:
    assert _run(bench_cli, "uniform", tmp_path / "u").code == 0
    s = pd.read_csv(tmp_path / "u" / "samples.csv")
    assert (s["miou"] == 0).all() and (s["cnr"] == 0).all() and (s["auc_roc"] == 0.5).all()


def test_box_prior_fits_on_train_split(bench_cli, tmp_path: Path) -> None:
    assert _run(bench_cli, "box_prior", tmp_path / "b").code == 0
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["provenance"]["fit"] == "train split"
    s = pd.read_csv(tmp_path / "b" / "samples.csv")
    assert s["auc_roc"].mean() > 0.6  # a location prior beats chance on phantom


def test_rerun_recomputes_nothing_and_resumes(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    first = (out / "samples.csv").read_text()
    maps = sorted((out / "heatmaps").glob("*.npz"))
    stamps = {p: p.stat().st_mtime_ns for p in maps}
    time.sleep(0.01)
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    assert all(p.stat().st_mtime_ns == stamps[p] for p in maps)
    assert (out / "samples.csv").read_text() == first
    # lose some heatmaps: only those are made again, results identical
    for p in maps[:5]:
        p.unlink()
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    assert all(p.stat().st_mtime_ns == stamps[p] for p in maps[5:])
    assert (out / "samples.csv").read_text() == first


def test_other_run_in_out_dir_is_refused(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    r = _run(bench_cli, "uniform", out)
    assert r.code == 2 and "holds a different run" in r.err


@pytest.mark.parametrize("args, words", [
    (["run", "--method", "nope", "--dataset", "phantom"], "unknown method 'nope'"),
    (["run", "--method", "uniform", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["run", "--method", "uniform", "--dataset", "phantom", "--protocol", "nope"], "unknown protocol 'nope'"),
    (["run", "--method", "uniform", "--dataset", "phantom", "-O", "bogus=1"], "unknown option 'bogus'"),
    (["run", "--method", "oracle_gaussian", "--dataset", "phantom", "--set", "nosuch=1"], "no field"),
])
def test_user_errors_are_one_line(bench_cli, tmp_path: Path, args, words) -> None:
    r = bench_cli(*args, "--out", tmp_path / "x")
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and lines[0].startswith("error: ")
    assert not (tmp_path / "x").exists()


def test_set_override_recorded(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "s"
    assert _run(bench_cli, "oracle_gaussian", out, "--set", "sigma_fraction=0.5").code == 0
    run = json.loads((out / "run.json").read_text())
    assert run["overrides"] == ["sigma_fraction=0.5"]
    assert run["config"]["method"]["params"]["sigma_fraction"] == 0.5


def test_score_rescores_a_run_and_user_npy(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    r = bench_cli("score", "--heatmaps", out, "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "re")
    assert r.code == 0, r.err
    a = pd.read_csv(out / "samples.csv")
    b = pd.read_csv(tmp_path / "re" / "samples.csv")
    pd.testing.assert_frame_equal(a, b)
    # the same maps as original-size .npy files (what a user brings) score the same
    from bench.core.heatmap import Heatmap
    from bench.evaluation.resample import to_original

    user = tmp_path / "user"
    user.mkdir()
    for p in (out / "heatmaps").glob("*.npz"):
        np.save(user / f"{p.stem}.npy", to_original(Heatmap.load(p)).astype(np.float32))
    assert bench_cli("score", "--heatmaps", user, "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "u").code == 0
    c = pd.read_csv(tmp_path / "u" / "samples.csv")
    for col in ("miou", "cnr", "auc_roc", "pointing_game"):
        np.testing.assert_allclose(c[col], a[col], atol=1e-6)


def test_score_bad_heatmap_error_and_skip(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _run(bench_cli, "oracle_gaussian", out).code == 0
    user = tmp_path / "user"
    shutil.copytree(out / "heatmaps", user)
    victim = sorted(user.glob("*.npz"))[3]
    sid = victim.stem
    from bench.core.heatmap import Heatmap

    hm = Heatmap.load(victim)
    hm.values[0, 0] = np.inf
    hm.save(victim)
    r = bench_cli("score", "--heatmaps", user, "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "s1")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and sid in r.err and "infinite" in r.err
    assert not (tmp_path / "s1" / "samples.csv").exists()
    r = bench_cli("score", "--heatmaps", user, "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "s2", "--skip-bad")
    assert r.code == 0
    run = json.loads((tmp_path / "s2" / "run.json").read_text())
    assert run["skipped"] == [{"sample_id": sid, "reason": "heatmap has infinite values"}]
    assert len(pd.read_csv(tmp_path / "s2" / "samples.csv")) == 15


def test_compare_paired_and_protocol_check(bench_cli, tmp_path: Path) -> None:
    assert _run(bench_cli, "oracle_gaussian", tmp_path / "a").code == 0
    assert _run(bench_cli, "uniform", tmp_path / "b").code == 0
    r = bench_cli("compare", tmp_path / "a", tmp_path / "b", "--out", tmp_path / "cmp")
    assert r.code == 0, r.err
    diffs = pd.read_csv(tmp_path / "cmp" / "differences.csv")
    miou = diffs[diffs["metric"] == "miou"].iloc[0]
    a = pd.read_csv(tmp_path / "a" / "samples.csv")
    assert miou["difference"] == pytest.approx(-a.groupby("category")["miou"].mean().mean())
    assert miou["p_value"] < 0.01
    other = tmp_path / "c"
    shutil.copytree(tmp_path / "b", other)
    run = json.loads((other / "run.json").read_text())
    run["protocol_fingerprint"] = "0" * 16
    (other / "run.json").write_text(json.dumps(run))
    r = bench_cli("compare", tmp_path / "a", other)
    assert r.code == 2 and "different protocols" in r.err


def test_dataset_command_writes_sample_list(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "samples.csv"
    r = bench_cli("dataset", "phantom", *SMALL_PHANTOM, "--out", out)
    assert r.code == 0
    table = pd.read_csv(out)
    assert list(table.columns) == ["sample_id", "image_path", "width", "height", "category", "phrase", "boxes", "split"]
    assert len(table) == 32 and set(table["category"]) == CATEGORIES
    assert all(Path(p).is_file() for p in table["image_path"])
    assert all(len(json.loads(b)[0]) == 4 for b in table["boxes"])


def test_help_on_every_command(bench_cli) -> None:
    for cmd in ("list", "dataset", "run", "score", "compare"):
        r = bench_cli(cmd, "--help")
        assert r.code == 0 and "Usage" in r.out


def test_killed_run_resumes_to_identical_results(tmp_path: Path) -> None:
    """Kill `bench run` at several moments; the resumed run equals an uninterrupted one."""
    exe = [sys.executable, "-m", "bench.cli"]
    env = dict(os.environ, BENCH_CACHE=str(tmp_path / "cache"), BENCH_QUIET="1")
    opts = ["-O", "n_test=120", "-O", "n_train=8"]
    base = [*exe, "run", "--method", "oracle_gaussian", "--dataset", "phantom", *opts, "--batch-size", "4"]
    subprocess.run([*base, "--out", str(tmp_path / "ref")], env=env, check=True, capture_output=True)
    out = tmp_path / "killed"
    for delay in (2.0, 2.6, 3.2):
        proc = subprocess.Popen([*base, "--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
    done = subprocess.run([*base, "--out", str(out)], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("samples.csv", "summary.csv"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
    assert not list(out.rglob("*.tmp"))


def test_box_prior_leaves_an_evaluated_train_sample_out_of_its_own_prior() -> None:
    """Under a protocol that scores every split, a train sample's prior is the mean of the *other* train
    masks of its category; a test sample's is the mean of all of them (4 x 4 grid, 8 x 8 images)."""
    from bench.core.samples import Sample
    from bench.methods import RunContext, backend_class
    from bench.methods.specs import load_method_spec

    def s(sid: str, split: str, box: tuple) -> Sample:
        return Sample(sid, "x.png", 8, 8, "c", "p", (box,), split)

    a, b, t = s("a", "train", (0, 0, 4, 4)), s("b", "train", (4, 4, 4, 4)), s("t", "test", (0, 0, 8, 8))
    spec = load_method_spec("box_prior")
    spec["params"]["grid"] = 4
    method = backend_class("box_prior")(spec, RunContext(all_samples=[a, b, t], eval_samples=[a, b, t]))
    method.prepare(None)
    maps = {m_s.sample_id: m.values for m_s, m in zip([a, b, t], method.heatmaps([a, b, t], None))}
    top_left = np.zeros((4, 4))
    top_left[:2, :2] = 1
    np.testing.assert_array_equal(maps["a"], top_left[::-1, ::-1])  # b's box only
    np.testing.assert_array_equal(maps["b"], top_left)               # a's box only
    np.testing.assert_array_equal(maps["t"], (top_left + top_left[::-1, ::-1]) / 2)
    assert method.provenance()["fit"] == "train split, evaluated train samples left out of their own prior"
