"""`bench leaderboard`: build `leaderboards/` from `results/` and `reported/`, or check it is current.

The build is a pure function of those two folders. Text files (pages, CSV, the manifest) are
compared byte for byte; figures are compared through the digest of the data they draw, which the
manifest records, so a different matplotlib or font version does not fail the check.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..core import atomic
from ..core.errors import BenchError
from ..reporting.reported import load_reported
from .pages import board_page, index_page
from .reproduction import load_guide, reproduction_page
from .results import COMPARISONS, Entry, load_comparisons, load_results, read_example
from .tables import Board, groups, measured, ranks

MANIFEST = "manifest.json"
INDEX = "README.md"
REPRODUCTION = "reproduction.md"


@dataclass
class Build:
    """What a build produces: text files, and figures as (data digest, renderer)."""

    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, tuple[str, Callable[[], bytes]]] = field(default_factory=dict)
    #: the boards the files were built from (what the site links each method from)
    boards: list[Board] = field(default_factory=list)

    def manifest(self) -> str:
        files = {p: "sha256:" + hashlib.sha256(t.encode()).hexdigest() for p, t in sorted(self.texts.items())}
        figs = {p: "data-sha256:" + d for p, (d, _) in sorted(self.figures.items())}
        return json.dumps({"files": files, "figures": figs}, indent=2) + "\n"


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def collect_boards(results: Path, reported: Path, allow_modified: bool = False) -> list[Board]:
    """Boards for every (dataset, protocol) with a measured run or a reported number, sorted.

    Entries whose tables differ from their digests are refused, or with `allow_modified` marked.
    """
    boards: dict[tuple[str, str], Board] = {}
    for entry in load_results(results, allow_modified):
        boards.setdefault(entry.board, Board(*entry.board)).entries.append(entry)
    rep = load_reported(reported)
    for key, part in rep.groupby(["dataset", "protocol"], sort=True):
        boards.setdefault(key, Board(*key)).reported = part.reset_index(drop=True)
    comparisons = load_comparisons(results)
    for c in comparisons:
        if not any(k[0] == c.dataset and {c.method, c.against} <= {e.name for e in b.entries}
                   for k, b in boards.items()):
            raise BenchError(f"{Path(results) / COMPARISONS}: no {c.dataset} page holds both {c.method!r} and "
                             f"{c.against!r}")
    for board in boards.values():
        board.check()
        board.comparisons = comparisons
    return [boards[k] for k in sorted(boards)]


def _board_files(board: Board, build: Build) -> None:
    slug = board.slug
    figures: list[str] = []
    examples: dict[str, tuple[str, str]] = {}
    if board.entries:
        from ..reporting.plots import FORMATS, STYLE, metric_plot, overlay_plot

        table = measured(board)
        written = table if table["seed_spread"].notna().any() else table.drop(columns="seed_spread")
        build.texts[f"{slug}/summary.csv"] = written.to_csv(index=False, float_format="%.10g")
        for fmt, suffix in (("latex", "tex"), ("markdown", "md")):
            build.texts[f"{slug}/table.{suffix}"] = paper_table(board, table, fmt)
        order = groups(table)
        methods = sorted(e.label for e in board.entries)
        for metric in board.plotted:
            part = table[table["metric"] == metric].sort_values(["method", "group"]).reset_index(drop=True)
            title = f"{board.dataset}, {board.protocol_name} protocol: {metric}"
            data = part[["method", "group", "mean", "ci_low", "ci_high"]].round(10).values.tolist()
            for fmt in FORMATS:
                build.figures[f"{slug}/{metric}.{fmt}"] = (
                    _digest("metric", STYLE, fmt, title, order, methods, data),
                    lambda p=part, m=metric, t=title, f=fmt: metric_plot(p, m, order, methods, t, f))
            figures.append(f"{slug}/{metric}.png")
        for e in sorted(board.entries, key=lambda e: e.name):
            if e.example is None:
                continue
            ex = read_example(e.example)
            title = f"{e.label}: {ex['phrase']}"
            raw = hashlib.sha256(e.example.read_bytes()).hexdigest()
            for fmt in FORMATS:
                build.figures[f"{slug}/example-{e.name}.{fmt}"] = (
                    _digest("overlay", STYLE, fmt, title, raw),
                    lambda x=ex, t=title, f=fmt: overlay_plot(x["image"], x["heatmap"], x["boxes"], t, f))
            path = f"{slug}/example-{e.name}.png"
            examples[e.label] = (path, f"sample `{ex['sample_id']}`, \"{ex['phrase']}\" (GT boxes in red)")
    build.texts[f"{slug}.md"] = board_page(board, figures, examples)


def paper_table(board: Board, table, fmt: str, group: str = "macro") -> str:
    """The board's headline metrics per method (best mean rank first) as a LaTeX or Markdown table."""
    from ..reporting.export import protocol_caption, summary_table

    methods = ranks(table, board.headline, group)["method"].tolist()
    n = int(table[(table["group"] == group)]["n"].max())
    caption = (f"{board.dataset}: {group} mean [{board.protocol.ci_level * 100:g}% CI] per method on up to {n} "
               f"samples under {protocol_caption(board.protocol)}; best value in bold.")
    return summary_table(table, board.protocol, group, fmt, methods, board.headline, caption)


