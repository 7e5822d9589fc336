"""What the leaderboard site links each method to: its spec page, and its viewer when its run is at hand.

A spec page is written for every entry of every board, at `specs/BOARD/ENTRY.html`: the adapter
spec file the run read (found by the method's name among the shipped specs and the spec search
path; its SHA-256 compared with the one run.json records, and a changed file said so), copied
beside it as `specs/BOARD/ENTRY.toml`, and the spec as the run resolved it (`config.method` of
run.json, overrides applied). Entries in `results/` hold no heatmaps, so a viewer needs the run
folder: each `--view RUN_DIR` is matched to the entries scored from the same maps (the heatmap
digest run.json records), under the same protocol and on the same dataset fingerprint, and gets
`bench view`'s folder at `view/BOARD/ENTRY/`.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..core.errors import BenchError
from ..running import integrity
from ..running.rundir import RunDir
from .results import Entry
from .tables import Board


@dataclass
class MethodPage:
    """The site's files of one entry: its spec page (and TOML copy), and the run its viewer is built from."""

    board: str
    entry: Entry
    run: Path | None = None

    @property
    def spec_html(self) -> str:
        return f"specs/{self.board}/{self.entry.name}.html"

    @property
    def spec_toml(self) -> str:
        return f"specs/{self.board}/{self.entry.name}.toml"

    @property
    def viewer(self) -> str | None:
        return None if self.run is None else f"view/{self.board}/{self.entry.name}/index.html"


def method_pages(boards: Sequence[Board], runs: Sequence[Path] = ()) -> list[MethodPage]:
    """One page per (board, entry); each run of `runs` assigned to the entries it matches.

    BenchError (one line) for a run folder that is not a finished run, records no heatmap digest,
    or matches no entry.
    """
    pages = [MethodPage(b.slug, e) for b in boards for e in sorted(b.entries, key=lambda e: e.name)]
    for root in runs:
        record = RunDir(Path(root)).read_run()
        if not record or record.get("status") != "complete":
            raise BenchError(f"--view {root}: not a finished run folder (no complete run.json)")
        maps = (integrity.recorded(record) or {}).get("heatmaps")
        if not maps:
            raise BenchError(f"--view {root}: its run.json records no heatmap digest, so it cannot be matched "
                             "to a leaderboard entry")
        protocol = (record.get("protocol") or {}).get("name")
        hits = [p for p in pages if (integrity.recorded(p.entry.record) or {}).get("heatmaps") == maps
                and p.entry.protocol.name == protocol
                and p.entry.record.get("dataset_fingerprint") == record.get("dataset_fingerprint")]
        if not hits:
            raise BenchError(f"--view {root}: no leaderboard entry was scored from its maps under protocol "
                             f"{protocol} on its dataset (matched by the heatmap digest in run.json)")
        for page in hits:
            page.run = Path(root)
    return pages


def spec_file(entry: Entry):
    """The spec file of the entry's method as it is now (a `SpecFile`), or None when none is found by its name."""
    from ..methods.specs import method_spec_file

    name = ((entry.record.get("config") or {}).get("method") or {}).get("name") or entry.record.get("method")
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.endswith(".toml"):
        return None  # only a spec found by name: a path in a record is not read
    try:
        return method_spec_file(name)
    except BenchError:
        return None


def spec_markdown(page: MethodPage, found) -> str:
    """The Markdown of an entry's spec page (`found`: its spec file, or None)."""
    e = page.entry
    recorded = ((e.record.get("spec_files") or {}).get("method")) or {}
    lines = [f"# {e.label}: method spec", "",
             f"Entry `{e.name}` of the [{page.board}](../../{page.board}.html) leaderboard.", ""]
    if found is not None:
        sha = found.sha256()
        if recorded.get("sha256") == sha:
            said = "the file the run read (same SHA-256 as its run.json records)"
        elif recorded.get("sha256"):
            said = (f"the file as it is now; **the run read another version** (SHA-256 `{recorded['sha256'][:16]}`, "
                    f"now `{sha[:16]}`)")
        else:
            said = "the file as it is now (the run recorded no hash of the file it read)"
        lines += [f"`{found.label}`: {said}; [as a file]({e.name}.toml).", "", "```toml", found.text().rstrip(), "```",
                  ""]
    else:
        where = recorded.get("path")
        lines += [f"The spec file is not at hand here{f' (the run read `{where}`)' if where else ''}.", ""]
    resolved = (e.record.get("config") or {}).get("method")
    if resolved:
        overrides = e.record.get("overrides") or []
        lines += ["The spec as the run resolved it (`config.method` of its run.json"
                  + (f", with {', '.join(f'`{o}`' for o in overrides)}" if overrides else "") + "):", "",
                  "```json", json.dumps(resolved, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)


def links_markdown(pages: Sequence[MethodPage]) -> str:
    """The section a board page gets on the site: each method with its spec and, when built, its viewer."""
    rows = [f"| {p.entry.label} | [spec]({p.spec_html}) | "
            + (f"[viewer]({p.viewer})" if p.viewer else "— (give its run folder with `--view`)") + " |"
            for p in pages]
    return "\n".join(["## Methods: specs and viewers", "", "| method | spec | viewer |", "| --- | --- | --- |",
                      *rows, ""])


def link_cells(body: str, pages: Sequence[MethodPage]) -> str:
    """Every table cell that is exactly a method's label made a link to its spec page."""
    for p in pages:
        cell = f"<td>{html.escape(p.entry.label, quote=False)}</td>"
        body = body.replace(cell, f'<td><a href="{html.escape(p.spec_html)}">'
                                  f'{html.escape(p.entry.label, quote=False)}</a></td>')
    return body
