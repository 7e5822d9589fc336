"""A run folder's promises: one process at a time, resume and reruns give the same bytes, --limit is identity.

Processes are killed for real (SIGKILL, SIGINT) through a small launcher that runs the `bench`
entry point with one hook: hold the model's loading until a file appears, or die at a chosen
moment (after N heatmaps, at the N-th score, in the middle of writing a table).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

PHANTOM = ["--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=8"]

LAUNCHER = r'''
import os, signal, sys, time, types
from pathlib import Path

hook, _, arg = os.environ.get("BENCH_TEST_HOOK", "").partition(":")


def die():
    os.kill(os.getpid(), signal.SIGKILL)


if hook == "hold":  # the method's prepare waits for the file `arg` (a model still loading)
    from bench.running import runner
    real = runner.method_backend

    def method_backend(spec, source):
        cls = real(spec, source)

        class Held(cls):
            def prepare(self, dataset):
                Path(arg + ".started").write_text(str(os.getpid()))
                while not Path(arg).exists():
                    time.sleep(0.05)
                return super().prepare(dataset)
        return Held
    runner.method_backend = method_backend
elif hook == "maps":  # killed once `arg` heatmaps are written
    from bench.core.heatmap import Heatmap
    real_save, count = Heatmap.save, [0]

    def save(self, path):
        real_save(self, path)
        count[0] += 1
        if count[0] == int(arg):
            die()
    Heatmap.save = save
elif hook == "score":  # killed at the `arg`-th sample scored
    from bench.running import runner
    real_score, count = runner.score_with_boxes, [0]

    def score_with_boxes(*a, **k):
        count[0] += 1
        if count[0] == int(arg):
            die()
        return real_score(*a, **k)
    runner.score_with_boxes = score_with_boxes
elif hook == "replace":  # killed between writing the temporary of file `arg` and renaming it
    from bench.core import atomic
    proxy = types.ModuleType("os")
    proxy.__dict__.update(os.__dict__)

    def replace(src, dst):
        if Path(dst).name == arg:
            die()
        return os.replace(src, dst)
    proxy.replace = replace
    atomic.os = proxy

from bench.cli import main
main()
'''


def _launcher(tmp_path: Path) -> Path:
    path = tmp_path / "launch_bench.py"
    path.write_text(LAUNCHER)
    return path


def _env(tmp_path: Path, hook: str = "") -> dict[str, str]:
    return {**os.environ, "BENCH_TEST_HOOK": hook, "BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
            "BENCH_QUIET": "1"}


def _start(tmp_path: Path, args: list, hook: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(_launcher(tmp_path)), *map(str, args)], env=_env(tmp_path, hook),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _bench(tmp_path: Path, args: list, hook: str = "") -> subprocess.CompletedProcess:
    """`bench ARGS` in a fresh process, to its end."""
    return subprocess.run([sys.executable, str(_launcher(tmp_path)), *map(str, args)], env=_env(tmp_path, hook),
                          capture_output=True, text=True, timeout=600, check=False)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read()}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def _files(root: Path) -> dict[str, bytes]:
    """Every result file of a run folder by relative path (the lock's own files left out)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.startswith(".lock")}


def _same_results(a: Path, b: Path) -> None:
    """Byte-identical folders, but for run.json's run-specific fields (listed in the README)."""
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    for name in fa:
        if name != "run.json":
            assert fa[name] == fb[name], name
    ra, rb = json.loads(fa["run.json"]), json.loads(fb["run.json"])
    assert ra.pop("timings").keys() == rb.pop("timings").keys()
    assert ra.pop("date") and rb.pop("date")
    ca, cb = ra.pop("command"), rb.pop("command")  # the same but for the --out each run was given
    assert [c for c in ca if c != str(a)] == [c for c in cb if c != str(b)]
    for record in (ra, rb):
        record["provenance"].pop("sample_evals_per_sample", None)
    assert ra == rb


# ---- one process per run folder -----------------------------------------------------------------------

def test_second_run_refused_while_the_first_loads(bench_cli, tmp_path: Path, monkeypatch) -> None:
    """The second process starts before the first has written run.json: it must still be refused."""
    from bench.running import lock

    monkeypatch.setattr(lock, "WAIT_S", 0.2)
    out, flag = tmp_path / "D", tmp_path / "go"
    first = _start(tmp_path, ["run", "-m", "oracle_gaussian", *PHANTOM, "--out", out], hook=f"hold:{flag}")
    try:
        _wait_for(Path(f"{flag}.started"), first)
        assert not (out / "run.json").exists()
        r = bench_cli("run", "-m", "uniform", *PHANTOM, "--out", out)
        assert r.code == 2 and len(r.err.strip().splitlines()) == 1, r.err
        assert f"--out {out} is in use by bench process {first.pid} on " in r.err
        assert "run -m oracle_gaussian" in r.err
    finally:
        flag.write_text("")
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    record = json.loads((out / "run.json").read_text())
    assert record["method"] == "oracle_gaussian" and record["status"] == "complete"
    assert pd.read_csv(out / "samples.csv")["miou"].mean() > 0.5  # oracle maps, not uniform's (miou 0)
    assert not (out / ".lock.owner").exists()


def test_sigint_prints_one_line_and_exits_130(tmp_path: Path) -> None:
    out, flag = tmp_path / "D", tmp_path / "go"
    proc = _start(tmp_path, ["run", "-m", "uniform", *PHANTOM, "--out", out], hook=f"hold:{flag}")
    _wait_for(Path(f"{flag}.started"), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines() == ["interrupted; run the same command again to resume"]


# ---- resume, reruns, --limit ------------------------------------------------------------------------

def _batch_dependent(monkeypatch) -> None:
    """Make oracle_gaussian's maps depend on the batch they are computed in, as a model's float sums do."""
    import numpy as np

    from bench.running import runner

    real = runner.method_backend

    def method_backend(spec, source):
        cls = real(spec, source)

        class ByBatch(cls):
            def heatmaps(self, batch, dataset):
                maps = super().heatmaps(batch, dataset)
                for m in maps:
                    ramp = np.linspace(0, 1, m.values.size).reshape(m.values.shape)
                    m.values = m.values + 1e-3 * len(batch) * ramp
                return maps
        return ByBatch

    monkeypatch.setattr(runner, "method_backend", method_backend)


@pytest.mark.parametrize("stop_after", [1, 4])
def test_resume_is_byte_identical(bench_cli, tmp_path: Path, monkeypatch, stop_after: int) -> None:
    from bench.core.heatmap import Heatmap

    _batch_dependent(monkeypatch)
    args = ["run", "-m", "oracle_gaussian", *PHANTOM, "--batch-size", "3"]
    assert bench_cli(*args, "--out", tmp_path / "whole").code == 0
    real_save, count = Heatmap.save, [0]

    def save(self, path):
        real_save(self, path)
        count[0] += 1
        if count[0] == stop_after:
            raise KeyboardInterrupt

    monkeypatch.setattr(Heatmap, "save", save)
    r = bench_cli(*args, "--out", tmp_path / "resumed")
    assert r.code == 130 and len(list((tmp_path / "resumed" / "heatmaps").glob("*.npz"))) == stop_after
    monkeypatch.setattr(Heatmap, "save", real_save)
    assert bench_cli(*args, "--out", tmp_path / "resumed").code == 0
    _same_results(tmp_path / "whole", tmp_path / "resumed")


def test_two_runs_of_one_command_are_byte_identical(bench_cli, tmp_path: Path) -> None:
    for method in ("oracle_gaussian", "box_prior"):
        for name in ("a", "b"):
            assert bench_cli("run", "-m", method, *PHANTOM, "--out", tmp_path / method / name).code == 0
        _same_results(tmp_path / method / "a", tmp_path / method / "b")


def test_limit_is_part_of_a_runs_identity(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "full"
    assert bench_cli("run", "-m", "uniform", *PHANTOM, "--out", out).code == 0
    before = _files(out)
    r = bench_cli("run", "-m", "uniform", *PHANTOM, "--limit", "3", "--out", out)
    assert r.code == 2 and "holds a run with no --limit, this one has --limit 3" in r.err, r.err
    assert _files(out) == before
    small = tmp_path / "small"
    assert bench_cli("run", "-m", "uniform", *PHANTOM, "--limit", "3", "--out", small).code == 0
    record = json.loads((small / "run.json").read_text())
    assert record["limit"] == 3 and record["sample_ids"] == list(pd.read_csv(small / "samples.csv")["sample_id"])
    r = bench_cli("run", "-m", "uniform", *PHANTOM, "--out", small)
    assert r.code == 2 and "holds a run with --limit 3, this one has no --limit" in r.err, r.err
    assert len(pd.read_csv(small / "samples.csv")) == 3


def test_rescored_limit_run_keeps_its_limit(bench_cli, tmp_path: Path) -> None:
    run = tmp_path / "small"
    assert bench_cli("run", "-m", "oracle_gaussian", *PHANTOM, "--limit", "3", "--out", run).code == 0
    r = bench_cli("score", "--heatmaps", run, *PHANTOM, "--out", tmp_path / "rescored")
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "rescored" / "run.json").read_text())
    assert record["limit"] == 3 and record["sample_ids"] == json.loads((run / "run.json").read_text())["sample_ids"]
    assert len(pd.read_csv(tmp_path / "rescored" / "samples.csv")) == 3
    r = bench_cli("leaderboard", "--add", tmp_path / "rescored", "--results", tmp_path / "results",
                  "--out", tmp_path / "lb", "--reported", tmp_path / "none")
    assert r.code == 2 and "--limit" in r.err, r.err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("run.json"))


