"""Tables as plain rows: the CSV text pandas writes, and the summary the DataFrame route gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from bench.core.rows import Rows, as_frame
from bench.evaluation.protocols import load_protocol
from bench.running.rundir import RunDir
from bench.running.runner import summary_table


def _pandas_csv(rows: Rows) -> str:
    """What a run folder held before: pandas' CSV of the same rows."""
    return pd.DataFrame([dict(zip(rows.columns, r)) for r in rows.rows], columns=rows.columns).to_csv(
        index=False, float_format="%.10g")


EDGE = Rows(
    ["text", "ints", "ints_missing", "floats", "whole_floats", "f32", "missing", "flags", "mixed", "big", "odd"],
    [("a", 1, 3, 1.5, 2.0, np.float32(0.1), None, True, "s", 12345678901234, -0.0),
     ('b,"q"', np.int64(2), None, float("nan"), 3, np.float32(0.2), None, False, 0.123456789012345, 1e20,
      float("inf")),
     ("line\nbreak", 3, 4, 1 / 3, 1e-7, np.float32(np.nan), None, True, None, 7, -np.inf)])


def test_rows_write_the_csv_pandas_writes() -> None:
    text = EDGE.to_csv()
    assert text == _pandas_csv(EDGE)
    # written out by hand: integers stay integers, a float column goes through %.10g, missing values are empty
    assert text.splitlines()[1] == "a,1,3,1.5,2,0.1000000015,,True,s,1.23456789e+13,-0"
    assert Rows(["a", "b"], []).to_csv() == _pandas_csv(Rows(["a", "b"], [])) == "a,b\n"


def test_rows_as_a_frame_and_as_records() -> None:
    frame = as_frame(EDGE)
    assert list(frame.columns) == EDGE.columns and frame["ints"].tolist() == [1, 2, 3]
    assert as_frame(frame) is frame
    assert EDGE.to_dict("records")[0]["floats"] == 1.5 and EDGE.column("text")[1] == 'b,"q"'
    assert len(EDGE) == 3 and not EDGE.empty and Rows(["a"], []).empty


def _samples(protocol, n: int = 23) -> Rows:
    """A samples table in shuffled id order, two categories, a metric undefined on some samples."""
    rng = np.random.default_rng(3)
    rows = []
    for k in rng.permutation(n):
        values = {m: float(rng.random()) for m in protocol.columns}
        if k % 5 == 0:
            values[protocol.columns[0]] = None
        rows.append({"sample_id": f"s{k:03d}", "category": "edema" if k % 3 else "mass", "phrase": "p",
                     "split": "test", "width": 10, "height": 10, "boxes": "[]", "scored_boxes": "[]", **values})
    return Rows.of_dicts(rows, ["sample_id", "category", "phrase", "split", "width", "height", "boxes",
                                "scored_boxes", *protocol.columns])


@pytest.mark.parametrize("name", ["default", "vilouras2024", "nutzel2025"])
def test_summary_of_rows_equals_the_dataframe_summary(tmp_path, name: str) -> None:
    protocol = dataclasses.replace(load_protocol(name), bootstrap_resamples=300)
    table = _samples(protocol)
    light = summary_table(table, protocol)
    frame = summary_table(table.to_frame(), protocol)
    assert isinstance(light, Rows) and isinstance(frame, pd.DataFrame)
    pd.testing.assert_frame_equal(light.to_frame(), frame, check_exact=True)
    run = RunDir(tmp_path)
    run.write_table(tmp_path / "light.csv", light)
    run.write_table(tmp_path / "frame.csv", frame)
    assert (tmp_path / "light.csv").read_bytes() == (tmp_path / "frame.csv").read_bytes()
    # the first metric is missing on ids 0, 5, 10, 15, 20: edema (k % 3 != 0) keeps 12 of 15, mass 6 of 8
    n = {(r["group"], r["metric"]): r["n"] for r in light.to_dict("records")}
    first, second = protocol.columns[:2]
    assert (n[("edema", first)], n[("mass", first)], n[("edema", second)], n[("mass", second)]) == (12, 6, 15, 8)


def test_summaries_that_need_a_dataframe_take_it() -> None:
    protocol = dataclasses.replace(load_protocol("boxes"), bootstrap_resamples=50)  # pooled IoU
    table = _samples(protocol)
    if set(protocol.support_columns) - set(table.columns):
        table = Rows(table.columns + list(protocol.support_columns),
                     [r + (1.0,) * len(protocol.support_columns) for r in table.rows])
    assert isinstance(summary_table(table, protocol), pd.DataFrame)
