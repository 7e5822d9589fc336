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