def check_page(entries: list[Entry], results: Path) -> None:
    """Build in memory the page these entries make (what `bench leaderboard --add` checks before it copies)."""
    board = Board(*entries[0].board, entries=list(entries))
    board.comparisons = load_comparisons(results)
    board.check()
    _board_files(board, Build())


def build(results: Path, reported: Path, allow_modified: bool = False) -> Build:
    """Every file of the leaderboards folder, in memory (figures not yet drawn)."""
    boards = collect_boards(results, reported, allow_modified)
    out = Build(boards=boards)
    for board in boards:
        _board_files(board, out)
    out.texts[INDEX] = index_page(boards)
    entries = [e for b in boards for e in b.entries]
    out.texts[REPRODUCTION] = reproduction_page(load_reported(reported), entries, load_guide(reported))
    out.texts[MANIFEST] = out.manifest()
    return out


def _previous_files(out: Path) -> set[str]:
    path = out / MANIFEST
    if not path.is_file():
        return set()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return set()
    return set(data.get("files", {})) | set(data.get("figures", {})) | {MANIFEST}


def _previous_digests(out: Path) -> dict[str, str]:
    path = out / MANIFEST
    try:
        return json.loads(path.read_text()).get("figures", {}) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def write(result: Build, out: Path) -> int:
    """Write the build into `out`; figures are redrawn only when their data changed. Files of an
    earlier build that this one no longer has are removed. Returns the number of files written."""
    out = Path(out)
    old_files, old_digests = _previous_files(out), _previous_digests(out)
    written = 0
    for rel, (digest, render) in sorted(result.figures.items()):
        path = out / rel
        if path.is_file() and old_digests.get(rel) == "data-sha256:" + digest:
            continue
        atomic.write_bytes(path, render())
        written += 1
    for rel, text in sorted(result.texts.items()):
        path = out / rel
        if not path.is_file() or path.read_text() != text:
            atomic.write_text(path, text)
            written += 1
    keep = set(result.texts) | set(result.figures)
    for rel in sorted(old_files - keep):
        (out / rel).unlink(missing_ok=True)
        parent = (out / rel).parent
        if parent != out and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return written


def check(result: Build, out: Path, max_lines: int = 12) -> list[str]:
    """Differences between `out` and a fresh build, as readable lines (empty: up to date)."""
    out = Path(out)
    problems: list[str] = []
    expected = set(result.texts) | set(result.figures)
    for rel in sorted(result.texts):
        path = out / rel
        if not path.is_file():
            problems.append(f"missing: {rel}")
            continue
        have = path.read_text()
        if have != result.texts[rel]:
            diff = list(difflib.unified_diff(have.splitlines(), result.texts[rel].splitlines(),
                                             f"committed/{rel}", f"rebuilt/{rel}", n=0, lineterm=""))
            problems.append(f"differs: {rel}")
            problems += ["    " + line for line in diff[2:2 + max_lines]]
            if len(diff) > 2 + max_lines:
                problems.append(f"    ... {len(diff) - 2 - max_lines} more diff lines")
    for rel in sorted(result.figures):
        if not (out / rel).is_file():
            problems.append(f"missing figure: {rel}")
    if out.is_dir():
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            rel = path.relative_to(out).as_posix()
            if rel not in expected and not any(part.startswith(".") for part in Path(rel).parts):
                problems.append(f"not produced by the results: {rel}")
    return problems


def summary_line(problems: list[str]) -> str:
    files = sum(1 for p in problems if not p.startswith("    "))
    return (f"leaderboards are out of date ({files} file(s)); run `bench leaderboard` and commit "
            "leaderboards/ together with results/")
