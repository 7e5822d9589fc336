"""`bench leaderboard --html DIR`: the leaderboards as a static site with sortable tables.

Built from the same in-memory build as the Markdown pages (`build.build`): every page is the
Markdown page rendered to HTML (markdown-it, the Markdown parser `rich` already depends on), with
links between pages pointing at their `.html` twins, the PNG figures drawn, and the CSV and LaTeX
tables copied. `sort.js` makes every table sortable by a click on a header (numbers by their
leading value, so "0.672 [0.671, 0.673]" sorts by its mean). The Markdown pages stay the committed,
reviewed form; the site is not committed. It is built in a temporary folder and renamed into place.

Each method links to its spec page, and to its viewer when its run folder is given (`--view`;
see `method_pages.py`): a board page gets a "Methods: specs and viewers" section, and every table
cell that is a method's name links to its spec.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

from ..core.errors import BenchError
from ..viewer.folder import build_folder
from .build import MANIFEST, Build
from .method_pages import MethodPage, link_cells, links_markdown, method_pages, spec_file, spec_markdown

MARKER = "site.json"
STATIC = ("site.css", "sort.js")
_LINK = re.compile(r'(href="(?![a-z]+:)[^"#]*?)\.md(["#])')


def page_html(markdown: str) -> str:
    """The body of one page: Markdown rendered with tables, local `.md` links turned into `.html`."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return _LINK.sub(r"\1.html\2", body)


def write_site(built: Build, out: Path, views: Sequence[Path] = (), allow_modified: bool = False,
               warn: Callable[[str], None] | None = None) -> int:
    """Write the site of `built` to the folder `out` (replacing an earlier site there); returns the page count.

    `views`: run folders of leaderboard entries, each given `bench view`'s viewer in the site.
    BenchError, nothing written, for a run that matches no entry or that `bench view` refuses.
    """
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("bench.leaderboard", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined)
    template = env.get_template("page.html.j2")
    pages = sorted(p for p in built.texts if p.endswith(".md") and "/" not in p)  # a board's table.md is a file
    if not pages:
        raise BenchError("the leaderboard build holds no page; nothing to write")
    methods = method_pages(built.boards, views)
    by_page: dict[str, list[MethodPage]] = {}
    for m in methods:
        by_page.setdefault(f"{m.board}.md", []).append(m)

    def write_page(target: Path, title: str, body: str, root: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template.render(title=title, body=body, root=root, index="README.html"), encoding="utf-8")

    def fill(tmp: Path) -> None:
        for path, text in built.texts.items():
            if path == MANIFEST:
                continue
            target = tmp / (path[:-3] + ".html" if path in pages else path)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path in pages:
                title = next((line[2:] for line in text.splitlines() if line.startswith("# ")), path)
                linked = by_page.get(path, [])
                if linked:
                    text = text.rstrip("\n") + "\n\n" + links_markdown(linked)
                write_page(target, title, link_cells(page_html(text), linked), "")
            else:
                target.write_text(text, encoding="utf-8")
        for path, (_, render) in sorted(built.figures.items()):
            if path.endswith(".png"):
                target = tmp / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(render())
        _method_files(tmp, methods, write_page, allow_modified, warn)
        for name in STATIC:
            (tmp / name).write_bytes(resources.files("bench.leaderboard").joinpath("templates", name).read_bytes())
        (tmp / "index.html").write_text('<!DOCTYPE html><meta charset="utf-8"><meta http-equiv="refresh" '
                                        'content="0; url=README.html"><a href="README.html">leaderboards</a>\n',
                                        encoding="utf-8")
        (tmp / MARKER).write_text(json.dumps({"pages": [p[:-3] + ".html" for p in pages]}, indent=2) + "\n",
                                  encoding="utf-8")

    build_folder(Path(out), MARKER, fill)
    return len(pages)


def _method_files(tmp: Path, methods: Sequence[MethodPage], write_page: Callable[[Path, str, str, str], None],
                  allow_modified: bool, warn: Callable[[str], None] | None) -> None:
    """Each entry's spec page (with the spec file copied beside it) and, for the runs given, its viewer."""
    for m in methods:
        found = spec_file(m.entry)
        if found is not None:
            (tmp / m.spec_toml).parent.mkdir(parents=True, exist_ok=True)
            (tmp / m.spec_toml).write_bytes(found.entry.read_bytes())
        write_page(tmp / m.spec_html, f"{m.entry.label}: method spec", page_html(spec_markdown(m, found)), "../../")
        if m.run is not None:
            from ..viewer.build import build_view

            extra = {"warn": warn} if warn is not None else {}
            build_view([m.run], tmp / m.viewer.rsplit("/", 1)[0], allow_modified, **extra)
