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
    "value": "0.25", "spread_kind": "std_over_samples", "spread": "0.125", "ci_low": "", "ci_high": "",
    "source_url": "https://example.org/paper", "note": "",
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
    assert all(url.startswith("https://") for url in table["source_url"])
    readme = (REPO / "reported" / "README.md").read_text()
    for protocol in ("vilouras2024", "vilouras2025", "nutzel2025", "dombrowski2024"):
        assert f"`{protocol}`" in readme, protocol


def test_a_valid_row_is_read_with_numbers(tmp_path: Path) -> None:
    rows = [GOOD, {**GOOD, "metric": "iou@0.3", "spread_kind": "bootstrap_ci", "spread": "", "ci_low": "0.1",
                   "ci_high": "0.4", "method": "", "category": "macro"},
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
    ("source_url", "arxiv 2404.12920", "source_url must be an http(s) address"),
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


def test_metric_names_follow_the_samples_table() -> None:
    assert [known_metric(m) for m in ("cnr_abs", "miou_fgbg", "iou@0.5", "iou@1", "iou", "iou@", "mIoU")] == \
        [True, True, True, True, False, False, False]


def test_no_folder_is_an_empty_table(tmp_path: Path) -> None:
    assert load_reported(tmp_path / "absent").empty
