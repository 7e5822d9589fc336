"""`bench view`: the HTML folder of every scored sample, its overlays, cache, and refusals."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from viewer_runs import runs  # noqa: F401  (the module fixture)


class Rows(HTMLParser):
    """The sample rows of index.html: id, category, and the data-v of every cell in order."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.images: list[str] = []
        self.rects = 0
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tbody":
            self._in_body = True
        if not self._in_body:
            return
        if tag == "tr" and "data-id" in a:
            self.rows.append({"id": a["data-id"], "category": a["data-category"], "values": []})
        elif tag == "td" and "data-v" in a and self.rows:
            self.rows[-1]["values"].append(float(a["data-v"]) if a["data-v"] else None)
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "rect":
            self.rects += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


def _parse(out: Path) -> Rows:
    parser = Rows()
    parser.feed((out / "index.html").read_text(encoding="utf-8"))
    return parser


def test_one_run_shows_every_sample_with_its_metrics_and_overlay(runs, bench_cli, tmp_path):  # noqa: F811
    oracle = runs[0]
    result = bench_cli("view", oracle, "--out", tmp_path / "view")
    assert result.code == 0, result.err
    assert "16 samples of oracle_gaussian (16 overlays made, 0 cached)" in result.out
    table = pd.read_csv(oracle / "samples.csv", dtype={"sample_id": str}).sort_values("sample_id")
    metrics = json.loads((tmp_path / "view" / "view.json").read_text())["metrics"]
    assert metrics == ["cnr", "cnr_abs", "iou@0.1", "iou@0.2", "iou@0.3", "iou@0.4", "iou@0.5", "miou", "auc_roc",
                       "pointing_game"]
    page = _parse(tmp_path / "view")
    assert [r["id"] for r in page.rows] == table["sample_id"].tolist()
    assert [r["category"] for r in page.rows] == table["category"].tolist()
    for row, (_, want) in zip(page.rows, table.iterrows()):
        assert row["values"] == pytest.approx(want[metrics].to_numpy(np.float64).tolist(), rel=1e-12, abs=1e-12)
    # one box per phantom sample here, drawn over its overlay
    assert page.rects == sum(len(json.loads(b)) for b in table["scored_boxes"])
    for src in page.images:
        with Image.open(tmp_path / "view" / src) as im:
            assert im.format == "JPEG" and max(im.size) == 256
    assert not list((tmp_path / "view").glob("*.tmp"))
    for name in ("view.css", "view.js"):
        assert (tmp_path / "view" / name).stat().st_size > 100
    assert "http://" not in (tmp_path / "view" / "index.html").read_text() + (tmp_path / "view" / "view.js").read_text()


def test_two_runs_show_the_paired_difference_per_sample(runs, bench_cli, tmp_path):  # noqa: F811
    oracle, uniform = runs[0], runs[1]
    result = bench_cli("view", oracle, uniform, "--out", tmp_path / "view")
    assert result.code == 0, result.err
    page = _parse(tmp_path / "view")
    a = pd.read_csv(oracle / "samples.csv", dtype={"sample_id": str}).set_index("sample_id")
    b = pd.read_csv(uniform / "samples.csv", dtype={"sample_id": str}).set_index("sample_id")
    metrics = json.loads((tmp_path / "view" / "view.json").read_text())["metrics"]
    k = len(metrics)
    for row in page.rows:
        values = row["values"]
        assert len(values) == 3 * k  # the oracle's metrics, the uniform's, their differences
        assert values[:k] == pytest.approx(a.loc[row["id"], metrics].tolist())
        assert values[k:2 * k] == pytest.approx(b.loc[row["id"], metrics].tolist())
        assert values[2 * k:] == pytest.approx((b.loc[row["id"], metrics] - a.loc[row["id"], metrics]).tolist())
    # a constant map scores miou 0 and pointing game 0 here, so every difference is minus the oracle's score
    miou = metrics.index("miou")
    assert [r["values"][2 * k + miou] for r in page.rows] == pytest.approx([-a.loc[r["id"], "miou"] for r in page.rows])
    assert len(page.images) == 2 * len(page.rows)
    assert len({src.split("/")[1] for src in page.images}) == 2


