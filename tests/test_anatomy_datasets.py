"""`ms-cxr-loc` and `vindr-cxr` on small synthetic files in the official formats."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from test_datasets import MS_COLUMNS, fake_ms_cxr

from bench.core.errors import BenchError
from bench.datasets import get_dataset
from bench.datasets.anatomy_lut import PHANTOM_LUT_FILE, load_lut

D = "a1b2c3d4-00000000-11111111-22222222-33333333"


def _ms_rows():
    base = f"files/p10/p10000001/s50000001/{D}.jpg"
    return [
        [D, "Pneumonia", "right lower lobe pneumonia", base, 20, 200, 60, 60, 300, 360, "test"],
        [D, "Pneumothorax", "pneumothorax", base, 10, 10, 50, 50, 300, 360, "test"],
        [D, "Pleural Effusion", "small bilateral pleural effusions", base, 10, 250, 250, 80, 300, 360, "test"],
        [D, "Pleural Effusion", "small bilateral pleural effusions", base, 200, 250, 90, 80, 300, 360, "test"],
    ]


def test_ms_cxr_loc_rewrites_prompts_and_drops_pairs_without_a_location(tmp_path):
    assert len(MS_COLUMNS) == 10
    fake_ms_cxr(tmp_path, rows=_ms_rows())
    full = {s.sample_id: s for s in get_dataset("ms-cxr", tmp_path).samples()}
    loc = get_dataset("ms-cxr-loc", tmp_path).samples()
    assert len(full) == 3 and len(loc) == 2  # "pneumothorax" names no location
    by_phrase = {s.extra["original_phrase"]: s for s in loc}
    pneumonia = by_phrase["right lower lobe pneumonia"]
    assert pneumonia.phrase == "right lower lung zone pneumonia"
    assert pneumonia.extra["location"] == "right_lower_lung_zone"
    assert pneumonia.boxes == full[pneumonia.sample_id].boxes  # same sample id, image and boxes
    effusion = by_phrase["small bilateral pleural effusions"]
    assert effusion.phrase == "right costophrenic angle and left costophrenic angle pleural effusion"
    assert len(effusion.boxes) == 2


def test_ms_cxr_loc_has_the_errors_of_ms_cxr(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_MS_CXR_ROOT", raising=False)
    with pytest.raises(BenchError, match="needs --data-root"):
        get_dataset("ms-cxr-loc").samples()
    with pytest.raises(BenchError, match="no MS_CXR_Local_Alignment"):
        get_dataset("ms-cxr-loc", tmp_path).samples()


IMG = "0005e8e3701dfb1dd93d53e2ff537b6e"
IMG2 = "001d127bad87592efe45a5c7678f8b8d"


def _vindr(root: Path, rows: list[list], header=("image_id", "rad_id", "class_name", "x_min", "y_min", "x_max",
                                                   "y_max")) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(exist_ok=True)
    for image_id, size in ((IMG, (1000, 1200)), (IMG2, (800, 800))):
        Image.new("L", size, 80).save(root / "test" / f"{image_id}.png")
    csv = root / "annotations" / "annotations_test.csv"
    pd.DataFrame(rows, columns=list(header)).to_csv(csv, index=False)
    return csv


def _rows():
    lut = load_lut(PHANTOM_LUT_FILE)
    (g,) = lut["left_lower_lung_zone"]
    # a box whose eq. 6 Gaussian is exactly the table's left lower lung zone, on a 1000 x 1200 image
    x0, x1 = (g.mu_x - 3 * g.sigma_x) * 1000, (g.mu_x + 3 * g.sigma_x) * 1000
    y0, y1 = (g.mu_y - 3 * g.sigma_y) * 1200, (g.mu_y + 3 * g.sigma_y) * 1200
    (c,) = lut["cardiac_silhouette"]
    return [
        [IMG, "R8", "Pleural effusion", x0, y0, x1, y1],
        [IMG, "R8", "Pleural effusion", 1000 - x1, y0, 1000 - x0, y1],  # its mirror: the right lower zone
        [IMG, "R8", "Nodule/Mass", 10, 10, 50, 50],                     # no MS-CXR class: left out
        [IMG2, "R9", "Cardiomegaly", (c.mu_x - 3 * c.sigma_x) * 800, (c.mu_y - 3 * c.sigma_y) * 800,
         (c.mu_x + 3 * c.sigma_x) * 800, (c.mu_y + 3 * c.sigma_y) * 800],
        [IMG2, "R9", "No finding", "", "", "", ""],
    ]


def test_vindr_prompts_take_the_nearest_prior_location(tmp_path):
    _vindr(tmp_path, _rows())
    samples = get_dataset("vindr-cxr", tmp_path, {"lut": str(PHANTOM_LUT_FILE)}).samples()
    assert [s.sample_id for s in samples] == [f"{IMG}-pleural_effusion", f"{IMG2}-cardiomegaly"]
    effusion, heart = samples
    assert (effusion.width, effusion.height, effusion.split) == (1000, 1200, "test")
    assert effusion.extra["location"] == "left_lower_lung_zone+right_lower_lung_zone"
    assert effusion.phrase == "left lower lung zone and right lower lung zone pleural effusion"
    assert len(effusion.boxes) == 2 and effusion.boxes[0][2] == pytest.approx(_rows()[0][5] - _rows()[0][3])
    assert heart.extra["location"] == "cardiac_silhouette" and heart.phrase == "cardiac silhouette cardiomegaly"


def test_vindr_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_VINDR_ROOT", raising=False)
    lut = {"lut": str(PHANTOM_LUT_FILE)}
    with pytest.raises(BenchError, match="needs --data-root"):
        get_dataset("vindr-cxr", None, lut).samples()
    with pytest.raises(BenchError, match="no annotations/annotations_test.csv"):
        get_dataset("vindr-cxr", tmp_path, lut).samples()
    _vindr(tmp_path, _rows())
    with pytest.raises(BenchError, match="-O lut=PATH"):
        get_dataset("vindr-cxr", tmp_path).samples()
    rows = _rows()
    rows[1][4] = "abc"
    _vindr(tmp_path, rows)
    with pytest.raises(BenchError, match="column 'y_min' is not a number in data row 2"):
        get_dataset("vindr-cxr", tmp_path, lut).samples()
    _vindr(tmp_path, [r[:2] + r[3:] for r in _rows()], header=("image_id", "rad_id", "x_min", "y_min", "x_max",
                                                               "y_max"))
    with pytest.raises(BenchError, match="missing column 'class_name'"):
        get_dataset("vindr-cxr", tmp_path, lut).samples()
    (tmp_path / "test" / f"{IMG}.png").unlink()
    _vindr(tmp_path, _rows())
    (tmp_path / "test" / f"{IMG}.png").unlink()
    with pytest.raises(BenchError, match=f"no image {IMG}"):
        get_dataset("vindr-cxr", tmp_path, lut).samples()
