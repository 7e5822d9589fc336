"""Small finished phantom runs the viewer tests read (made once per test module)."""

from __future__ import annotations

from pathlib import Path

import pytest


def make_run(root: Path, method: str, n_test: int = 16) -> Path:
    """A finished run of `method` on a small phantom (n_test test samples) in `root`."""
    from bench.running.runner import RunRequest, run

    run(RunRequest(method=method, dataset="phantom", dataset_options={"n_test": str(n_test), "n_train": "16"},
                   out=root))
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """(oracle_gaussian run, uniform run, box_prior run on another sample list, the cache folder)."""
    base = tmp_path_factory.mktemp("viewer")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE", str(base / "cache"))
        yield (make_run(base / "oracle", "oracle_gaussian"), make_run(base / "uniform", "uniform"),
               make_run(base / "other", "box_prior", n_test=8), base / "cache")
