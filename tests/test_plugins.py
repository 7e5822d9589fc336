"""Methods, datasets and specs from outside the package: spec files by path, the spec search
path, and the template plugin of `examples/` registered through entry points, end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_PHANTOM

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "examples" / "bench-plugin-template"
ORACLE = (ROOT / "adapters" / "oracle_gaussian.toml").read_text()
DEFAULT = (ROOT / "protocols" / "default.toml").read_text()


def _spec(folder: Path, text: str, old: str, new: str, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def _my_oracle(folder: Path) -> Path:
    return _spec(folder, ORACLE, 'name = "oracle_gaussian"', 'name = "my_oracle"', "my_oracle")


def _strict(folder: Path) -> Path:
    return _spec(folder, DEFAULT, 'name = "default"', 'name = "strict"', "strict")


def test_a_spec_file_by_path_runs_and_is_recorded(bench_cli, tmp_path: Path) -> None:
    method = _my_oracle(tmp_path / "mine")
    protocol = _strict(tmp_path / "mine")
    r = bench_cli("run", "--method", method, "--protocol", protocol, "--dataset", "phantom", *SMALL_PHANTOM,
                  "--out", tmp_path / "run")
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["method"] == "my_oracle" and record["protocol"]["name"] == "strict"
    assert record["spec_files"] == {
        "method": {"path": str(method), "sha256": hashlib.sha256(method.read_bytes()).hexdigest()},
        "protocol": {"path": str(protocol), "sha256": hashlib.sha256(protocol.read_bytes()).hexdigest()}}
    # the same settings under another name give the shipped method's numbers
    assert bench_cli("run", "--method", "oracle_gaussian", "--dataset", "phantom", *SMALL_PHANTOM,
                     "--out", tmp_path / "shipped").code == 0
    mine = pd.read_csv(tmp_path / "run" / "samples.csv")
    shipped = pd.read_csv(tmp_path / "shipped" / "samples.csv")
    assert mine["miou"].tolist() == shipped["miou"].tolist()
    assert json.loads((tmp_path / "shipped" / "run.json").read_text())["spec_files"]["method"]["path"] == \
        "adapters/oracle_gaussian.toml"


@pytest.mark.parametrize("text, old, new, words", [
    (ORACLE, 'kind = "baseline"', 'knd = "baseline"',
     "unknown field 'knd' (known: backend, citation, description, kind, name, output, params, weights)"),
    (ORACLE, "sigma_fraction =", "sigma_fracton =", "unknown field 'params.sigma_fracton' (known: grid, sigma_fraction)"),
    (ORACLE, 'name = "oracle_gaussian"', 'name = "other"', "name 'other' does not match the file name"),
])
def test_a_typo_in_a_method_spec_is_one_line_naming_file_and_field(bench_cli, tmp_path: Path, text: str, old: str,
                                                                   new: str, words: str) -> None:
    path = _spec(tmp_path / "specs", text.replace('name = "oracle_gaussian"', 'name = "my_oracle"')
                 if "other" not in new else text, old, new, "my_oracle")
    r = bench_cli("run", "--method", path, "--dataset", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "run")
    assert r.code == 2 and r.err.count("\n") == 1 and "Traceback" not in r.err
    assert r.err.startswith(f"error: {path}: ") and words in r.err, r.err
    assert not (tmp_path / "run").exists()


def test_a_typo_in_a_protocol_file_names_the_file_the_field_and_the_known_ones(bench_cli, tmp_path: Path) -> None:
    path = _spec(tmp_path, _strict(tmp_path / "a").read_text(), "[grid]", "[grids]", "strict")
    r = bench_cli("run", "--method", "uniform", "--protocol", path, "--dataset", "phantom", *SMALL_PHANTOM,
                  "--out", tmp_path / "run")
    assert r.code == 2 and r.err.count("\n") == 1
    assert f"{path}: unknown field 'grids' (known: description, grid, metrics, name, notes, " in r.err
    path.write_text(path.read_text().replace("[grids]", "[grid]").replace("interpolation", "interpolaton"))
    r = bench_cli("score", "--heatmaps", tmp_path, "--protocol", path, "--dataset", "phantom", "--out", tmp_path / "s")
    assert r.code == 2 and "unknown field grid.interpolaton (known: eval_grid, crop_size" in r.err
    r = bench_cli("run", "--method", tmp_path / "none.toml", "--dataset", "phantom", "--out", tmp_path / "run")
    assert r.code == 2 and f"method spec {tmp_path / 'none.toml'}: no such file" in r.err


def test_the_search_path_option_and_variable(bench_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _my_oracle(one / "adapters")
    _strict(two / "protocols")
    r = bench_cli("list", "methods")
    assert "my_oracle" not in r.out
    r = bench_cli("run", "-m", "my_oracle", "-p", "strict", "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "r",
                  "--spec-path", one, "--spec-path", two)
    assert r.code == 0, r.err
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["spec_files"]["protocol"]["path"] == str(two / "protocols" / "strict.toml")
    monkeypatch.setenv("BENCH_SPEC_PATH", os.pathsep.join([str(one), str(two)]))
    assert "my_oracle" in bench_cli("list", "methods").out and "strict" in bench_cli("list", "protocols").out
    assert bench_cli("run", "-m", "my_oracle", "-p", "strict", "-d", "phantom", *SMALL_PHANTOM,
                     "--out", tmp_path / "r").code == 0  # the same run: resumed, nothing recomputed
    # a name defined twice is refused rather than one file silently winning
    _spec(two / "adapters", ORACLE, "", "", "uniform")
    r = bench_cli("run", "-m", "uniform", "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "u")
    assert r.code == 2 and "method 'uniform' is defined more than once: adapters/uniform.toml, " in r.err
    r = bench_cli("list", "methods", "--spec-path", tmp_path / "missing")
    assert r.code == 2 and "--spec-path" in r.err and "not a folder" in r.err


def test_the_template_plugin_runs_compares_and_enters_a_leaderboard(bench_cli, plugin, tmp_path: Path) -> None:
    r = bench_cli("list", "methods")
    assert r.code == 0 and "my_method" in r.out
    assert "tiny-phantom" in bench_cli("list", "datasets").out
    mine, flat = tmp_path / "mine", tmp_path / "uniform"
    r = bench_cli("run", "--method", "my_method", "--dataset", "tiny-phantom", "--out", mine)
    assert r.code == 0, r.err
    assert bench_cli("run", "--method", "uniform", "--dataset", "tiny-phantom", "--out", flat).code == 0
    record = json.loads((mine / "run.json").read_text())
    spec = TEMPLATE / "my_grounding_method" / "adapters" / "my_method.toml"
    assert record["config"]["method"]["backend"] == "my_intensity"
    assert Path(record["spec_files"]["method"]["path"]) == spec
    assert record["provenance"] == {"model": "none (image intensity)", "grid": 32, "sigma": 1.0}
    samples = pd.read_csv(mine / "samples.csv")
    assert len(samples) == 12
    # the stored map is the plugin's own output, and the run's score is that map's score
    from my_grounding_method.method import IntensityMap

    import bench

    ds = bench.load_dataset("tiny-phantom")
    first = [s for s in bench.protocol_samples(ds) if s.sample_id == samples["sample_id"][0]]
    method = IntensityMap(tomllib.loads(spec.read_text()), bench.RunContext())
    method.prepare(ds)
    own = method.heatmaps(first, ds)[0]
    stored = bench.Heatmap.load(mine / "heatmaps" / f"{first[0].sample_id}.npz")
    assert np.array_equal(own.values, stored.values)
    assert float(f"{bench.score_maps([own], first).samples['miou'][0]:.10g}") == samples["miou"][0]  # as CSV writes

    r = bench_cli("compare", "--protocols", "default,vilouras2025", mine, flat)
    assert r.code == 0, r.err
    assert "my_method" in r.out and "vilouras2025" in r.out and "rank under each protocol" in r.out
    r = bench_cli("compare", mine, flat, "--format", "markdown")
    assert r.code == 0 and r.out.startswith("| run | miou | cnr | auc_roc | pointing_game |\n")

    results, boards = tmp_path / "results", tmp_path / "boards"
    for run in (mine, flat):
        r = bench_cli("leaderboard", "--add", run, "--results", results, "--out", boards, "--reported", tmp_path / "no")
        assert r.code == 0, r.err
    page = (boards / "tiny-phantom__default.md").read_text()
    assert "my_method" in page and "uniform" in page
    table = (boards / "tiny-phantom__default" / "table.md").read_text()
    assert table.splitlines()[2].startswith("| my_method | **")  # above the constant map, best in bold
    r = bench_cli("leaderboard", "--check", "--results", results, "--out", boards, "--reported", tmp_path / "no")
    assert r.code == 0, r.err


def test_a_fresh_process_finds_the_plugin_through_its_entry_points(plugin, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": plugin, "BENCH_CACHE": str(tmp_path / "cache")}
    bench = Path(sys.executable).with_name("bench")
    out = subprocess.run([str(bench), "list", "methods"], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0 and "my_method" in out.stdout
    out = subprocess.run([str(bench), "run", "-m", "my_method", "-d", "tiny-phantom", "-O", "n_test=3",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(tmp_path / "r" / "samples.csv")) == 3


def test_a_broken_plugin_is_one_line(bench_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.core.registry import refresh_plugins

    info = tmp_path / "site" / "broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[bench.datasets]\nnowhere = no_such_module:Data\n"
                                           "phantom = elsewhere:Phantom\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    refresh_plugins()
    try:
        r = bench_cli("run", "-m", "uniform", "-d", "nowhere", "--out", tmp_path / "r")
        assert r.code == 2 and r.err.count("\n") == 1
        assert "dataset 'nowhere' (no_such_module:Data, entry-point group bench.datasets) cannot be loaded" in r.err
        r = bench_cli("run", "-m", "uniform", "-d", "phantom", "--out", tmp_path / "r")
        assert r.code == 2 and "dataset 'phantom' is built in and also registered by an installed package" in r.err
    finally:
        refresh_plugins()


@pytest.mark.slow
def test_pip_installs_the_template_and_bench_runs_it(tmp_path: Path) -> None:
    """A real `pip install` of (a copy of) the template, then the `bench` command in a fresh process."""
    import shutil

    source = tmp_path / "template"
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                          str(source)], capture_output=True, text=True, check=False)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot build the template here: {pip.stderr.strip().splitlines()[-1:]}")
    assert (site / "my_grounding_method" / "adapters" / "my_method.toml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site), "BENCH_CACHE": str(tmp_path / "cache")}
    bench = Path(sys.executable).with_name("bench")
    out = subprocess.run([str(bench), "run", "-m", "my_method", "-d", "tiny-phantom", "-O", "n_test=3",
                          "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert record["spec_files"]["method"]["path"] == str(site / "my_grounding_method" / "adapters" / "my_method.toml")


def test_a_typo_in_the_params_of_a_model_spec_is_refused_before_any_model_loads(bench_cli, tmp_path: Path) -> None:
    text = (ROOT / "adapters" / "phantom_ldm.toml").read_text().replace('name = "phantom_ldm"', 'name = "mine"')
    path = _spec(tmp_path, text, "num_inference_steps =", "num_inference_step =", "mine")
    r = bench_cli("run", "-m", path, "-d", "phantom", *SMALL_PHANTOM, "--out", tmp_path / "run")
    assert r.code == 2 and r.err.count("\n") == 1
    assert f"{path}: unknown field 'params.num_inference_step' (known: antialias, architecture," in r.err
    assert "num_inference_steps, " in r.err and not (tmp_path / "run").exists()


def test_a_registered_class_of_the_wrong_kind_is_one_line() -> None:
    from bench.core.errors import BenchError
    from bench.core.registry import resolve
    from bench.datasets.base import Dataset

    with pytest.raises(BenchError) as info:
        resolve({"odd": "bench.core.samples:Sample"}, "odd", "dataset", None, Dataset)
    assert str(info.value) == "dataset 'odd' (bench.core.samples.Sample) is not a bench Dataset subclass"
    assert resolve({"ok": "bench.datasets.phantom:PhantomDataset"}, "ok", "dataset", None, Dataset).name == "phantom"