def test_overlays_are_made_once_and_then_read_from_the_cache(runs, bench_cli, tmp_path):  # noqa: F811
    oracle, uniform = runs[0], runs[1]
    first = bench_cli("view", oracle, uniform, "--out", tmp_path / "v1")
    cached = sorted((tmp_path / "cache" / "view").glob("*.jpg"))
    assert len(cached) == 32 and "(32 overlays made, 0 cached)" in first.out
    times = [p.stat().st_mtime_ns for p in cached]
    again = bench_cli("view", uniform, oracle, "--out", tmp_path / "v1")  # replaces the earlier viewer
    assert again.code == 0 and "(0 overlays made, 32 cached)" in again.out
    assert [p.stat().st_mtime_ns for p in cached] == times
    assert json.loads((tmp_path / "v1" / "view.json").read_text())["runs"][0]["label"] == "uniform"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_overlay_blends_the_map_in_cividis_and_leaves_the_image_where_the_map_is_nan():
    from matplotlib import colormaps

    from bench.viewer.thumbnails import overlay_rgb

    image = np.array([[100, 200, 0]], dtype=np.uint8)
    heat = np.array([[1.0, np.nan, 0.0]])
    rgb = overlay_rgb(image, heat)
    top = np.array(colormaps["cividis"](1.0)[:3]) * 255
    bottom = np.array(colormaps["cividis"](0.0)[:3]) * 255
    assert np.abs(rgb[0, 0].astype(float) - (0.5 * 100 + 0.5 * top)).max() <= 1
    assert rgb[0, 1].tolist() == [200, 200, 200]
    assert np.abs(rgb[0, 2].astype(float) - 0.5 * bottom).max() <= 1


def _no_output(result, out: Path, pattern: str) -> None:
    assert result.code == 2, result.out + result.err
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("WARNING: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and re.search(pattern, lines[0]), result.err
    assert "Traceback" not in result.err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_a_run_without_heatmaps_is_one_line_and_nothing_written(runs, bench_cli, tmp_path):  # noqa: F811
    copy = tmp_path / "nomaps"
    shutil.copytree(runs[0], copy)
    shutil.rmtree(copy / "heatmaps")
    _no_output(bench_cli("view", copy, "--out", tmp_path / "view"), tmp_path / "view", r"has no heatmaps")


def test_a_run_missing_one_map_is_refused(runs, bench_cli, tmp_path):  # noqa: F811
    copy = tmp_path / "short"
    shutil.copytree(runs[0], copy)
    first = sorted((copy / "heatmaps").glob("*.npz"))[0]
    first.unlink()
    result = bench_cli("view", copy, "--allow-modified", "--out", tmp_path / "view")
    _no_output(result, tmp_path / "view", rf"no heatmap for 1 of its 16 samples \(first: {first.stem}\)")


def test_runs_on_different_sample_lists_are_refused(runs, bench_cli, tmp_path):  # noqa: F811
    result = bench_cli("view", runs[0], runs[2], "--out", tmp_path / "view")
    _no_output(result, tmp_path / "view", r"different sample lists \(dataset fingerprints")


def test_a_folder_that_is_not_a_run_is_refused(bench_cli, tmp_path):
    (tmp_path / "notarun").mkdir()
    _no_output(bench_cli("view", tmp_path / "notarun", "--out", tmp_path / "view"), tmp_path / "view",
               r"is not a run directory")
    _no_output(bench_cli("view", tmp_path / "absent", "--out", tmp_path / "view"), tmp_path / "view",
               r"absent is not a folder")


def test_a_changed_run_is_refused_unless_allow_modified(runs, bench_cli, tmp_path):  # noqa: F811
    copy = tmp_path / "edited"
    shutil.copytree(runs[0], copy)
    table = pd.read_csv(copy / "samples.csv", dtype={"sample_id": str})
    table.loc[0, "miou"] = 0.5
    table.to_csv(copy / "samples.csv", index=False)
    _no_output(bench_cli("view", copy, "--out", tmp_path / "view"), tmp_path / "view",
               r"samples.csv was changed after the run was written")
    result = bench_cli("view", copy, "--allow-modified", "--out", tmp_path / "view")
    assert result.code == 0 and "oracle_gaussian [modified]" in result.out
    assert "oracle_gaussian [modified]" in (tmp_path / "view" / "index.html").read_text()


def test_an_out_folder_with_other_files_is_left_alone(runs, bench_cli, tmp_path):  # noqa: F811
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    result = bench_cli("view", runs[0], "--out", out)
    assert result.code == 2 and "holds other files" in result.err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_a_failure_while_building_leaves_no_folder(runs, bench_cli, tmp_path, monkeypatch):  # noqa: F811
    import bench.viewer.build as build

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "_link_or_copy", broken)
    result = bench_cli("view", runs[0], "--out", tmp_path / "view")
    assert result.code == 2 and "No space left on device" in result.err
    assert not (tmp_path / "view").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("protocol", ["default", "nutzel2025", "vilouras2024"])
