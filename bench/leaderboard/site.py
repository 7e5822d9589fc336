"""`bench leaderboard --html DIR`: the leaderboards as a static site with sortable tables.

Built from the same in-memory build as the Markdown pages (`build.build`): every page is the
Markdown page rendered to HTML (markdown-it, the Markdown parser `rich` already depends on), with
links between pages pointing at their `.html` twins, the PNG figures drawn, and the CSV and LaTeX
tables copied. `sort.js` makes every table sortable by a click on a header (numbers by their
leading value, so "0.672 [0.671, 0.673]" sorts by its mean). The Markdown pages stay the committed,
reviewed form; the site is not committed. It is built in a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from ..core.errors import BenchError
from ..viewer.folder import build_folder
from .build import MANIFEST, Build

MARKER = "site.json"
STATIC = ("site.css", "sort.js")
_LINK = re.compile(r'(href="(?![a-z]+:)[^"#]*?)\.md(["#])')


def page_html(markdown: str) -> str:
    """The body of one page: Markdown rendered with tables, local `.md` links turned into `.html`."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return _LINK.sub(r"\1.html\2", body)


def write_site(built: Build, out: Path) -> int:
    """Write the site of `built` to the folder `out` (replacing an earlier site there); returns the page count."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("bench.leaderboard", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    template = env.get_template("page.html.j2")
    pages = sorted(p for p in built.texts if p.endswith(".md") and "/" not in p)  # a board's table.md is a file
    if not pages:
        raise BenchError("the leaderboard build holds no page; nothing to write")

    def fill(tmp: Path) -> None:
        for path, text in built.texts.items():
            if path == MANIFEST:
                continue
            target = tmp / (path[:-3] + ".html" if path in pages else path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path in pages:
                title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), path)
                target.write_text(template.render(title=title, body=page_html(text), root="",
                                                  index="README.html"), encoding="utf-8")
            else:
                target.write_text(text, encoding="utf-8")
        for path, (_, render) in sorted(built.figures.items()):
            if path.endswith(".png"):
                target = tmp / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(render())
        for name in STATIC:
            (tmp / name).write_bytes(resources.files("bench.leaderboard").joinpath("templates", name).read_bytes())
        (tmp / "index.html").write_text('<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" '
                                        'content="0; url=README.html"><a href="README.html">leaderboards</a>\n',
                                        encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps({"pages": [p[:-3] + ".html" for p in pages]}, indent=2) + "\n",
                                  encoding="utf-8")

    build_folder(Path(out), MARKER, fill)
    return len(pages)
