"""Shared fixtures: offline mode, a quiet CLI, and an in-process `bench` invoker."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("BENCH_QUIET", "1")

SMALL_PHANTOM = ["-O", "n_test=16", "-O", "n_train=16"]


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
