"""A table as plain rows: what a run writes (samples.csv, summary.csv) without importing pandas.

A whole `bench score` process under a cheap protocol spends a few milliseconds per sample; importing
pandas costs more than a hundred samples. `Rows` holds the columns and rows a run computes and writes
them as CSV text equal byte for byte to pandas' `DataFrame.to_csv(index=False, float_format="%.10g")`
of the same rows, the format run folders always had; `to_frame()` gives the DataFrame where one is needed.

Column types follow pandas' inference from the values: a column of integers is written as integers;
a column of numbers with any float or missing value is a float column (every value through `%.10g`,
missing values empty); any other column is written as text (`str`), missing values empty.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:
    import pandas as pd

FLOAT_FORMAT = "%.10g"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral)
                             and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)  # NumPy's bool_ is no Real


def _formatter(values: Sequence[Any]) -> Callable[[Any], str]:
    """How pandas writes one column of these values (see the module docstring)."""
    present = [v for v in values if not _missing(v)]
    if present and all(_is_number(v) for v in present):
        if len(present) == len(values) and all(isinstance(v, numbers.Integral) for v in present):
            return lambda v: str(int(v))
        return lambda v: "" if _missing(v) else FLOAT_FORMAT % float(v)
    return lambda v: "" if _missing(v) else str(v)


@dataclass
class Rows:
    """Named columns and one tuple per row."""

    columns: list[str]
    rows: list[tuple]

    @classmethod
    def of_dicts(cls, records: Sequence[dict], columns: Sequence[str]) -> "Rows":
        """Rows of dicts keyed by column name (a missing key is a missing value, as pandas reads it)."""
        return cls(list(columns), [tuple(r.get(c) for c in columns) for r in records])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def empty(self) -> bool:
        return not self.rows

    def column(self, name: str) -> list:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def to_dict(self, orient: str = "records") -> list[dict]:
        """One dict per row (only `orient="records"`, the one the report reads, as DataFrame.to_dict gives it)."""
        if orient != "records":
            raise ValueError(f"orient {orient!r}: only 'records'")
        return [dict(zip(self.columns, r)) for r in self.rows]

    def to_csv(self) -> str:
        """The CSV text pandas writes for these rows with `index=False, float_format="%.10g"`."""
        formats = [_formatter([r[i] for r in self.rows]) for i in range(len(self.columns))]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([f(v) for f, v in zip(formats, r)] for r in self.rows)
        return out.getvalue()

    def to_frame(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame([dict(zip(self.columns, r)) for r in self.rows], columns=self.columns)


def as_frame(table: "Rows | pd.DataFrame") -> "pd.DataFrame":
    """A DataFrame of `table` (itself when it is one)."""
    return table.to_frame() if isinstance(table, Rows) else table
