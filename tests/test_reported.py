"""The published-numbers files: the committed folder loads, and bad rows fail with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.core.errors import BenchError
from bench.reporting.reported import COLUMNS, known_metric, load_reported, read_reported_file

REPO = Path(__file__).resolve().parents[1]
GOOD = {
    "paper": "Example et al. 2099", "table": "Table 1", "dataset": "ms-cxr", "protocol": "vilouras2024",
    "method_reported": "BioViL-T", "method": "biovil_t", "category": "lung opacity", "metric": "miou",
    "value": "0.25", "printed": "25.0 ± 12.5", "spread_kind": "std_over_samples", "spread": "0.125", "ci_low": "",
    "ci_high": "", "source": "arXiv:2404.12920, Table I", "note": "", "headline": "",
}


def write_rows(path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> Path:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})
    return path


def test_committed_reported_folder_loads_and_documents_every_paper_protocol() -> None:
    table = load_reported(REPO / "reported")
    assert list(table.columns) == COLUMNS
    assert all(src.startswith(("arXiv:", "doi:", "DOI:")) for src in table["source"])
    readme = (REPO / "reported" / "README.md").read_text()
    for protocol in ("vilouras2024", "vilouras2025", "nutzel2025", "dombrowski2024"):
        assert f"`{protocol}`" in readme, protocol


def test_a_valid_row_is_read_with_numbers(tmp_path: Path) -> None:
    rows = [GOOD, {**GOOD, "metric": "iou@0.3", "printed": "0.25 [0.1, 0.4]", "spread_kind": "bootstrap_ci",
                   "spread": "", "ci_low": "0.1", "ci_high": "0.4", "method": "", "category": "macro"},
            {**GOOD, "protocol": "dombrowski2024_filtered", "table": "Table 7", "metric": "miou_fgbg"}]
    table = read_reported_file(write_rows(tmp_path / "paper.csv", rows))
    assert table["value"].tolist() == [0.25, 0.25, 0.25]
    assert table["protocol"].tolist() == ["vilouras2024", "vilouras2024", "dombrowski2024_filtered"]
    assert table.loc[0, "spread"] == 0.125
    assert (table.loc[1, "ci_low"], table.loc[1, "ci_high"]) == (0.1, 0.4)
    assert table.loc[1, "method"] == ""


@pytest.mark.parametrize("field, value, message", [
    ("protocol", "vilouras", "unknown protocol 'vilouras'"),
    ("metric", "mIoU", "unknown metric 'mIoU'"),
    ("category", "pneumonia ", "unknown category 'pneumonia '"),
    ("method", "biovil-t", "unknown method 'biovil-t'"),
    ("spread_kind", "std", "unknown spread_kind 'std'"),
    ("value", "12.5%", "value '12.5%' is not a number"),
    ("spread", "", "spread_kind std_over_samples needs a number in spread"),
    ("source", "https://arxiv.org/abs/2404.12920", "source 'https://arxiv.org/abs/2404.12920' is not a citation"),
    ("source", "arXiv:2404.12920", "source 'arXiv:2404.12920' is not a citation"),
    ("printed", "", "empty printed"),
    ("printed", "25.0 (bold)", "printed '25.0 (bold)' is not a number"),
    ("printed", "25.1 ± 12.5", "value 0.25 does not match printed '25.1 ± 12.5'"),
    ("printed", "2.5 ± 1.25", "value 0.25 does not match printed '2.5 ± 1.25'"),
    ("printed", "25.0 ± 12.4", "spread 0.125 does not match printed '25.0 ± 12.4'"),
    ("printed", "25.0 [10.0, 40.0]", "printed '25.0 [10.0, 40.0]' has an interval but spread_kind is std_over_samples"),
    ("headline", "no", "headline 'no' must be 'yes' or empty"),
])
def test_a_bad_field_names_file_line_and_field(tmp_path: Path, field: str, value: str, message: str) -> None:
    path = write_rows(tmp_path / "paper.csv", [GOOD, {**GOOD, field: value}])
    with pytest.raises(BenchError) as info:
        load_reported(tmp_path)
    assert str(info.value).startswith(f"{path}, line 3: {message}")


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "paper.csv", [GOOD], [c for c in COLUMNS if c != "spread_kind"])
    with pytest.raises(BenchError, match="missing column 'spread_kind'"):
        read_reported_file(path)
    with pytest.raises(BenchError, match=f"^{path}: missing column"):
        load_reported(tmp_path)


@pytest.mark.parametrize("metric, printed, value, ok", [
    ("cnr", "1.56", "1.56", True),
    ("cnr", "\u22120.07", "-0.07", True),          # a typeset minus sign
    ("cnr", "156", "1.56", False),                 # CNR has no percent scale
    ("auc_roc_binned", "76.5", "0.765", True),     # percent
    ("auc_roc_binned", "0.765", "0.765", True),    # fraction as printed
    ("auc_roc_binned", "76.5%", "0.765", True),
    ("miou", "7.65", "0.765", False),              # only x1 and x100
    ("iou@0.3", "30", "0.3", True),
])
def test_printed_reads_as_value_up_to_percent(tmp_path: Path, metric: str, printed: str, value: str, ok: bool) -> None:
    row = {**GOOD, "metric": metric, "printed": printed, "value": value, "spread_kind": "none", "spread": ""}
    path = write_rows(tmp_path / "paper.csv", [row])
    if ok:
        assert read_reported_file(path)["value"].tolist() == [float(value)]
    else:
        with pytest.raises(BenchError, match=f"^{path}, line 2: value {value} does not match printed"):
            read_reported_file(path)


def test_a_printed_interval_must_match_the_row_bounds(tmp_path: Path) -> None:
    row = {**GOOD, "printed": "1.57 [1.43, 1.71]", "metric": "cnr", "value": "1.57", "spread_kind": "bootstrap_ci",
           "spread": "", "ci_low": "1.43", "ci_high": "1.71"}
    assert read_reported_file(write_rows(tmp_path / "a.csv", [row]))["ci_high"].tolist() == [1.71]
    path = write_rows(tmp_path / "b.csv", [{**row, "ci_high": "1.7"}])
    with pytest.raises(BenchError, match=r"line 2: ci_high 1.7 does not match printed '1.57 \[1.43, 1.71\]'"):
        read_reported_file(path)


def test_the_headline_column_may_be_left_out(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "paper.csv", [GOOD], [c for c in COLUMNS if c != "headline"])
    assert read_reported_file(path)["headline"].tolist() == [""]


def test_metric_names_follow_the_samples_table() -> None:
    assert [known_metric(m) for m in ("cnr_abs", "miou_fgbg", "iou@0.5", "iou@1", "iou", "iou@", "mIoU")] == \
        [True, True, True, True, False, False, False]


def test_no_folder_is_an_empty_table(tmp_path: Path) -> None:
    assert load_reported(tmp_path / "absent").empty
