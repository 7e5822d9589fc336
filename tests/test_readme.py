"""Every code block of README.md runs: the blocks are read from README.md when the tests run.

How each kind of block is run, and what to declare here when README.md gains one:

- ```python blocks run in README order in one namespace (as a reader pastes them into one
  notebook), in a fresh folder, with the names a reader supplies themselves preset from
  `python_stand_ins` (their model, their data loader, a sample's size and maps, two finished runs
  `runs/a` and `runs/b`). A new block that uses a name of the reader's adds it there.
- ```bash blocks: each command (continuation lines joined) runs with `bash` in a fresh folder per
  block, in README order, with this environment's `bench` and `python` first on PATH (as after
  `source .venv/bin/activate`), `.venv` linked to this environment, HOME a fresh folder holding
  `HOME_FILES`, the template plugin of `examples/` installed (entry points), and one shared
  BENCH_CACHE. They run for real and small: a command on the `phantom` dataset that sets no
  `n_test` gets `PHANTOM_SMALL`. A command that cannot run here (credentialed data, a download,
  several GPUs) is listed in `SKIPPED`, by how it starts, with the reason; every entry must still
  start a README command, so the list cannot go stale.
- ```text blocks show what a command prints: `TEXT_OUTPUTS` maps the block's first line to the
  command that prints it (and the files it needs in HOME).
- ```toml blocks must parse. A block of any other language fails until this file says how to run it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.executable).parent.parent  # the environment running the tests: its bin/ holds bench and python
ORACLE = (ROOT / "adapters" / "oracle_gaussian.toml").read_text()
DEFAULT = (ROOT / "protocols" / "default.toml").read_text()

#: what is added to a command on the phantom dataset that sets no n_test: a small, real run
PHANTOM_SMALL = "-O n_test=16 -O n_train=16"

#: commands that cannot run here, by how they start, and why
SKIPPED = {
    "python3 -m venv": "creates an environment and installs packages from the package index",
    ".venv/bin/pytest": "the test suite, which runs this test",
    "bench tune lut --gold": "Chest ImaGenome's gold box file is credentialed (PhysioNet)",
    "bench tune anatomy --spec my_tune.toml --weights MONAI_BUNDLE_DIR": "the MONAI model-zoo bundle is a download",
    "bench run --method anatomy_ldm --dataset ms-cxr-loc": "MS-CXR is credentialed, the MONAI bundle a download",
    "bench run -m ldm_frozen -d ms-cxr": "MS-CXR is credentialed, the MONAI bundle and the SD 2.1 text encoder downloads",
    "bench run -m cxrbert_ldm -d ms-cxr": "MS-CXR is credentialed, the checkpoints a download; cuda",
    "accelerate launch": "several GPUs, MS-CXR (credentialed) and the checkpoints (a download)",
    "torchrun": "several GPUs, MS-CXR (credentialed) and the checkpoints (a download)",
}

#: files the README's commands find in the reader's HOME
HOME_FILES = {
    "specs/oracle_wide.toml": ORACLE.replace('name = "oracle_gaussian"', 'name = "oracle_wide"')
                                    .replace("sigma_fraction = 0.3333333333333333", "sigma_fraction = 0.5"),
    "specs/strict.toml": DEFAULT.replace('name = "default"', 'name = "strict"'),
}

#: first line of a ```text block -> (the command that prints it, files in HOME it needs)
TEXT_OUTPUTS = {
    "error: /home/me/specs/oracle_wide.toml: unknown field 'params.sigma_fracton'": (
        "bench run --method ~/specs/oracle_wide.toml --dataset phantom",
        {"specs/oracle_wide.toml": HOME_FILES["specs/oracle_wide.toml"].replace("sigma_fraction =", "sigma_fracton =")}),
}


def blocks(lang: str | None = None) -> list[tuple[int, str, str]]:
    """(line number, language, text) of every fenced block of README.md (of `lang` only, if given)."""
    found, current, start, body = [], None, 0, []
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if current is None:
                current, start, body = line[3:].strip(), number, []
            else:
                found.append((start, current, "\n".join(body) + "\n"))
                current = None
        elif current is not None:
            body.append(line)
    assert current is None, f"README.md: the block opened on line {start} is never closed"
    return [b for b in found if lang is None or b[1] == lang]


def commands(text: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def skipped(command: str) -> str | None:
    return next((why for start, why in SKIPPED.items() if command.startswith(start)), None)


def small(command: str) -> str:
    """The command with PHANTOM_SMALL added when it runs on the phantom dataset without setting n_test."""
    words = shlex.split(command, comments=True)
    for i, word in enumerate(words[:-1]):
        if word in ("-d", "--dataset") and words[i + 1] == "phantom" and "n_test=" not in command:
            return command.replace(f"{word} phantom", f"{word} phantom {PHANTOM_SMALL}", 1)
    return command


def test_every_block_has_a_known_language() -> None:
    langs = {lang for _, lang, _ in blocks()}
    assert langs <= {"bash", "python", "text", "toml"}, f"README.md has blocks this test cannot run: {langs}"
    for _, _, text in blocks("toml"):
        tomllib.loads(text)


def test_the_skip_list_is_short_and_every_entry_is_a_readme_command() -> None:
    every = [c for _, _, text in blocks("bash") for c in commands(text)]
    assert len(SKIPPED) <= 10
    for start in SKIPPED:
        assert any(c.startswith(start) for c in every), f"SKIPPED entry {start!r} starts no README command"
    assert sum(skipped(c) is None for c in every) >= 10  # most commands run


def _home(tmp_path: Path, files: dict[str, str]) -> Path:
    home = tmp_path / "home"
    for name, text in files.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    return home


def _env(home: Path, cache: Path, plugin: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}", "HOME": str(home),
            "BENCH_CACHE": str(cache), "PYTHONPATH": plugin, "BENCH_QUIET": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("readme-cache")


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(VENV)
    return work


@pytest.mark.parametrize("line", [b[0] for b in blocks("bash")], ids=lambda n: f"README.md:{n}")
def test_bash_block_runs(line: int, tmp_path: Path, cache: Path, plugin: str) -> None:
    text = next(t for n, _, t in blocks("bash") if n == line)
    work = _workdir(tmp_path)
    env = _env(_home(tmp_path, HOME_FILES), cache, plugin)
    ran = 0
    for command in commands(text):
        if skipped(command):
            continue
        done = subprocess.run(["bash", "-ec", small(command)], check=False, cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"README.md:{line}: `{small(command)}` failed:\n{done.stderr[-2000:]}"
        ran += 1
    if not ran:
        pytest.skip(f"README.md:{line}: " + "; ".join(sorted({skipped(c) for c in commands(text)})))


@pytest.mark.parametrize("line", [b[0] for b in blocks("text")], ids=lambda n: f"README.md:{n}")
def test_text_block_is_what_its_command_prints(line: int, tmp_path: Path, cache: Path, plugin: str) -> None:
    text = next(t for n, _, t in blocks("text") if n == line)
    first = text.splitlines()[0]
    key = next((k for k in TEXT_OUTPUTS if first.startswith(k)), None)
    assert key is not None, f"README.md:{line}: declare the command printing {first!r} in TEXT_OUTPUTS"
    command, files = TEXT_OUTPUTS[key]
    home = _home(tmp_path, files)
    done = subprocess.run(["bash", "-c", small(command)], check=False, cwd=_workdir(tmp_path), env=_env(home, cache, plugin),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0 or not first.startswith("error:")
    shown = (done.stdout + done.stderr).replace(str(home), "/home/me")
    assert text.strip() in shown


def python_stand_ins(work: Path, cache: Path) -> dict:
    """The names the README's Python blocks leave to the reader, and two finished runs in `work/runs`."""
    import numpy as np

    import bench

    env = _env(work, cache, "")
    for name, method in (("a", "oracle_gaussian"), ("b", "uniform")):
        subprocess.run(["bench", "run", "-m", method, "-d", "phantom", *PHANTOM_SMALL.split(), "--out",
                        f"runs/{name}"], cwd=work, env=env, check=True, capture_output=True, timeout=600)
    samples = bench.protocol_samples("phantom", options={"n_test": 16, "n_train": 16})
    one = samples[0]

    def loader():
        for start in (0, 4):
            batch = samples[start:start + 4]
            yield [np.zeros((s.height, s.width), np.float32) for s in batch], batch

    def model(images):
        return np.stack([np.random.default_rng(i).random((8, 8)).astype(np.float32) for i in range(len(images))])

    return {"sample_id": one.sample_id, "height": one.height, "width": one.width,
            "values16": np.random.default_rng(0).random((16, 16)), "values64": np.random.default_rng(1).random((64, 64)),
            "loader": loader(), "model": model}


def test_python_blocks_run_in_order(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = _workdir(tmp_path)
    monkeypatch.chdir(work)
    monkeypatch.setenv("BENCH_CACHE", str(cache))
    namespace = python_stand_ins(work, cache)
    for line, _, text in blocks("python"):
        try:
            exec(compile(text, f"README.md:{line}", "exec"), namespace)  # the README's own code
        except Exception as exc:  # any error: name the block that raised it
            pytest.fail(f"README.md:{line}: {type(exc).__name__}: {exc}")
    assert len(list((work / "my_maps").glob("*.npz"))) == 1  # both maps of one sample id: the second replaced the first
    assert len(namespace["scores"].samples) == len(namespace["samples"]) == 200
    assert "\\toprule" in namespace["cmp"].table("latex") and len(namespace["result"].samples) == 8
