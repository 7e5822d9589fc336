"""`bench leaderboard --html`: the leaderboards as a static site, checked in files and in a real browser."""

from __future__ import annotations

import json
import re

import numpy as np
from browser import screenshot, selftest
from PIL import Image
from test_leaderboard import board, pristine  # noqa: F401  (the fixtures: two methods on chestx-ray14)


def test_the_site_has_every_page_with_tables_figures_and_html_links(board, bench_cli, tmp_path):  # noqa: F811
    paths, args = board
    before = sorted(p.name for p in paths["leaderboards"].rglob("*"))
    result = bench_cli("leaderboard", *args, "--html", tmp_path / "site")
    assert result.code == 0, result.err
    site = tmp_path / "site"
    pages = json.loads((site / "site.json").read_text())["pages"]
    assert pages == sorted(p.stem + ".html" for p in paths["leaderboards"].glob("*.md"))
    assert {"README.html", "chestx-ray14__default.html", "reproduction.html"} <= set(pages)
    assert f"{len(pages)} pages in {site / 'index.html'}" in result.out
    page = (site / "chestx-ray14__default.html").read_text()
    assert page.count("<table>") >= 2 and "<th>method</th>" in page
    assert "0.450 [" in page  # good's hand-computed macro mean, as on the Markdown page
    for src in re.findall(r'<img src="([^"]+)"', page):
        assert (site / src).is_file() and (site / src).read_bytes()[:4] == b"\x89PNG"
    index = (site / "README.html").read_text()
    assert 'href="chestx-ray14__default.html"' in index and ".md\"" not in index
    assert (site / "chestx-ray14__default" / "summary.csv").is_file()
    assert sorted(p.name for p in paths["leaderboards"].rglob("*")) == before  # the Markdown pages untouched
    again = bench_cli("leaderboard", *args, "--html", site)  # an earlier site is replaced
    assert again.code == 0 and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_site_folder_with_other_files_is_refused(board, bench_cli, tmp_path):  # noqa: F811
    _, args = board
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    result = bench_cli("leaderboard", *args, "--html", tmp_path / "mine")
    assert result.code == 2 and "holds other files" in result.err
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_the_site_tables_sort_in_a_browser(board, bench_cli, tmp_path):  # noqa: F811
    _, args = board
    assert bench_cli("leaderboard", *args, "--html", tmp_path / "site").code == 0
    page = tmp_path / "site" / "chestx-ray14__default.html"
    # the ranking table (the first): best mean rank first; a click on miou sorts by the macro mean, lowest first
    assert selftest(page, "table=0")["first"] == ["good", "poor"]
    assert selftest(page, "table=0&sort=miou (rank)")["first"] == ["poor", "good"]
    shot = np.asarray(Image.open(screenshot(page, tmp_path / "site.png")).convert("L"), dtype=np.int16)
    assert shot.std() > 10 and (shot < 128).mean() > 0.005  # text and figures, not a blank page


def test_each_method_links_to_its_spec_page(board, bench_cli, tmp_path):  # noqa: F811
    paths, args = board
    assert bench_cli("leaderboard", *args, "--html", tmp_path / "site").code == 0
    site = tmp_path / "site"
    page = (site / "chestx-ray14__default.html").read_text()
    # the ranking and runs tables link each method, and the page lists spec and viewer per method
    assert page.count('<td><a href="specs/chestx-ray14__default/good.html">good</a></td>') >= 2
    assert "Methods: specs and viewers" in page and "give its run folder with <code>--view</code>" in page
    spec = (site / "specs" / "chestx-ray14__default" / "good.html").read_text()
    # "good" is no shipped method: no spec file at hand, the spec as its run.json resolved it
    assert "The spec file is not at hand here" in spec and "&quot;backend&quot;: &quot;good&quot;" in spec
    assert 'href="../../site.css"' in spec and 'href="../../chestx-ray14__default.html"' in spec
    assert not (site / "specs" / "chestx-ray14__default" / "good.toml").exists()


