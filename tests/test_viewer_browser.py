"""The viewer in a real browser (headless Chromium): rows, sort after a click on a header, filters, overlays."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from browser import chromium, screenshot, selftest
from PIL import Image
from viewer_runs import runs  # noqa: F401  (the module fixture)


@pytest.fixture(scope="module")
def views(runs, tmp_path_factory):  # noqa: F811
    """(viewer of the oracle run, viewer of the oracle and the uniform run)."""
    chromium()
    from bench.viewer.build import build_view

    base = tmp_path_factory.mktemp("views")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_CACHE", str(runs[3]))
        build_view([runs[0]], base / "one")
        build_view([runs[0], runs[1]], base / "two")
    return base / "one" / "index.html", base / "two" / "index.html"


def _table(run) -> pd.DataFrame:
    return pd.read_csv(run / "samples.csv", dtype={"sample_id": str}).sort_values("sample_id").reset_index(drop=True)


def test_the_page_shows_every_sample_with_its_overlay(views, runs):  # noqa: F811
    result = selftest(views[0], "")
    table = _table(runs[0])
    assert result["rows"] == result["visible"] == 16 and result["images"] == 16
    assert result["order"] == table["sample_id"].tolist()
    assert result["count"] == "16 of 16 samples"


def test_a_click_on_miou_puts_the_worst_first(views, runs):  # noqa: F811
    table = _table(runs[0])
    want = table.sort_values(["miou", "sample_id"], kind="stable")["sample_id"].tolist()
    assert want != table["sample_id"].tolist()  # the sort moves rows
    assert selftest(views[0], "sort=miou")["order"] == want


def test_filters_by_category_and_by_phrase_text(views, runs):  # noqa: F811
    table = _table(runs[0])
    category = table["category"].iloc[0]
    result = selftest(views[0], f"category={category}")
    assert result["order"] == table.loc[table["category"] == category, "sample_id"].tolist()
    assert result["count"] == f"{result['visible']} of 16 samples" and 0 < result["visible"] < 16
    left = table.loc[table["phrase"].str.lower().str.contains("left"), "sample_id"].tolist()
    assert 0 < len(left) < 16
    assert selftest(views[0], "text=LEFT")["order"] == left
    both = selftest(views[0], f"sort=miou&category={category}&text=left")["order"]
    part = table[(table["category"] == category) & table["phrase"].str.lower().str.contains("left")]
    assert both == part.sort_values(["miou", "sample_id"], kind="stable")["sample_id"].tolist()


def test_two_runs_sort_by_their_paired_difference(views, runs):  # noqa: F811
    a, b = _table(runs[0]), _table(runs[1])
    diff = pd.DataFrame({"sample_id": a["sample_id"], "d": b["auc_roc"] - a["auc_roc"]})
    want = diff.sort_values(["d", "sample_id"], kind="stable")["sample_id"].tolist()
    result = selftest(views[1], "sort=d1:auc_roc")
    assert result["images"] == 32 and result["order"] == want


def test_a_screenshot_shows_the_table_and_coloured_overlays(views, tmp_path):
    shot = screenshot(views[1], tmp_path / "view.png")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (900, 1400)
    assert pixels.std() > 20  # not a blank page
    # the overlays loaded: the map in cividis over the grey image makes pixels far from grey (blue
    # of low values, yellow of high ones); text, table lines and a missing image are grey or white
    coloured = np.abs(pixels[..., 0] - pixels[..., 2]) > 20
    assert coloured.mean() > 0.05
    assert json.loads((views[1].parent / "view.json").read_text())["samples"] == 16


def test_without_chromium_the_tests_skip_outside_ci_and_fail_in_it(monkeypatch):
    import browser

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.delenv("BENCH_NO_BROWSER", raising=False)
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="no chromium on PATH"):
        browser.chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs it"):
        browser.chromium()
    monkeypatch.setenv("BENCH_NO_BROWSER", "chromium could not be installed by .ci/run (apt-get needs root)")
    with pytest.raises(pytest.skip.Exception, match="apt-get needs root"):
        browser.chromium()


@pytest.mark.slow
def test_the_phantom_ldm_run_in_the_browser(tmp_path, bench_cli):
    """The whole phantom test split (200 samples) of phantom_ldm: every row with its overlay, sort, filter."""
    chromium()
    assert bench_cli("run", "-m", "phantom_ldm", "-d", "phantom", "--out", tmp_path / "run").code == 0
    assert bench_cli("view", tmp_path / "run", "--out", tmp_path / "view").code == 0
    page = tmp_path / "view" / "index.html"
    table = _table(tmp_path / "run")
    result = selftest(page, "sort=miou")
    assert result["rows"] == result["images"] == 200
    assert result["order"] == table.sort_values(["miou", "sample_id"], kind="stable")["sample_id"].tolist()
    category = table["category"].iloc[0]
    result = selftest(page, f"category={category}")
    assert result["order"] == table.loc[table["category"] == category, "sample_id"].tolist()
