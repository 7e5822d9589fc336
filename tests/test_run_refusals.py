"""Small refusals: device strings, folders a failed run created, a spec search path that names no
folder, and the wording of type and unscored-file messages."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench.core.devices import check_device
from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.methods.baselines import Uniform

PHANTOM = ["-d", "phantom", "-O", "n_test=8", "-O", "n_train=0"]


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:12", "mps"])
def test_device_names_that_are_accepted(name: str) -> None:
    assert check_device(name) == name


@pytest.mark.parametrize("name", ["tpu", "gpu", "cuda:", "cuda:x", "CPU", "cpu ", "", "auto"])
def test_device_names_that_are_refused(name: str) -> None:
    with pytest.raises(BenchError) as info:
        check_device(name)
    assert str(info.value) == f"--device {name!r} is not a device: use cpu, cuda, cuda:N or mps"
    assert check_device("auto", allow_auto=True) == "auto"


def test_run_refuses_an_unknown_device_before_writing(bench_cli, tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = bench_cli("run", "-m", "oracle_gaussian", *PHANTOM, "--device", "tpu", "--out", out)
    assert r.code != 0 and r.err.strip() == "error: --device 'tpu' is not a device: use cpu, cuda, cuda:N or mps"
    assert not out.exists()


def test_tune_refuses_an_unknown_device(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("tune", "anatomy", "--spec", "anatomy_phantom", "--device", "tpu", "--out", tmp_path / "t")
    assert r.code != 0
    assert r.err.strip() == "error: --device 'tpu' is not a device: use auto, cpu, cuda, cuda:N or mps"
    assert not (tmp_path / "t").exists()


def test_a_failed_run_removes_the_parent_folders_it_created(bench_cli, tmp_path: Path, monkeypatch) -> None:
    def broken(self, samples, dataset):
        raise BenchError("the method broke")

    monkeypatch.setattr(Uniform, "heatmaps", broken)
    (tmp_path / "kept").mkdir()
    out = tmp_path / "kept" / "new" / "deeper" / "run"
    r = bench_cli("run", "-m", "uniform", *PHANTOM, "--out", out)
    assert r.code != 0 and "the method broke" in r.err
    assert (tmp_path / "kept").is_dir() and list((tmp_path / "kept").iterdir()) == []
    # a parent that holds something else stays
    (tmp_path / "kept" / "new").mkdir()
    (tmp_path / "kept" / "new" / "mine.txt").write_text("x")
    assert bench_cli("run", "-m", "uniform", *PHANTOM, "--out", out).code != 0
    assert sorted(p.name for p in (tmp_path / "kept" / "new").iterdir()) == ["mine.txt"]


def test_a_spec_search_path_naming_a_missing_folder_is_one_line(bench_cli, tmp_path: Path, monkeypatch) -> None:
    missing = tmp_path / "no-such-folder"
    monkeypatch.setenv("BENCH_SPEC_PATH", str(missing))
    r = bench_cli("list", "methods")
    assert r.code != 0
    assert r.err.strip() == (f"error: BENCH_SPEC_PATH names {missing}, which is not a folder; "
                             "fix or unset BENCH_SPEC_PATH")
    (missing / "adapters").mkdir(parents=True)
    assert bench_cli("list", "methods").code == 0


def test_a_wrong_type_says_an_integer(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("run", "-m", "phantom_ldm", *PHANTOM, "--set", "text_max_length=long", "--out", tmp_path / "r")
    assert r.code != 0
    assert r.err.strip() == "error: adapters/phantom_ldm.toml: params.text_max_length = 'long' is not an integer >= 2"
    assert "a int" not in r.err


def test_unscored_files_are_counted_in_plain_words(bench_cli, tmp_path: Path) -> None:
    from bench.datasets import get_dataset

    sample = get_dataset("phantom", options={"n_test": "1", "n_train": "0"}).samples()[0]
    maps = tmp_path / "maps"
    maps.mkdir()
    for sid in (sample.sample_id, "stray-a", "stray-b"):
        Heatmap(np.eye(4, dtype=np.float32), Geometry.whole(sample.height, sample.width)).save(maps / f"{sid}.npz")
    r = bench_cli("score", "--heatmaps", maps, "-d", "phantom", "-O", "n_test=1", "-O", "n_train=0",
                  "--out", tmp_path / "s")
    assert "2 heatmap file(s) not scored: 2 matching no sample of the dataset" in r.err
    record = json.loads((tmp_path / "s" / "run.json").read_text())
    assert record["unscored_files"] == {"matching no sample of the dataset": 2}
