"""Split manifests of reported numbers: a row scored on a paper's own subset names it, and the manifest
is checked (inside the folder, sha256, count, distinct ids) whenever the tables are read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from test_reported import GOOD, write_rows

from bench.core.errors import BenchError
from bench.reporting.reported import known_metric, load_reported, read_reported_file

REPO = Path(__file__).resolve().parents[1]
IDS = "a-00000001\nb-00000002\n"
ROW = {**GOOD, "metric": "acc@0.5", "printed": "69.86", "value": "0.6986", "spread_kind": "none", "spread": "",
       "category": "micro", "protocol": "default", "split": "mine"}


def _folder(tmp_path: Path, entry: str, ids: str = IDS) -> Path:
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "mine.txt").write_text(ids)
    (tmp_path / "splits.toml").write_text(entry)
    return tmp_path


def _entry(sha: str | None = None, samples: int = 2, dataset: str = "ms-cxr") -> str:
    sha = sha or hashlib.sha256(IDS.encode()).hexdigest()
    return (f'[mine]\ndataset = "{dataset}"\nwhat = "a subset"\nsource = "somewhere"\nfile = "splits/mine.txt"\n'
            f'sha256 = "{sha}"\nsamples = {samples}\n')


def test_box_metrics_are_reportable() -> None:
    assert all(known_metric(m) for m in ("acc@0.5", "top1_iou_best", "top1_iou_union", "ap@0.5", "pooled_iou"))


def test_a_row_on_a_declared_split_is_read(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _entry())
    table = read_reported_file(write_rows(folder / "paper.csv", [ROW]))
    assert table.loc[0, "split"] == "mine" and table.loc[0, "value"] == 0.6986


@pytest.mark.parametrize("entry, message", [
    (_entry(sha="0" * 64), "has sha256"),
    (_entry(samples=3), "holds 2 sample ids, the entry says 3"),
    (_entry().replace('file = "splits/mine.txt"', 'file = "../mine.txt"'), "is not inside"),
    ('[mine]\ndataset = "ms-cxr"\nwhat = "a subset"\nsource = "somewhere"\n', "or why its sample ids cannot be known"),
    (_entry(dataset="nope"), "unknown dataset 'nope'"),
])
def test_a_bad_manifest_entry_is_one_line(tmp_path: Path, entry: str, message: str) -> None:
    folder = _folder(tmp_path, entry)
    with pytest.raises(BenchError, match=message) as err:
        read_reported_file(write_rows(folder / "paper.csv", [ROW]))
    assert "\n" not in str(err.value)


def test_repeated_ids_are_refused(tmp_path: Path) -> None:
    ids = "a\na\n"
    folder = _folder(tmp_path, _entry(sha=hashlib.sha256(ids.encode()).hexdigest()), ids)
    with pytest.raises(BenchError, match="one distinct sample id a line"):
        read_reported_file(write_rows(folder / "paper.csv", [ROW]))


def test_an_unknown_split_or_another_dataset_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _entry(dataset="chestx-ray14"))
    with pytest.raises(BenchError, match="split 'mine' is of chestx-ray14, the row of ms-cxr"):
        read_reported_file(write_rows(folder / "paper.csv", [ROW]))
    with pytest.raises(BenchError, match="unknown split 'other'"):
        read_reported_file(write_rows(folder / "paper.csv", [{**ROW, "split": "other"}]))


def test_an_unknowable_split_is_declared_with_why(tmp_path: Path) -> None:
    folder = _folder(tmp_path, '[mine]\ndataset = "ms-cxr"\nwhat = "a subset"\nsource = "s"\nwhy = "not published"\n')
    assert read_reported_file(write_rows(folder / "paper.csv", [ROW])).loc[0, "split"] == "mine"


def test_committed_medrpg_rows_name_their_manifest() -> None:
    table = load_reported(REPO / "reported")
    medrpg = table[table["split"] == "medrpg_ms_cxr_test"]
    assert len(medrpg) == 14
    ours = medrpg[medrpg["method_reported"] == "Ours (MedRPG)"].set_index("metric")["value"]
    assert ours.to_dict() == {"acc@0.5": 0.6986, "top1_iou_best": 0.5937}
    ids = (REPO / "reported" / "splits" / "medrpg_ms_cxr_test.txt").read_text().splitlines()
    assert len(ids) == 167 and ids == sorted(ids)
