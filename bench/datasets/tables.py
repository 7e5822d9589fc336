"""Reading the CSV files users give (box lists, annotation tables, reports) with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..core.errors import BenchError


def read_csv(csv: Path, **options: Any):
    """The CSV as a DataFrame of strings (pandas' `read_csv` with `options`); BenchError naming the
    file when it cannot be read or parsed."""
    import pandas as pd

    try:
        return pd.read_csv(csv, dtype=str, keep_default_na=False, **options)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BenchError(f"cannot read {csv}: {reason}") from None


def require_columns(table, csv: Path, columns: Sequence[str], hint: str = "") -> None:
    """BenchError naming the file and the first of `columns` the table lacks (`hint` says what it should hold)."""
    for col in columns:
        if col not in table.columns:
            raise BenchError(f"{csv}: missing column {col!r}{f' ({hint})' if hint else ''}")
