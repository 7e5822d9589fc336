"""Terminal tables of summaries and comparisons."""

from __future__ import annotations

import shutil
import sys
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from ..core.rows import Rows

#: `miou_fgbg` is the "mIoU" of Nützel et al. and Dombrowski et al.: a different metric, shown under its own name
HEADLINE = ("miou", "miou_fgbg", "cnr", "auc_roc", "pointing_game")


def headline_metrics(columns: Sequence[str]) -> list[str]:
    """The metrics shown in terminal tables: the headline ones the protocol has."""
    picked = [m for m in HEADLINE if m in columns]
    return picked or list(columns)[:4]


NO_CI = "no CI, n<2"


#: what a table shows for a mean no sample defines (a region metric on points-only ground truth)
UNDEFINED = "—"


def format_ci(mean: float, low: float, high: float) -> str:
    """'mean [low, high]'; where a category has fewer than two samples there are no bounds to show, and where
    no sample has a value (the mean is NaN) a dash alone."""
    if np.isnan(mean):
        return UNDEFINED
    if np.isfinite(mean) and not (np.isfinite(low) and np.isfinite(high)):
        return f"{mean:.3f} [{NO_CI}]"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def format_p(p: float) -> str:
    """' p=0.0123' after a difference; nothing where there is no test (a category under two samples)."""
    return f" p={p:.4f}" if np.isfinite(p) else ""


def summary_rows(summary: Rows | pd.DataFrame, metrics: Sequence[str]) -> list[list[str]]:
    """One row per category, then the aggregate groups: group, n, then 'mean [low, high]' per metric."""
    by_group: dict[str, dict[str, dict]] = {}
    for record in summary.to_dict("records"):
        by_group.setdefault(record["group"], {})[record["metric"]] = record
    cats = [g for g in by_group if g not in ("macro", "micro", "weighted")]
    aggs = [g for g in ("macro", "micro", "weighted") if g in by_group]
    rows = []
    for group in cats + aggs:
        part = by_group[group]
        rows.append([group, str(int(max(r["n"] for r in part.values())))] +
                    [format_ci(part[m]["mean"], part[m]["ci_low"], part[m]["ci_high"]) for m in metrics])
    return rows


def _terminal_width() -> int | None:
    """Columns of the terminal stdout is on; None when stdout is a file or a pipe."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size().columns


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], separator_before: int | None = None,
                wrap_last: bool = False) -> None:
    """Print a table to stdout with rich; `wrap_last` lets a long last column (descriptions) wrap."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # every text is literal: "[random weights]" or "[95% CI]" must not be read as rich markup and dropped
    table = Table(title=escape(title), title_justify="left")
    for i, h in enumerate(header):
        last = i == len(header) - 1
        table.add_column(escape(str(h)), justify="left" if i == 0 or (last and wrap_last) else "right",
                         no_wrap=not (last and wrap_last))
    for i, row in enumerate(rows):
        table.add_row(*(escape(str(c)) for c in row), end_section=separator_before is not None and i == separator_before - 1)
    widths = [max([len(str(h)), *(len(str(r[i])) for r in rows)]) for i, h in enumerate(header)]
    wide = 3 * len(header) + 1 + sum(widths[:-1]) + (min(widths[-1], 60) if wrap_last else widths[-1])
    # on a terminal the table fits its width (rich wraps cells); in a file or pipe it keeps its natural width
    Console(width=_terminal_width() or max(wide, len(title))).print(table)


def print_summary(title: str, summary: Rows | pd.DataFrame, columns: Sequence[str]) -> None:
    metrics = headline_metrics(columns)
    rows = summary_rows(summary, metrics)
    n_cats = sum(1 for r in rows if r[0] not in ("macro", "micro", "weighted"))
    print_table(title, ["category", "n", *[f"{m} [95% CI]" for m in metrics]], rows, separator_before=n_cats)