@pytest.mark.parametrize("grid", [(7, 5), (16, 16), (300, 200)])
def test_thumbnail_maps_equal_the_full_resolution_route(protocol, grid):
    """The thumbnail's map is the full-resolution scored map sampled at the thumbnail's pixels, to the bit."""
    from bench.core.geometry import Geometry
    from bench.core.heatmap import Heatmap
    from bench.evaluation.protocols import load_protocol
    from bench.evaluation.resample import to_original
    from bench.evaluation.scoring import apply_policy
    from bench.viewer.thumbnails import _thumbnail_index, example_arrays

    rng = np.random.default_rng(3)
    values = rng.normal(size=grid)
    values[0, 0] = np.nan
    geometry = Geometry(310, 530, 20, 40, 250, 180, "a crop")  # a grid finer than the crop (300 x 200) too
    heatmap = Heatmap(values, geometry)
    p = load_protocol(protocol)
    image = rng.integers(0, 4000, size=(310, 530)).astype(np.uint16)
    got = example_arrays(image, heatmap, [[50, 60, 20, 30]], p, None, size=128)
    full = apply_policy(to_original(heatmap, p.interpolation), p.value_policy(None))
    scale = 128 / 530
    rows, cols = _thumbnail_index(310, scale), _thumbnail_index(530, scale)
    np.testing.assert_array_equal(got["heatmap"], full[rows][:, cols].astype(np.float16))
    grey = np.round((image.astype(np.float64) - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)
    np.testing.assert_array_equal(got["image"], grey[rows][:, cols])
    assert got["boxes"][0].tolist() == pytest.approx([50 * scale, 60 * scale, 20 * scale, 30 * scale])


def test_the_overlay_cache_is_kept_within_its_bound(runs, bench_cli, tmp_path, monkeypatch):  # noqa: F811
    import os

    oracle, uniform = runs[0], runs[1]
    cache = tmp_path / "cache" / "view"
    assert bench_cli("view", oracle, "--out", tmp_path / "a").code == 0
    first = sorted(p.name for p in cache.glob("*.jpg"))
    sizes = {p.name: p.stat().st_size for p in cache.glob("*.jpg")}
    for k, name in enumerate(first):  # made in this order: the oldest go first
        os.utime(cache / name, ns=(10**18 + k, 10**18 + k))
    stale = cache / ".x.jpg.123.tmp"  # left by an interrupted write long ago
    stale.write_bytes(b"partial")
    os.utime(stale, (1, 1))
    fresh = cache / ".y.jpg.456.tmp"  # a write under way now
    fresh.write_bytes(b"partial")
    # room for the uniform run's 16 overlays and the 5 newest of the oracle's
    assert bench_cli("view", uniform, "--out", tmp_path / "b").code == 0
    second = sorted(set(p.name for p in cache.glob("*.jpg")) - set(first))
    limit = sum(p.stat().st_size for p in cache.glob("*.jpg") if p.name in second) + sum(sizes[n] for n in first[-5:])
    for name in second:
        os.utime(cache / name, ns=(2 * 10**18, 2 * 10**18))
    from bench.viewer import overlay_cache

    monkeypatch.setattr(overlay_cache, "cache_limit", lambda: limit)
    monkeypatch.setattr("bench.viewer.build.cache_limit", lambda: limit)
    result = bench_cli("view", uniform, "--out", tmp_path / "b")
    assert result.code == 0 and "(0 overlays made, 16 cached)" in result.out
    assert sorted(p.name for p in cache.glob("*.jpg")) == sorted(second + first[-5:])
    assert not stale.exists() and fresh.exists()
    # a viewer already written keeps its images (hard links or copies of the removed overlays)
    assert all((tmp_path / "a" / src).stat().st_size > 0 for src in _parse(tmp_path / "a").images)
    # a bound smaller than the build keeps the build's own overlays
    monkeypatch.setattr("bench.viewer.build.cache_limit", lambda: 0)
    assert bench_cli("view", uniform, "--out", tmp_path / "b").code == 0
    assert sorted(p.name for p in cache.glob("*.jpg")) == second


def test_a_bad_cache_bound_is_one_line_and_nothing_written(runs, bench_cli, tmp_path, monkeypatch):  # noqa: F811
    from bench.viewer.overlay_cache import DEFAULT_MB, cache_limit

    monkeypatch.delenv("BENCH_VIEW_CACHE_MB", raising=False)
    assert cache_limit() == DEFAULT_MB * 2**20
    monkeypatch.setenv("BENCH_VIEW_CACHE_MB", "250")
    assert cache_limit() == 250 * 2**20
    monkeypatch.setenv("BENCH_VIEW_CACHE_MB", "lots")
    result = bench_cli("view", runs[0], "--out", tmp_path / "v")
    assert result.code == 2 and result.err.strip().splitlines() == [
        "error: BENCH_VIEW_CACHE_MB='lots' is not a size in MB (a whole number, 0 or more)"]
    assert not (tmp_path / "v").exists()


def test_mask_outline_by_hand():
    """A 4 x 5 block in an 8 x 8 mask: at width 1 its 14 edge pixels, not its 6 inner ones; at width 2 all
    20 (no pixel is two steps inside); a mask on the image edge is outlined along that edge too; a 512 x 512
    mask is sampled at the 256 px thumbnail's pixel centres, with a 2-pixel band by default."""
    from bench.viewer.thumbnails import draw_outline, mask_outline

    m = np.zeros((8, 8), dtype=bool)
    m[2:6, 1:6] = True
    want = m.copy()
    want[3:5, 2:5] = False
    assert np.array_equal(mask_outline(m, width=1), want)
    assert np.array_equal(mask_outline(m, width=2), m)
    full = np.ones((3, 3), dtype=bool)
    assert np.array_equal(mask_outline(full, width=1), np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=bool))
    big = np.zeros((512, 512), dtype=bool)
    big[100:300, 50:150] = True  # thumbnail rows 50-149, columns 25-74
    small = mask_outline(big, 256)
    assert small.shape == (256, 256)
    assert np.array_equal(np.flatnonzero(small.any(axis=1)), np.arange(50, 150))
    assert small[50:52, 25:75].all() and small[100, [25, 26, 73, 74]].all() and not small[100, 27:73].any()
    assert small.sum() == 100 * 50 - 96 * 46
    rgb = draw_outline(np.zeros((8, 8, 3), dtype=np.uint8), want, "#ff4040")
    assert (rgb[want] == [255, 64, 64]).all() and not rgb[~want].any()


