"""Sharded runs: separate processes each run a shard, the merge equals one unsharded run exactly."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.running.shards import Shard, parse_shard, select

PHANTOM = ["--dataset", "phantom", "-O", "n_test=10", "-O", "n_train=4"]
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _bench_args(method: str, out: Path, *extra: str) -> list[str]:
    return ["run", "--method", method, *PHANTOM, "--out", str(out), *extra]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(HF_HUB_OFFLINE="1", BENCH_QUIET="1", BENCH_CACHE=str(tmp_path / "cache"), **extra)
    return env


def _together(commands: list[tuple[list[str], dict[str, str]]]) -> list[subprocess.CompletedProcess]:
    """Start every `bench` command at once and wait for all of them."""
    procs = [subprocess.Popen([sys.executable, "-m", "bench.cli", *args], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args, env in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def _same_run(a: Path, b: Path) -> None:
    """samples.csv and summary.csv byte for byte, run.json but for timings, command and date, the same heatmaps."""
    assert (a / "samples.csv").read_bytes() == (b / "samples.csv").read_bytes()
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    ra, rb = (json.loads((d / "run.json").read_text()) for d in (a, b))
    assert ra.pop("timings").keys() == rb.pop("timings").keys()
    for key in ("command", "date"):  # how and when each was invoked
        assert ra.pop(key) and rb.pop(key)
    ra.pop("shards", None)
    rb.pop("shards", None)
    assert ra == rb
    maps_a = sorted(p.name for p in (a / "heatmaps").iterdir())
    assert maps_a == sorted(p.name for p in (b / "heatmaps").iterdir()) and len(maps_a) == 10
    for name in maps_a:
        np.testing.assert_array_equal(Heatmap.load(a / "heatmaps" / name).values, Heatmap.load(b / "heatmaps" / name).values)
    assert sorted(p.name for p in a.iterdir()) == [".lock", "heatmaps", "run.json", "samples.csv", "summary.csv"]


def test_select_splits_by_sorted_id() -> None:
    samples = [Sample(sample_id=f"s{i:02d}", image_path="x.png", width=8, height=8, category="edema", phrase="p",
                      boxes=((0, 0, 2, 2),), split="test") for i in (5, 1, 9, 3, 7, 0, 2)]
    parts = [[s.sample_id for s in select(samples, Shard(i, 3))] for i in range(3)]
    # sorted ids s00 s01 s02 s03 s05 s07 s09: every third from the shard's index, kept in the run's order
    assert parts == [["s09", "s03", "s00"], ["s05", "s01"], ["s07", "s02"]]
    # the split depends on the ids, not on the order they come in
    assert [s.sample_id for s in select(samples[::-1], Shard(0, 3))] == ["s00", "s03", "s09"]


def test_parse_shard() -> None:
    assert parse_shard("0/4") == Shard(0, 4) and parse_shard(" 3 / 4 ") == Shard(3, 4)


def test_two_shard_processes_merge_to_the_unsharded_run(bench_cli, tmp_path: Path) -> None:
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert bench_cli(*_bench_args("oracle_gaussian", whole)).code == 0
    results = _together([(_bench_args("oracle_gaussian", sharded, "--shard", f"{i}/2"), _env(tmp_path))
                         for i in range(2)])
    for i, r in enumerate(results):
        assert r.returncode == 0, r.stderr
        assert f"shard {i}/2: 5 sample(s) scored" in r.stdout
    assert not (sharded / "samples.csv").exists() and not (sharded / "run.json").exists()
    records = [json.loads((sharded / "shards" / f"{i}-of-2.json").read_text()) for i in range(2)]
    assert [r["status"] for r in records] == ["complete", "complete"] and [r["n_samples"] for r in records] == [5, 5]
    stamps = {p.name: p.stat().st_mtime_ns for p in (sharded / "heatmaps").iterdir()}
    merged = bench_cli(*_bench_args("oracle_gaussian", sharded))
    assert merged.code == 0, merged.err
    assert "macro" in merged.out
    # the merge made no heatmap again and left no shard files behind
    assert {p.name: p.stat().st_mtime_ns for p in (sharded / "heatmaps").iterdir()} == stamps
    _same_run(sharded, whole)
    run = json.loads((sharded / "run.json").read_text())
    assert [s["shard"] for s in run["shards"]] == ["0/2", "1/2"]


def test_merge_refuses_missing_or_different_shards(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert bench_cli(*_bench_args("uniform", out, "--shard", "1/2")).code == 0
    r = bench_cli(*_bench_args("uniform", out))
    assert r.code == 2 and r.err.strip() == f"error: shard(s) 0/2 have no results in {out}; run them with --shard, then merge"
    r = bench_cli(*_bench_args("uniform", out, "--limit", "4"))
    assert r.code == 2 and "different sample set" in r.err and len(r.err.strip().splitlines()) == 1
    r = bench_cli(*_bench_args("oracle_gaussian", out, "--shard", "0/2"))
    assert r.code == 2 and "holds shard 1/2 of a different run" in r.err
    assert bench_cli(*_bench_args("uniform", out, "--shard", "0/2")).code == 0
    r = bench_cli(*_bench_args("uniform", out))
    assert r.code == 0, r.err
    assert not (out / "shards").exists() and len(list((out / "heatmaps").iterdir())) == 10


def test_unfinished_shard_blocks_the_merge(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    for i in range(2):
        assert bench_cli(*_bench_args("uniform", out, "--shard", f"{i}/2")).code == 0
    record = out / "shards" / "1-of-2.json"
    state = json.loads(record.read_text())
    record.write_text(json.dumps({**state, "status": "running"}))
    r = bench_cli(*_bench_args("uniform", out))
    assert r.code == 2 and "shard(s) 1/2" in r.err and "have not finished" in r.err
    record.write_text(json.dumps({**state, "status": "failed", "error": "out of memory"}))
    r = bench_cli(*_bench_args("uniform", out))
    assert r.code == 2 and "shard 1/2 failed: out of memory" in r.err
    # running the shard again resumes it, and the merge goes through
    assert bench_cli(*_bench_args("uniform", out, "--shard", "1/2")).code == 0
    assert bench_cli(*_bench_args("uniform", out)).code == 0


@pytest.mark.parametrize("value, words", [
    ("2/2", "INDEX must be in 0..1 (shards are numbered from 0)"),
    ("1", "expected INDEX/COUNT such as 0/4"),
    ("a/b", "expected INDEX/COUNT such as 0/4"),
    ("-1/2", "expected INDEX/COUNT such as 0/4"),
    ("0/0", "COUNT must be at least 1"),
])
def test_bad_shard_values_are_one_line(bench_cli, tmp_path: Path, value: str, words: str) -> None:
    r = bench_cli(*_bench_args("uniform", tmp_path / "x", "--shard", value))
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1 and lines[0].startswith("error: --shard") and words in lines[0]
    assert not (tmp_path / "x").exists()


def test_launch_environment_errors(bench_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    r = bench_cli(*_bench_args("uniform", tmp_path / "x"))
    assert r.code == 2 and "MASTER_ADDR/MASTER_PORT are not set" in r.err
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    r = bench_cli(*_bench_args("uniform", tmp_path / "x", "--shard", "0/2"))
    assert r.code == 2 and "drop --shard" in r.err and len(r.err.strip().splitlines()) == 1
    monkeypatch.setenv("RANK", "2")
    r = bench_cli(*_bench_args("uniform", tmp_path / "x"))
    assert r.code == 2 and "expected a rank in 0..1" in r.err
    assert not (tmp_path / "x").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_environment_picks_shards_and_main_merges(bench_cli, tmp_path: Path) -> None:
    whole, launched = tmp_path / "whole", tmp_path / "launched"
    assert bench_cli(*_bench_args("oracle_gaussian", whole)).code == 0
    port = str(_free_port())
    results = _together([(_bench_args("oracle_gaussian", launched),
                          _env(tmp_path, RANK=str(i), LOCAL_RANK=str(i), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                               MASTER_PORT=port)) for i in range(2)])
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    assert "macro" in results[0].stdout and f"results in {launched}" in results[0].stdout
    assert "shard 1/2: 5 sample(s) scored" in results[1].stdout and "the main process merges" in results[1].stdout
    _same_run(launched, whole)
    run = json.loads((launched / "run.json").read_text())
    assert [s["n_samples"] for s in run["shards"]] == [5, 5]


def test_shard_skips_carry_into_the_merge(bench_cli, tmp_path: Path) -> None:
    from test_bad_input import _rows, _tree

    root = _tree(tmp_path / "mimic", _rows((10, 10, 0, 20)))
    args = ["run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", str(root)]
    assert bench_cli(*args, "--out", tmp_path / "whole", "--skip-bad").code == 0
    sharded = tmp_path / "sharded"
    for i in range(3):
        assert bench_cli(*args, "--out", sharded, "--skip-bad", "--shard", f"{i}/3").code == 0
    # the bad sample was recorded by its shard: the merge needs no --skip-bad and checks nothing again
    r = bench_cli(*args, "--out", sharded)
    assert r.code == 0, r.err
    whole = json.loads((tmp_path / "whole" / "run.json").read_text())
    merged = json.loads((sharded / "run.json").read_text())
    assert len(whole["skipped"]) == 1 and merged["skipped"] == whole["skipped"]
    assert (sharded / "samples.csv").read_bytes() == (tmp_path / "whole" / "samples.csv").read_bytes()


def test_each_launched_process_takes_its_own_gpu(monkeypatch) -> None:
    from bench.running.shards import Launch, launch_from_env, process_device

    for name in LAUNCH_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")  # the second GPU of the second machine
    launch = launch_from_env()
    assert launch == Launch(rank=3, world_size=4, local_rank=1)
    assert process_device("cuda", launch) == "cuda:1"
    assert process_device("cuda:0", launch) == "cuda:0" and process_device("cpu", launch) == "cpu"