def test_a_shipped_method_gets_its_adapter_file_and_a_changed_one_is_said(bench_cli, tmp_path):
    from test_leaderboard import GOOD_RUN, POOR_RUN, make_run

    from bench.leaderboard.results import add_run
    from bench.methods.specs import method_spec_file

    shipped = method_spec_file("box_prior")
    add_run(make_run(tmp_path / "runs" / "box_prior", "box_prior", GOOD_RUN,
                     spec_files={"method": shipped.record()}), tmp_path / "results")
    add_run(make_run(tmp_path / "runs" / "uniform", "uniform", POOR_RUN,
                     spec_files={"method": {"path": "adapters/uniform.toml", "sha256": "0" * 64}}),
            tmp_path / "results")
    (tmp_path / "reported").mkdir()
    result = bench_cli("leaderboard", "--results", tmp_path / "results", "--reported", tmp_path / "reported",
                       "--out", tmp_path / "boards", "--html", tmp_path / "site")
    assert result.code == 0, result.err
    folder = tmp_path / "site" / "specs" / "chestx-ray14__default"
    assert (folder / "box_prior.toml").read_bytes() == shipped.entry.read_bytes()
    page = (folder / "box_prior.html").read_text()
    assert "adapters/box_prior.toml" in page and "same SHA-256 as its run.json records" in page
    assert 'href="box_prior.toml"' in page and 'backend = &quot;box_prior&quot;' in page
    other = (folder / "uniform.html").read_text()
    assert "the run read another version" in other and "0000000000000000" in other


def test_the_site_builds_a_viewer_for_each_run_given(bench_cli, tmp_path):
    from viewer_runs import make_run

    oracle = make_run(tmp_path / "oracle", "oracle_gaussian", n_test=8)
    uniform = make_run(tmp_path / "uniform", "uniform", n_test=8)
    (tmp_path / "reported").mkdir()
    base = ["--results", tmp_path / "results", "--reported", tmp_path / "reported", "--out", tmp_path / "boards"]
    assert bench_cli("leaderboard", *base, "--add", oracle).code == 0
    result = bench_cli("leaderboard", *base, "--html", tmp_path / "site", "--view", oracle)
    assert result.code == 0, result.err
    site = tmp_path / "site"
    page = next(site.glob("phantom*__default.html"))
    viewer = site / "view" / page.stem / "oracle_gaussian" / "index.html"
    assert f'href="view/{page.stem}/oracle_gaussian/index.html"' in page.read_text()
    rows = re.findall(r'<tr data-id="([^"]+)"', viewer.read_text())
    assert len(rows) == 8 and all((viewer.parent / src).is_file() for src in
                                  re.findall(r'<img src="([^"]+)"', viewer.read_text()))
    assert json.loads((viewer.parent / "view.json").read_text())["runs"][0]["root"] == str(oracle.resolve())
    # in a browser: the viewer inside the site sorts by miou, worst first
    import pandas as pd

    table = pd.read_csv(oracle / "samples.csv", dtype={"sample_id": str}).sort_values("sample_id")
    want = table.sort_values(["miou", "sample_id"], kind="stable")["sample_id"].tolist()
    result = selftest(viewer, "sort=miou")
    assert result["rows"] == 8 and result["images"] == 8 and result["order"] == want
    # a run no entry was scored from, and --view without --html: one line, nothing written
    for extra in (["--html", tmp_path / "site2", "--view", uniform], ["--view", oracle]):
        bad = bench_cli("leaderboard", *base, *extra)
        assert bad.code == 2 and len(bad.err.strip().splitlines()) == 1, bad.err
    assert "no leaderboard entry was scored from its maps" in bench_cli(
        "leaderboard", *base, "--html", tmp_path / "site2", "--view", uniform).err
    assert not (tmp_path / "site2").exists() and not list(tmp_path.glob(".site2*"))
