"""Bad input: one readable line, a non-zero exit, nothing half-written; --skip-bad records and goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from PIL import Image

HEADER = ["dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height"]


def _tree(root: Path, rows: list[list], drop: str | None = None) -> Path:
    """A small MS-CXR tree in the official schema (v1.0.0 CSV + JPEGs under files/)."""
    for r in rows:
        p = root / r[3]
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.new("L", (r[8], r[9]), 90).save(p)
    table = pd.DataFrame(rows, columns=HEADER)
    if drop:
        table = table.drop(columns=[drop])
    table.to_csv(root / "MS_CXR_Local_Alignment_v1.0.0.csv", index=False)
    return root


def _rows(bad_box: tuple[int, int, int, int] | None = None) -> list[list]:
    rows = [
        ["d1", "Pneumonia", "right lower lobe pneumonia", "files/p10/p1/s1/d1.jpg", 40, 120, 60, 50, 300, 360],
        ["d1", "Pneumonia", "right lower lobe pneumonia", "files/p10/p1/s1/d1.jpg", 200, 100, 40, 30, 300, 360],
        ["d1", "Pleural Effusion", "small left effusion", "files/p10/p1/s1/d1.jpg", 190, 250, 70, 40, 300, 360],
        ["d2", "Cardiomegaly", "cardiomegaly", "files/p10/p2/s2/d2.jpg", 100, 150, 150, 100, 320, 300],
    ]
    if bad_box:
        rows.append(["d3", "Edema", "mild edema", "files/p10/p3/s3/d3.jpg", *bad_box, 300, 300])
    return rows


def test_ms_cxr_grouping_on_fake_tree(bench_cli, tmp_path: Path) -> None:
    root = _tree(tmp_path / "mimic", _rows())
    r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", tmp_path / "r")
    assert r.code == 0, r.err
    s = pd.read_csv(tmp_path / "r" / "samples.csv")
    assert len(s) == 3  # (d1, pneumonia phrase) has two boxes united
    two = s[s["phrase"] == "right lower lobe pneumonia"].iloc[0]
    assert json.loads(two["boxes"]) == [[40, 120, 60, 50], [200, 100, 40, 30]]
    assert set(s["category"]) == {"pneumonia", "pleural effusion", "cardiomegaly"}


def _one_line_error(r, *words: str) -> None:
    assert r.code == 2
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.err
    assert "Traceback" not in r.err
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_column(bench_cli, tmp_path: Path) -> None:
    root = _tree(tmp_path / "mimic", _rows(), drop="label_text")
    r = bench_cli("run", "--method", "uniform", "--dataset", "ms-cxr", "--data-root", root, "--out", tmp_path / "r")
    _one_line_error(r, "MS_CXR_Local_Alignment_v1.0.0.csv", "label_text")
    assert not (tmp_path / "r").exists()


def test_zero_area_and_outside_boxes(bench_cli, tmp_path: Path) -> None:
    for box, words in (((10, 10, 0, 20), "zero or negative area"), ((400, 10, 20, 20), "outside the 300x300 image")):
        root = _tree(tmp_path / f"m{box[2]}{box[0]}", _rows(box))
        out = tmp_path / f"r{box[2]}{box[0]}"
        r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", out)
        _one_line_error(r, "d3-", words, "--skip-bad")
        assert not out.exists()
        r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "ms-cxr", "--data-root", root, "--out", out,
                      "--skip-bad")
        assert r.code == 0, r.err
        run = json.loads((out / "run.json").read_text())
        assert len(run["skipped"]) == 1 and run["skipped"][0]["sample_id"].startswith("d3-")
        assert words in run["skipped"][0]["reason"]
        assert len(pd.read_csv(out / "samples.csv")) == 3


def test_missing_data_root(bench_cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BENCH_MS_CXR_ROOT", raising=False)
    r = bench_cli("run", "--method", "uniform", "--dataset", "ms-cxr", "--out", tmp_path / "r")
    _one_line_error(r, "--data-root")
    r = bench_cli("run", "--method", "uniform", "--dataset", "ms-cxr", "--data-root", tmp_path, "--out", tmp_path / "r")
    _one_line_error(r, "MS_CXR_Local_Alignment")


def test_unreadable_image_is_a_sample_error(tmp_path: Path) -> None:
    from bench.core.errors import SampleError
    from bench.datasets.images import read_grayscale

    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    for path, words in ((bad, "cannot read image"), (tmp_path / "none.png", "image not found")):
        try:
            read_grayscale(path, "s1")
        except SampleError as exc:
            assert exc.sample_id == "s1" and words in exc.reason
        else:
            raise AssertionError("no error")
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (5, 4), (200, 100, 50, 10)).save(rgba)
    arr = read_grayscale(rgba)
    assert arr.shape == (4, 5) and arr.dtype.name == "uint8" and int(arr[0, 0]) == 124  # ITU-R 601 luma
