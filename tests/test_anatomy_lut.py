"""The anatomical prior table: eq. 6 statistics, the Chest ImaGenome reader, the file, targets."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.datasets.anatomy import load_rules
from bench.datasets.anatomy_lut import (
    PHANTOM_LUT_FILE,
    AnatomyLut,
    Gaussian,
    box_gaussian,
    build_lut,
    load_lut,
    read_imagenome_gold,
    save_lut,
)
from bench.datasets.phantom import make_case
from bench.datasets.phantom_anatomy import anatomy_boxes, phantom_lut

KEYS = load_rules().keys


def test_box_statistics_follow_eq6():
    g = box_gaussian(10, 20, 70, 140, 100, 200)
    assert (g.mu_x, g.mu_y, g.sigma_x, g.sigma_y) == pytest.approx((0.4, 0.4, 0.1, 0.1))
    with pytest.raises(ValueError):
        box_gaussian(10, 20, 10, 30, 100, 100)


def _records(extra=()):
    recs = [(k, Gaussian(0.5, 0.5, 0.1, 0.1)) for k in KEYS]
    return recs + list(extra)


def test_build_averages_every_box_of_a_location():
    lut = build_lut(_records([("trachea", Gaussian(0.7, 0.1, 0.3, 0.2))]))
    (g,) = lut["trachea"]
    assert (g.mu_x, g.mu_y, g.sigma_x, g.sigma_y, g.boxes) == pytest.approx((0.6, 0.3, 0.2, 0.15, 2))
    with pytest.raises(BenchError, match="no anatomical box for 1 location"):
        build_lut([r for r in _records() if r[0] != "svc"])


def _gold_csv(tmp_path, rows, header="image_id,bbox_name,x1,y1,x2,y2"):
    path = tmp_path / "gold_bbox_coordinate_annotations_1000images.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def test_imagenome_gold_table_gives_one_lut_gaussian_per_location(tmp_path):
    names = [loc.name for loc in load_rules().locations]
    rows = [f"img1,{n},56,56,112,168" for n in names] + [f"img2,{n},0,0,224,224" for n in names]
    rows.append("img2,cavoatrial junction,1,1,5,5")
    records, counts = read_imagenome_gold(_gold_csv(tmp_path, rows))
    assert counts == {"images": 2, "boxes": 54, "skipped_boxes": 1, "corners": "x1, y1, x2, y2"}
    lut = build_lut(records)
    (g,) = lut["right_lower_lung_zone"]
    # img1: centre (84, 112)/224, sides 56, 112; img2: centre 0.5, sides 224
    assert g.mu_x == pytest.approx((84 / 224 + 0.5) / 2)
    assert g.mu_y == pytest.approx((112 / 224 + 0.5) / 2)
    assert g.sigma_x == pytest.approx((56 / 6 / 224 + 224 / 6 / 224) / 2)
    assert g.sigma_y == pytest.approx((112 / 6 / 224 + 224 / 6 / 224) / 2)


def test_imagenome_reader_uses_image_size_columns_and_names_bad_rows(tmp_path):
    header = "image_id,bbox_name,x1,y1,x2,y2,image_width,image_height"
    records, _ = read_imagenome_gold(_gold_csv(tmp_path, ["a,trachea,100,0,200,300,1000,600"], header))
    assert records[0][1].mu_x == pytest.approx(0.15) and records[0][1].sigma_y == pytest.approx(0.5 / 6)
    # the released table's columns: the original-pixel corners win over the padded 224 frame
    header = ("image_id,x1,y1,x2,y2,width,height,bbox_name,annot_id,original_x1,original_x2,original_y1,"
              "original_y2,original_width,original_height,annotator,coord224,coord_original")
    row = "d.dcm,10,20,60,120,50,100,trachea,1,100,200,0,300,1000,600,a,x,y"
    records, counts = read_imagenome_gold(_gold_csv(tmp_path, [row], header))
    assert records[0][1].mu_x == pytest.approx(0.15) and records[0][1].sigma_y == pytest.approx(0.5 / 6)
    assert counts["corners"].startswith("original_x1")
    with pytest.raises(BenchError, match="missing column 'x2'"):
        read_imagenome_gold(_gold_csv(tmp_path, ["a,trachea,1,1,1"], "image_id,bbox_name,x1,y1,y2"))
    with pytest.raises(BenchError, match="data row 2"):
        read_imagenome_gold(_gold_csv(tmp_path, ["a,trachea,1,1,9,9", "a,spine,5,5,5,9"]))


def test_file_round_trip_and_one_line_errors(tmp_path):
    lut = build_lut(_records([("spine", Gaussian(0.25, 0.75, 0.05, 0.2))]), provenance={"source": "test", "boxes": 28})
    save_lut(lut, tmp_path / "lut.toml")
    back = load_lut(tmp_path / "lut.toml")
    assert back.provenance == {"source": "test", "boxes": 28}
    assert back["spine"][0].mu_x == pytest.approx(0.375) and back["spine"][0].boxes == 2
    text = (tmp_path / "lut.toml").read_text()
    (tmp_path / "bad.toml").write_text(text.replace("svc = ", "not_svc = "))
    with pytest.raises(BenchError, match="no Gaussian for location 'svc'"):
        load_lut(tmp_path / "bad.toml")
    (tmp_path / "bad.toml").write_text(text.replace("format = 1", "format = 7"))
    with pytest.raises(BenchError, match="format 7"):
        load_lut(tmp_path / "bad.toml")


def test_nearest_location_by_squared_wasserstein():
    lut = AnatomyLut({"a": (Gaussian(0.2, 0.5, 0.1, 0.1),), "b": (Gaussian(0.8, 0.5, 0.1, 0.1),
                                                              Gaussian(0.3, 0.5, 0.3, 0.3))})
    assert lut.nearest(Gaussian(0.25, 0.5, 0.1, 0.1)) == "a"
    assert lut.nearest(Gaussian(0.3, 0.5, 0.28, 0.3)) == "b"  # its second Gaussian
    assert Gaussian(0, 0, 1, 1).w2(Gaussian(1, 2, 2, 4)) == pytest.approx(1 + 4 + 1 + 9)


def test_target_peaks_at_the_gaussian_on_the_crop_grid():
    lut = AnatomyLut({"a": (Gaussian(0.25, 0.5, 0.05, 0.05),)})
    geometry = Geometry.short_side_crop(100, 200, 64, 64)  # the central 100 x 100 square, left 50
    target = lut.target(["a"], geometry, (10, 10))
    # mu = (50, 50) px: column (50 - 50) / 10 -> the grid's left edge; row 5
    assert target.shape == (10, 10) and target.max() <= 1.0
    assert np.unravel_index(target.argmax(), target.shape) in ((4, 0), (5, 0))
    x, y = 50 + 0.5 * 10, 45.0  # centre of cell (4, 0)
    expected = np.exp(-0.5 * ((x - 50) / 10) ** 2) * np.exp(-0.5 * ((y - 50) / 5) ** 2)
    assert target[4, 0] == pytest.approx(expected, rel=1e-5)
    jittered = lut.target(["a"], geometry, (10, 10), rng=np.random.default_rng(0), jitter=0.05)
    assert not np.allclose(jittered, target)


def test_shipped_phantom_table_is_the_generator_anatomy():
    shipped, rebuilt = load_lut(PHANTOM_LUT_FILE), phantom_lut()
    for key in KEYS:
        (a,), (b,) = shipped[key], rebuilt[key]
        assert (a.mu_x, a.mu_y, a.sigma_x, a.sigma_y) == pytest.approx((b.mu_x, b.mu_y, b.sigma_x, b.sigma_y),
                                                                       abs=1e-6)
    # the patient's right lies on the image's left
    assert shipped["right_lung"][0].mu_x < 0.5 < shipped["left_lung"][0].mu_x
    assert shipped["right_apical_zone"][0].mu_y < shipped["right_lower_lung_zone"][0].mu_y


def test_phantom_lesions_lie_in_their_named_lung():
    for i in range(40):
        case = make_case(0, "test", i)
        if case.side not in ("right", "left"):
            continue
        anatomy = anatomy_boxes(case)
        x, _, w, _ = anatomy[f"{case.side}_lung"]
        for bx, _, bw, _ in case.boxes:
            assert x - 2 <= bx + bw / 2 <= x + w + 2


def test_cli_builds_the_table_from_gold_boxes(bench_cli, tmp_path):
    rows = [f"img1,{loc.name},56,56,112,168" for loc in load_rules().locations]
    out = tmp_path / "lut.toml"
    result = bench_cli("tune", "lut", "--gold", str(_gold_csv(tmp_path, rows)), "--out", str(out))
    assert result.code == 0, result.err
    lut = load_lut(out)
    assert lut["trachea"][0].mu_x == pytest.approx(84 / 224) and lut.provenance["boxes"] == 27
    bad = bench_cli("tune", "lut", "--gold", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.toml"))
    assert bad.code == 2 and bad.err.count("\n") == 1 and "cannot read" in bad.err
    assert not (tmp_path / "x.toml").exists()
