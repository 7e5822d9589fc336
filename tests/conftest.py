"""Shared fixtures: offline mode, a quiet CLI, and an in-process `bench` invoker."""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BENCH_QUIET", "1")

SMALL_PHANTOM = ["-O", "n_test=16", "-O", "n_train=16"]
TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "bench-plugin-template"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def bench_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., CliResult]:
    """Run `bench ARGS...` in-process through the real entry point; returns exit code and output."""
    from bench.cli import main

    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["bench", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The template plugin on the path, with its entry points as pip would install them (a dist-info
    folder written from the template's own pyproject.toml). Returns the PYTHONPATH it needs."""
    from bench.core.registry import refresh_plugins

    project = tomllib.loads((TEMPLATE / "pyproject.toml").read_text())["project"]
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in entries.items()]
    info = tmp_path / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    paths = [str(tmp_path / "site"), str(TEMPLATE)]
    for p in reversed(paths):
        monkeypatch.syspath_prepend(p)
    refresh_plugins()
    yield os.pathsep.join(paths)
    refresh_plugins()
    for name in [m for m in sys.modules if m.startswith("my_grounding_method")]:
        del sys.modules[name]
