"""Tables for papers: LaTeX (booktabs) and Markdown, with mean [95% CI] cells and the best value
marked, and the protocol's name and fingerprint in the caption, so a table says exactly what was
measured. `bench compare --format` and the leaderboard's `table.tex` / `table.md` are made here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from ..core.errors import BenchError
from ..evaluation.protocols import LOWER_IS_BETTER, Protocol
from .report import UNDEFINED, format_ci, headline_metrics

FORMATS = ("latex", "markdown")
_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


@dataclass(frozen=True)
class Cell:
    """One table cell: a mean with its interval, marked when it is the best of its column."""

    mean: float
    low: float
    high: float
    best: bool = False
    significant: bool = False  # paired difference against the reference row excludes zero

    def text(self) -> str:
        return format_ci(self.mean, self.low, self.high)


def latex_escape(text: str) -> str:
    """`text` with LaTeX's special characters escaped."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def mark_best(values: Sequence[float], metric: str) -> list[bool]:
    """Which entries hold the best value as printed (3 decimals): highest, or lowest for `distance`."""
    shown = [round(v, 3) if v == v else None for v in values]
    present = [v for v in shown if v is not None]
    if not present:
        return [False] * len(values)
    best = min(present) if metric in LOWER_IS_BETTER else max(present)
    return [v == best for v in shown]


def render(rows: Sequence[tuple[str, Sequence[Cell | None]]], metrics: Sequence[str], caption: str, fmt: str,
           label: str = "method", table_label: str = "") -> str:
    """The table in `fmt` ("latex" or "markdown"); a None cell is shown as a dash."""
    if fmt == "latex":
        return _latex(rows, metrics, caption, label, table_label)
    if fmt == "markdown":
        return _markdown(rows, metrics, caption, label)
    raise BenchError(f"--format {fmt!r}: choose {', '.join(FORMATS)}")


def _latex(rows, metrics, caption: str, label: str, table_label: str) -> str:
    def cell(c: Cell | None) -> str:
        if c is None:
            return "--"
        text = c.text().replace("n<2", "$n<2$").replace(UNDEFINED, "---") + (r"$^\dagger$" if c.significant else "")
        return rf"\textbf{{{text}}}" if c.best else text

    lines = [r"% requires \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
             rf"\caption{{{latex_escape(caption)}}}"]
    if table_label:
        lines.append(rf"\label{{{table_label}}}")
    lines += [r"\begin{tabular}{l" + "r" * len(metrics) + "}", r"\toprule",
              " & ".join([latex_escape(label), *(latex_escape(m) for m in metrics)]) + r" \\", r"\midrule"]
    for name, cells in rows:
        lines.append(" & ".join([latex_escape(name), *(cell(c) for c in cells)]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _markdown(rows, metrics, caption: str, label: str) -> str:
    def cell(c: Cell | None) -> str:
        if c is None:
            return "-"
        text = c.text() + (" †" if c.significant else "")
        return f"**{text}**" if c.best else text

    def escape(text: str) -> str:
        return str(text).replace("|", "\\|")

    lines = ["| " + " | ".join([escape(label), *(escape(m) for m in metrics)]) + " |",
             "| --- |" + " ---: |" * len(metrics)]
    for name, cells in rows:
        lines.append("| " + " | ".join([escape(name), *(cell(c) for c in cells)]) + " |")
    return "\n".join(lines) + f"\n\nTable: {caption}\n"


def _ci_name(protocol: Protocol) -> str:
    return f"{protocol.ci_level * 100:g}% CI"


def protocol_caption(protocol: Protocol) -> str:
    """How the caption names the protocol: its name and fingerprint."""
    return f"protocol {protocol.name} (fingerprint {protocol.fingerprint()})"


def comparison_table(summaries: pd.DataFrame, differences: pd.DataFrame, protocol: Protocol, group: str,
                     fmt: str, metrics: Sequence[str] | None = None, caption: str | None = None) -> str:
    """`bench compare` as a table: one row per run, `group` mean [CI] per metric, the best value in
    bold, a dagger where the paired bootstrap difference against the first run excludes zero."""
    metrics = list(metrics) if metrics else headline_metrics(protocol.columns)
    agg = summaries[summaries["group"] == group]
    runs = list(dict.fromkeys(summaries["run"]))
    found = {(r, m): row for r, m, row in zip(agg["run"], agg["metric"], agg.itertuples())}
    missing = [m for m in metrics if not any((r, m) in found for r in runs)]
    if missing:
        raise BenchError(f"unknown metric {missing[0]!r} (known: {', '.join(protocol.columns)})")
    significant = {(d.run, d.metric) for d in differences.itertuples()
                   if (d.ci_low > 0 or d.ci_high < 0)} if len(differences) else set()
    columns = {m: mark_best([found[(r, m)].mean if (r, m) in found else float("nan") for r in runs], m)
               for m in metrics}
    rows = []
    for i, r in enumerate(runs):
        cells = []
        for m in metrics:
            row = found.get((r, m))
            cells.append(None if row is None else Cell(row.mean, row.ci_low, row.ci_high, columns[m][i],
                                                        (r, m) in significant))
        rows.append((r, cells))
    if caption is None:
        n = int(differences["n"].iloc[0]) if len(differences) else int(agg["n"].max())
        caption = (f"{group} mean [{_ci_name(protocol)}] on {n} common samples under {protocol_caption(protocol)}; "
                   f"best value in bold; a dagger marks a paired bootstrap {_ci_name(protocol)} of the difference "
                   f"from {runs[0]} that excludes zero.")
    return render(rows, metrics, caption, fmt, "run")


def summary_table(table: pd.DataFrame, protocol: Protocol, group: str, fmt: str, methods: Sequence[str],
                  metrics: Sequence[str], caption: str) -> str:
    """Per-method `group` mean [CI] of a long table (method, group, metric, mean, ci_low, ci_high), best in bold."""
    agg = table[table["group"] == group]
    found = {(r.method, r.metric): r for r in agg.itertuples()}
    columns = {m: mark_best([found[(k, m)].mean if (k, m) in found else float("nan") for k in methods], m)
               for m in metrics}
    rows = []
    for i, k in enumerate(methods):
        cells = [None if (k, m) not in found else
                 Cell(found[(k, m)].mean, found[(k, m)].ci_low, found[(k, m)].ci_high, columns[m][i])
                 for m in metrics]
        rows.append((k, cells))
    return render(rows, metrics, caption, fmt)


__all__ = ["FORMATS", "Cell", "comparison_table", "latex_escape", "mark_best", "protocol_caption", "render",
           "summary_table"]
