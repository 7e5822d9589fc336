"""Packaging: the Python the code needs, dependencies that are used, and the light core without PyTorch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: distribution -> import name, where they differ
IMPORT_NAME = {"scikit-learn": "sklearn", "scikit-image": "skimage", "pillow": "PIL", "hi-ml-multimodal": "health_multimodal",
               "markdown-it-py": "markdown_it"}


def _dist(requirement: str) -> str:
    return re.split(r"[<>=\[;! ]", requirement, maxsplit=1)[0].lower()


def _imported() -> set[str]:
    names = set()
    for path in (ROOT / "bench").rglob("*.py"):
        names |= set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", path.read_text(), flags=re.M))
    return names


def test_requires_the_python_the_code_needs() -> None:
    low = tuple(int(x) for x in re.match(r">=(\d+)\.(\d+)", PROJECT["requires-python"]).groups())
    if "tomllib" in _imported():  # new in 3.11
        assert low >= (3, 11)
    # CI tests that lowest version
    assert f"v == {low}" in (ROOT / ".ci" / "run").read_text()


def test_every_declared_dependency_is_imported() -> None:
    imported = _imported()
    declared = PROJECT["dependencies"] + PROJECT["optional-dependencies"]["models"]
    unused = [d for d in map(_dist, declared) if IMPORT_NAME.get(d, d.replace("-", "_")) not in imported]
    assert unused == []


def test_the_core_holds_no_model_package() -> None:
    from bench.core.optional import MODEL_PACKAGES

    core = {IMPORT_NAME.get(_dist(d), _dist(d)) for d in PROJECT["dependencies"]}
    models = {IMPORT_NAME.get(_dist(d), _dist(d)) for d in PROJECT["optional-dependencies"]["models"]}
    assert core.isdisjoint(MODEL_PACKAGES) and models == MODEL_PACKAGES
    assert "cxr-grounding-bench[models]" in PROJECT["optional-dependencies"]["test"]


BLOCKED = """
import importlib.abc, sys
from bench.core.optional import MODEL_PACKAGES
class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in MODEL_PACKAGES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
for name in [m for m in sys.modules if m.split(".")[0] in MODEL_PACKAGES]:
    del sys.modules[name]
sys.meta_path.insert(0, Blocked())
sys.argv = ["bench", *sys.argv[1:]]
from bench.cli import main
main()
"""


def _light(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """`bench ARGS` in a Python that cannot import any package of the models extra."""
    env = {"HF_HUB_OFFLINE": "1", "BENCH_QUIET": "1", "BENCH_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", BLOCKED, *map(str, args)], env=env, capture_output=True, text=True,
                          check=False, cwd=ROOT)


def test_scoring_runs_on_the_light_core(tmp_path: Path) -> None:
    small = ["--dataset", "phantom", "-O", "n_test=8", "-O", "n_train=8"]
    r = _light(tmp_path, "run", "--method", "box_prior", *small, "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    r = _light(tmp_path, "score", "--heatmaps", tmp_path / "a", *small, "--protocol", "vilouras2025",
               "--out", tmp_path / "b")
    assert r.returncode == 0, r.stderr
    r = _light(tmp_path, "leaderboard", "--add", tmp_path / "a", "--results", tmp_path / "results", "--reported",
               tmp_path / "none", "--out", tmp_path / "boards")
    assert r.returncode == 0 and len(list((tmp_path / "boards").glob("phantom*__default/miou.png"))) == 1, r.stderr
    assert json.loads((tmp_path / "b" / "run.json").read_text())["status"] == "complete"
    r = _light(tmp_path, "view", tmp_path / "a", "--out", tmp_path / "view")
    assert r.returncode == 0 and len(list((tmp_path / "view" / "img" / "0").glob("*.jpg"))) == 8, r.stderr
    r = _light(tmp_path, "leaderboard", "--results", tmp_path / "results", "--reported", tmp_path / "none",
               "--out", tmp_path / "boards", "--html", tmp_path / "site")
    assert r.returncode == 0 and len(list((tmp_path / "site").glob("phantom*__default.html"))) == 1, r.stderr
    # a model method says what to install, in one line
    r = _light(tmp_path, "run", "--method", "biovil", *small, "--out", tmp_path / "m")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: backend 'biovil' needs torch, which the light install leaves out; install the models extra: "
        "pip install 'cxr-grounding-bench[models]'"]
    # a paper protocol's box resize comes from the interpolation weights: it scores on the light core too
    r = _light(tmp_path, "score", "--heatmaps", tmp_path / "a", *small, "--protocol", "nutzel2025", "--skip-bad",
               "--out", tmp_path / "n")  # its sample set holds the train split, which has no maps
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "n" / "run.json").read_text())["n_samples"] == 8