# ---- real processes killed and rerun --------------------------------------------------------------

LDM = ["run", "-m", "phantom_ldm", "--dataset", "phantom", "-O", "n_test=6", "-O", "n_train=0", "--batch-size", "4",
       "--set", "num_inference_steps=2"]


@pytest.mark.slow
def test_sigkill_at_several_points_then_rerun(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    done = _bench(tmp_path, [*LDM, "--out", whole])
    assert done.returncode == 0, done.stderr
    for hook in ("maps:2", "maps:5", "score:3", "replace:samples.csv", "replace:summary.csv"):
        out = tmp_path / hook.replace(":", "_")
        killed = _bench(tmp_path, [*LDM, "--out", out], hook)
        assert killed.returncode == -signal.SIGKILL, (hook, killed.stderr)
        assert not (out / "summary.csv").exists()
        rerun = _bench(tmp_path, [*LDM, "--out", out])
        assert rerun.returncode == 0, (hook, rerun.stderr)
        _same_results(whole, out)
        assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_two_processes_on_one_out(tmp_path: Path) -> None:
    """One command started twice at once: a process refuses naming the other, or finds the run done."""
    alone = tmp_path / "alone"
    assert _bench(tmp_path, [*LDM, "--out", alone]).returncode == 0
    out = tmp_path / "shared"
    procs = [_start(tmp_path, [*LDM, "--out", out]) for _ in range(2)]
    results = [(p, *p.communicate(timeout=600)) for p in procs]
    assert 0 in [p.returncode for p, _, _ in results], [e for _, _, e in results]
    for p, _, err in results:
        if p.returncode != 0:
            other = next(q for q, _, _ in results if q is not p)
            assert p.returncode == 2 and err.strip().count("\n") == 0, err
            assert f"is in use by bench process {other.pid}" in err
    _same_results(alone, out)


def test_a_folder_holding_only_the_lock_counts_as_empty_while_its_owner_record_is_written(tmp_path: Path) -> None:
    """Another process may be between writing and renaming the lock's owner record."""
    from bench.running.lock import is_empty
    from bench.running.rundir import RunDir

    (tmp_path / ".lock").write_text("")
    (tmp_path / "..lock.owner.k2j4x.tmp").write_text("{}")  # atomic.write_text's temporary of .lock.owner
    assert is_empty(tmp_path)
    (tmp_path / "shards").mkdir()
    assert RunDir(tmp_path).holds_only_shards()
    (tmp_path / ".samples.csv.a1.tmp").write_text("")
    assert not is_empty(tmp_path) and not RunDir(tmp_path).holds_only_shards()


def test_the_owner_records_temporary_is_a_lock_file(tmp_path: Path, monkeypatch) -> None:
    """While a process writes `.lock.owner` atomically, its temporary lies in the run folder: another
    process looking at the folder then must not take it for run contents (a launch's shards raced on it)."""
    from bench.core import atomic
    from bench.running.lock import OWNER_NAME, is_empty, is_lock_file

    seen: list[str] = []
    real_replace = atomic.os.replace

    def replace(src, dst):
        seen.append(Path(src).name)
        assert is_empty(tmp_path)  # the folder holds the temporary only, and counts as empty
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    atomic.write_text(tmp_path / OWNER_NAME, "{}\n")
    assert len(seen) == 1 and seen[0] != OWNER_NAME and is_lock_file(seen[0])
    assert not is_lock_file(f".samples.csv.{seen[0].split('.')[-2]}.tmp")