def test_a_mask_run_outlines_the_mask_on_its_overlays(bench_cli, tmp_path, monkeypatch):
    """Phantom with mask GT: every overlay has the GT colour on the mask's outline (JPEG-tolerant), and a box
    sample's overlay of the same run without masks has none of it."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    from bench.core.ground_truth import load_mask
    from bench.datasets import get_dataset
    from bench.viewer.thumbnails import mask_outline

    options = ["-O", "n_test=3", "-O", "n_train=0"]
    for gt in ("mask", "boxes"):
        run = tmp_path / gt
        assert bench_cli("run", "-m", "uniform", "-d", "phantom", *options, "-O", f"gt={gt}", "--out", run).code == 0
        assert bench_cli("view", run, "--out", tmp_path / f"view-{gt}").code == 0
    assert "ground-truth mask, which is what is scored" in (tmp_path / "view-mask" / "index.html").read_text()
    assert "ground-truth mask" not in (tmp_path / "view-boxes" / "index.html").read_text()
    ds = get_dataset("phantom", None, {"n_test": "3", "n_train": "0", "gt": "mask"})
    for sample in ds.samples():
        outline = mask_outline(load_mask(sample.mask, sample.height, sample.width))
        for gt, reddish in (("mask", 0.9), ("boxes", 0.0)):
            with Image.open(tmp_path / f"view-{gt}" / "img" / "0" / f"{sample.sample_id}.jpg") as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.int64)
            red = (rgb[..., 0] > 180) & (rgb[..., 0] - rgb[..., 2] > 100)
            assert red[outline].mean() >= reddish
            if gt == "boxes":
                assert not red.any()
