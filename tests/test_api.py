"""The public Python API: the numbers of the command line, from memory, by batch or at once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {"n_test": 16, "n_train": 8}  # two test samples per category: every group has a CI
CLI_OPTIONS = ["-O", "n_test=16", "-O", "n_train=8"]


def test_import_bench_is_light_and_the_api_is_reached_lazily() -> None:
    code = ("import sys, bench; light = [m for m in ('bench.api', 'pandas', 'numpy') if m in sys.modules]; "
            "print(light, bench.__version__, callable(bench.score_maps), 'bench.api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", bench.__version__, "True", "True"]
    with pytest.raises(AttributeError, match="no attribute 'score_map'"):
        bench.score_map  # noqa: B018
    from bench.running.runner import versions

    assert versions()["cxr-grounding-bench"] == bench.__version__


def test_every_public_name_resolves_and_the_readme_documents_it() -> None:
    readme = (ROOT / "README.md").read_text().split("## Python API")[1].split("\n## ")[0]
    for name in bench.__all__:
        assert getattr(bench, name) is not None
        if name != "__version__":
            assert f"`bench.{name}`" in readme or f"bench.{name}(" in readme, f"README's Python API lacks {name}"


def _noisy_maps(samples, seed: int = 0) -> list[np.ndarray]:
    """Original-size maps: a blob at each box plus noise, NaN on a border strip (outside the field of view)."""
    rng = np.random.default_rng(seed)
    maps = []
    for s in samples:
        m = rng.random((s.height, s.width)).astype(np.float32)
        for x, y, w, h in s.boxes:
            m[int(y):int(y + h), int(x):int(x + w)] += 1.5
        m[:, : s.width // 10] = np.nan
        maps.append(m)
    return maps


@pytest.mark.parametrize("protocol", ["default", "vilouras2025"])
def test_the_accumulating_scorer_gives_the_numbers_of_bench_score(bench_cli, tmp_path: Path, protocol: str) -> None:
    samples = bench.protocol_samples("phantom", protocol, options=OPTIONS)
    maps = _noisy_maps(samples)
    folder = tmp_path / "maps"
    folder.mkdir()
    for s, m in zip(samples, maps):
        np.save(folder / f"{s.sample_id}.npy", m)
    r = bench_cli("score", "--heatmaps", folder, "--dataset", "phantom", *CLI_OPTIONS, "--protocol", protocol,
                  "--out", tmp_path / "scored")
    assert r.code == 0, r.err

    scorer = bench.Scorer(protocol)
    for i in range(0, len(samples), 5):  # batches of a loop, the last one short
        scorer.update(maps[i:i + 5], samples[i:i + 5])
    assert len(scorer) == len(samples)
    scores = scorer.compute()
    # to the last digit: the files bench score wrote, and the in-memory frames of the function it calls
    assert scores.samples.to_csv(index=False, float_format="%.10g") == (tmp_path / "scored" / "samples.csv").read_text()
    assert scores.summary.to_csv(index=False, float_format="%.10g") == (tmp_path / "scored" / "summary.csv").read_text()
    from bench.running.runner import score_folder

    direct = score_folder(folder, "phantom", protocol, tmp_path / "direct", None, {k: str(v) for k, v in OPTIONS.items()})
    pd.testing.assert_frame_equal(scores.samples, direct.samples, check_exact=True)
    pd.testing.assert_frame_equal(scores.summary, direct.summary, check_exact=True)

    import torch

    batched = bench.score_maps([torch.from_numpy(m) for m in maps], samples, protocol=protocol)
    pd.testing.assert_frame_equal(batched.summary, scores.summary, check_exact=True)
    scorer.reset()
    assert len(scorer) == 0


def test_three_lines_in_a_notebook() -> None:
    from bench.core.geometry import box_mask

    samples = bench.protocol_samples("phantom", options={"n_test": 16, "n_train": 0})
    maps = [box_mask(s.boxes, s.height, s.width).astype(float) for s in samples]
    scores = bench.score_maps(maps, samples)
    # the GT mask itself: every threshold gives the GT, the maximum lies in it, and with no spread
    # inside or outside the boxes CNR's denominator is the default protocol's variance floor, 1e-4:
    # CNR 1 / sqrt(1e-4) = 100, the most any map scores
    assert scores.metric("miou") == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    assert scores.metric("auc_roc", "micro") == pytest.approx((1.0, 1.0, 1.0), abs=1e-12)
    assert scores.metric("pointing_game")[0] == pytest.approx(1.0, abs=1e-12)
    assert scores.metric("cnr") == pytest.approx((100.0, 100.0, 100.0), abs=1e-9)
    assert list(scores.samples["sample_id"]) == [s.sample_id for s in samples]


def test_maps_with_boxes_only_and_native_grids() -> None:
    half = np.zeros((10, 10))
    half[:, :5] = 1.0  # the image's left half
    box = [2, 2, 4, 4]  # columns 2..5, rows 2..5: 12 of its 16 pixels lie in the left half
    scores = bench.score_maps(half, boxes=[[box]], categories="edema")
    row = scores.samples.iloc[0]
    assert row["category"] == "edema" and row["iou@0.3"] == pytest.approx(12 / 54) and row["miou"] == pytest.approx(12 / 54)
    assert row["pointing_game"] == 0.0  # first maximum (0, 0) is outside the box
    # positives: 12 at 1, 4 at 0; negatives: 38 at 1, 46 at 0 -> (12 * 46 + (12 * 38 + 4 * 46) / 2) / (16 * 84)
    assert row["auc_roc"] == pytest.approx(872 / 1344)
    # a 2 x 2 native grid over the whole 10 x 10 image: nearest upsampling puts cell (0, 0) on the top-left quarter
    coarse = np.array([[1.0, 0.0], [0.0, 0.0]])
    native = bench.score_maps(coarse, boxes=[[[0, 0, 5, 5]]], image_size=(10, 10), geometry="whole")
    assert native.samples["miou"][0] == 1.0
    with pytest.raises(bench.BenchError, match=r"map has shape \(2, 2\) but the image is 10x10"):
        bench.score_maps(coarse, boxes=[[[0, 0, 5, 5]]], image_size=(10, 10))
    with pytest.raises(bench.BenchError, match="2 maps but 1 box lists"):
        bench.score_maps(np.zeros((2, 10, 10)), boxes=[[box]])


def test_a_sample_outside_the_protocol_is_skipped_and_a_repeat_is_refused() -> None:
    far = bench.Sample("far", "", 100, 100, "edema", "", ((0.0, 0.0, 3.0, 3.0),))
    near = bench.Sample("near", "", 100, 100, "edema", "", ((40.0, 40.0, 20.0, 20.0),))
    crop = bench.Geometry(100, 100, 20, 20, 60, 60, "centre crop")
    scorer = bench.Scorer("vilouras2024")
    scorer.update([np.ones((4, 4)), np.ones((4, 4))], [far, near], geometry=crop)
    assert list(scorer.compute().samples["sample_id"]) == ["near"]
    assert "no box survives" in scorer.skipped["far"]
    with pytest.raises(bench.BenchError, match="sample 'near' is scored twice"):
        scorer.update(np.ones((4, 4)), near, geometry=crop)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    from bench.running.runner import RunRequest, run

    root = tmp_path_factory.mktemp("runs")
    options = {k: str(v) for k, v in OPTIONS.items()}
    for method in ("box_prior", "oracle_gaussian"):
        run(RunRequest(method=method, dataset="phantom", dataset_options=options, out=root / method))
    return root / "box_prior", root / "oracle_gaussian"


def test_load_compare_and_rescore_runs_as_the_command_line(bench_cli, tmp_path: Path, two_runs) -> None:
    prior, oracle = two_runs
    run = bench.load_run(oracle)
    assert run.name == "oracle_gaussian" and run.protocol.name == "default" and len(run.samples) == 16
    assert set(run.summary["group"]) >= {"macro", "micro"}

    r = bench_cli("compare", prior, oracle, "--out", tmp_path / "cmp")
    assert r.code == 0, r.err
    comparison = bench.compare_runs([prior, oracle])
    assert comparison.differences.to_csv(index=False, float_format="%.10g") == \
        (tmp_path / "cmp" / "differences.csv").read_text()
    diff = comparison.differences.set_index("metric").at["miou", "difference"]
    macro = run.summary[(run.summary["group"] == "macro") & (run.summary["metric"] == "miou")]["mean"].iloc[0]
    other = bench.load_run(prior).summary
    assert diff == pytest.approx(macro - other[(other["group"] == "macro") & (other["metric"] == "miou")]["mean"].iloc[0])

    r = bench_cli("compare", "--protocols", "default,vilouras2025", prior, oracle, "--out", tmp_path / "sens")
    assert r.code == 0, r.err
    again = bench.rescore([prior, oracle], ["default", bench.load_protocol("vilouras2025")])
    assert again.table.to_csv(index=False, float_format="%.10g") == (tmp_path / "sens" / "sensitivity.csv").read_text()
    assert set(again.samples) == {(n, p) for n in ("box_prior", "oracle_gaussian") for p in ("default", "vilouras2025")}
    assert again.samples[("oracle_gaussian", "default")].equals(run.samples)


def test_a_comparison_exports_latex_and_markdown(two_runs) -> None:
    comparison = bench.compare_runs(list(two_runs))
    md = comparison.table("markdown", metrics=["miou", "auc_roc"])
    lines = md.splitlines()
    assert lines[:2] == ["| run | miou | auc_roc |", "| --- | ---: | ---: |"]
    assert lines[2].startswith("| box_prior | 0.") and "**" not in lines[2]
    assert re.match(r"\| oracle_gaussian \| \*\*0\.67\d \[0\.\d{3}, 0\.\d{3}\] †\*\* \| \*\*0\.99\d", lines[3])
    fingerprint = comparison.protocol.fingerprint()
    assert f"Table: macro mean [95% CI] on 16 common samples under protocol default (fingerprint {fingerprint})" in md
    tex = comparison.table("latex")
    assert r"\textbf{0.67" in tex and r"oracle\_gaussian" in tex and "pointing\\_game" in tex
