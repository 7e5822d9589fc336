"""What the command line prints and writes: markup, help, version, progress in logs, Ctrl-C, file modes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_PHANTOM

EXE = [sys.executable, "-m", "bench.cli"]


def test_random_weights_marker_and_bracketed_text_survive_rendering(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("run", "--method", "uniform", "--dataset", "phantom", *SMALL_PHANTOM, "--random-weights",
                  "--out", tmp_path / "rw")
    assert r.code == 0, r.err
    assert r.out.splitlines()[0].rstrip() == "uniform on phantom (default protocol) [random weights]"
    assert "miou [95% CI]" in r.out


def test_print_table_shows_user_text_literally(capsys: pytest.CaptureFixture) -> None:
    from bench.reporting.report import print_table

    print_table("run [bold]x[/bold]", ["a [b]"], [["[red]cell[/red]"]])
    out = capsys.readouterr().out
    assert "run [bold]x[/bold]" in out and "a [b]" in out and "[red]cell[/red]" in out


def test_help_keeps_its_bracketed_defaults(bench_cli) -> None:
    r = bench_cli("run", "--help")
    assert r.code == 0 and "[default:" in r.out and "runs/DATASET__METHOD__PROTOCOL]" in r.out.replace("\n", " ").replace(" ", "")
    r = bench_cli("compare", "--help")
    assert "[default: all]" in " ".join(r.out.split())


def test_version(bench_cli) -> None:
    from bench import __version__

    r = bench_cli("--version")
    assert r.code == 0 and r.out.strip() == f"cxr-grounding-bench {__version__}"


def test_tables_fit_an_80_column_terminal(bench_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.reporting.report as report

    monkeypatch.setattr(report, "_terminal_width", lambda: 80)
    r = bench_cli("run", "--method", "uniform", "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "r")
    assert r.code == 0
    table = [ln for ln in r.out.splitlines() if ln.strip()]
    assert max(len(ln) for ln in table) <= 80
    # in a file or pipe the table keeps its natural width: no row is wrapped or cut
    monkeypatch.setattr(report, "_terminal_width", lambda: None)
    r = bench_cli("run", "--method", "uniform", "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "r")
    assert any("pleural effusion" in ln and "0.000 [0.000, 0.000]" in ln for ln in r.out.splitlines())


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "BENCH_QUIET"}
    return {**env, "BENCH_CACHE": str(tmp_path / "cache"), **extra}


def test_progress_lines_go_to_a_log_without_a_terminal(tmp_path: Path) -> None:
    """As under `nohup bench run ... > log 2>&1`: no terminal, progress as lines in the log."""
    log = tmp_path / "log"
    args = ["run", "--method", "uniform", "--dataset", "phantom", "-O", "n_test=20", "-O", "n_train=4",
            "--out", str(tmp_path / "r")]
    with open(log, "w") as fh:
        subprocess.run([*EXE, *args], env=_env(tmp_path), stdout=fh, stderr=subprocess.STDOUT, check=True)
    lines = log.read_text().splitlines()
    scoring = [ln for ln in lines if ln.startswith("scoring (default): ")]
    assert [ln.split(":")[1].split()[0] for ln in scoring] == [f"{2 * i}/20" for i in range(1, 11)]
    assert scoring[0].startswith("scoring (default): 2/20 (10%), ") and "s left" in scoring[0]
    assert any(ln.startswith("uniform: heatmaps: 20/20 (100%)") for ln in lines)
    # -q: nothing but the table; BENCH_QUIET=1 the same; -v a line per step
    quiet = subprocess.run([*EXE, "-q", *args], env=_env(tmp_path), capture_output=True, text=True, check=True)
    assert quiet.stderr == ""
    quiet = subprocess.run([*EXE, *args], env=_env(tmp_path, BENCH_QUIET="1"), capture_output=True, text=True,
                           check=True)
    assert quiet.stderr == ""
    loud = subprocess.run([*EXE, "-v", *args], env=_env(tmp_path), capture_output=True, text=True, check=True)
    assert sum(ln.startswith("scoring (default): ") for ln in loud.stderr.splitlines()) == 20


def test_ctrl_c_prints_the_resume_hint(tmp_path: Path) -> None:
    args = ["-v", "run", "--method", "oracle_gaussian", "--dataset", "phantom", "-O", "n_test=400", "-O", "n_train=4",
            "--batch-size", "1", "--out", str(tmp_path / "r")]
    proc = subprocess.Popen([*EXE, *args], env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the first progress line: the run is under way
    assert "heatmaps" in first, first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
    assert "Traceback" not in err


def test_files_honour_the_umask(tmp_path: Path) -> None:
    from bench.core import atomic

    old = os.umask(0o022)
    try:
        atomic.write_text(tmp_path / "a.txt", "x")
        os.umask(0o002)
        atomic.write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o664


def test_a_run_and_a_leaderboard_entry_are_readable_by_the_group(tmp_path: Path) -> None:
    run = tmp_path / "r"
    script = (f"import os, sys; os.umask(0o002); sys.argv = ['bench', 'run', '--method', 'uniform', '--dataset', "
              f"'phantom', '-O', 'n_test=8', '-O', 'n_train=4', '--out', {str(run)!r}]; "
              "from bench.cli import main; main()")
    subprocess.run([sys.executable, "-c", script], env=_env(tmp_path, BENCH_QUIET="1"), check=True,
                   capture_output=True)
    modes = {p.relative_to(run).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
    assert modes["run.json"] == modes["samples.csv"] == modes["summary.csv"] == 0o664
    assert {m for k, m in modes.items() if k.startswith("heatmaps/")} == {0o664}


def test_progress_lines_at_tenths_and_after_a_silence() -> None:
    import io

    from bench.running.progress import progress_lines

    out = io.StringIO()
    with progress_lines("work", 100, stream=out) as advance:
        for _ in range(100):
            advance(1)
    assert [ln.split(":")[1].split()[0] for ln in out.getvalue().splitlines()] == [f"{10 * i}/100" for i in range(1, 11)]
    out = io.StringIO()
    with progress_lines("work", 1000, stream=out, every_s=0.0) as advance:  # a long job: a line after each silence
        for _ in range(5):
            advance(1)
    assert out.getvalue().splitlines()[0].startswith("work: 1/1000 (0%), ") and len(out.getvalue().splitlines()) == 5
