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


# cells read off the papers by hand: (file, table, method as printed, category, metric) -> (printed, value, ci)
CELLS = [
    ("vilouras2024", "Table I", "BioViL-T", "pneumonia", "miou", "29.0", 0.29, None),
    ("vilouras2024", "Table I", "Ours", "pneumothorax", "cnr", "-0.07", -0.07, None),
    ("vilouras2024", "Table I", "Ours", "pneumothorax", "cnr_abs", "0.46", 0.46, None),
    ("vilouras2024", "Table I", "BioViL", "macro", "auc_roc_binned", "72.2", 0.722, None),
    ("vilouras2024", "Table II", "L=6, T=20, Otsu", "macro", "miou", "20.2", 0.202, None),
    ("vilouras2025", "Table 1", "LDM (ours)", "atelectasis", "miou", "32.7 [28.8, 36.5]", 0.327, (0.288, 0.365)),
    ("vilouras2025", "Table 1", "LDM (frozen)", "pneumothorax", "cnr", "-0.07 [-0.16, 0.03]", -0.07, (-0.16, 0.03)),
    ("vilouras2025", "Table 2", "BioViL-T", "pneumothorax", "cnr", "1.44 [1.06, 1.72]", 1.44, (1.06, 1.72)),
    ("vilouras2025", "Table 2", "LDM (ours)", "macro", "miou", "20.5", 0.205, None),
    ("vilouras2025", "Table 3", "MAIRA-2@ms-cxr-loc", "lung opacity", "miou", "32.2 [32.2, 41.4]", 0.322, (0.322, 0.414)),
    ("vilouras2025", "Table 4", "Oracle Gaussian@ms-cxr-loc", "macro", "miou", "67.6", 0.676, None),
]


@pytest.mark.parametrize("paper, table, method, category, metric, printed, value, interval", CELLS)
def test_committed_cells_match_the_papers(paper, table, method, category, metric, printed, value, interval) -> None:
    rows = read_reported_file(REPO / "reported" / f"{paper}.csv")
    method, _, dataset = method.partition("@")  # `@dataset` where a table prints the method on two datasets
    if dataset:
        rows = rows[rows["dataset"] == dataset]
    hit = rows[(rows["table"] == table) & (rows["method_reported"] == method) & (rows["category"] == category)
               & (rows["metric"] == metric)]
    assert len(hit) == 1
    r = hit.iloc[0]
    assert (r["printed"], r["value"]) == (printed, pytest.approx(value))
    if interval:
        assert (r["spread_kind"], r["ci_low"], r["ci_high"]) == ("bootstrap_ci", *map(pytest.approx, interval))


def test_committed_tables_have_every_printed_cell() -> None:
    v24 = read_reported_file(REPO / "reported" / "vilouras2024.csv")
    # Table I: 3 methods x 4 metrics + 2 box models x mIoU, 9 columns; Table II: 5 setups x 2 metrics x 9
    assert v24.groupby("table").size().to_dict() == {"Table I": 126, "Table II": 90}
    assert set(v24.loc[v24["headline"] == "yes", "table"]) == {"Table I"}
    v25 = read_reported_file(REPO / "reported" / "vilouras2025.csv")
    # Tables 1-2: 4 methods x 2 metrics x (8 or 7 classes + average); Table 3: 9 + 8 (no VinDr edema)
    assert v25.groupby("table").size().to_dict() == {"Table 1": 72, "Table 2": 64, "Table 3": 17, "Table 4": 4,
                                                     "Table 5": 6, "Figure 5": 2}
    assert set(v25.loc[v25["headline"] == "yes", "table"]) == {"Table 1", "Table 2"}
    assert "edema" not in set(v25.loc[v25["dataset"] == "vindr-cxr", "category"])
