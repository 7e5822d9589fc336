"""Ground truth kinds end to end: points scored by `bench run` and `bench score`, and every protocol that cannot
score a sample's kind refusing before the first map is made or scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from bench.methods.baselines import BoxPrior, OracleGaussian

# box_prior on a 64 x 64 image with its 64-cell grid: the prior is the train box's mask, whose first
# pixel (row 20, column 10) is the peak, at (10.5, 20.5); (9, 12) away is 15 px exactly
TRAIN_BOX = [10, 20, 8, 8]


def _image(root: Path, name: str) -> str:
    (root / "img").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((64, 64), 60, dtype=np.uint8)).save(root / "img" / f"{name}.png")
    return f"img/{name}.png"


def _row(root: Path, sid: str, split: str = "test", **gt) -> dict:
    return {"sample_id": sid, "image_path": _image(root, sid), "width": 64, "height": 64, "category": "nodule",
            "phrase": "a nodule", "boxes": gt.pop("boxes", []), "split": split, **gt}


def _points_dataset(root: Path) -> Path:
    rows = [_row(root, "t0", "train", boxes=[TRAIN_BOX]),
            _row(root, "p0", points=[[10.5 + 9, 20.5 + 12]]),  # at the radius: a hit
            _row(root, "p1", points=[[10.5 + 9.1, 20.5 + 12]]),  # 15.06 px away: a miss
            _row(root, "p2", points=[[0, 0], [10.5, 20.5]]),  # the second point is on the peak
            _row(root, "b0", boxes=[TRAIN_BOX])]  # a box sample beside them: the prior is its box exactly
    path = root / "points.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mask_rle() -> dict:
    m = np.zeros((64, 64), dtype=np.uint8)
    m[20:28, 10:18] = 1
    rle = cocomask.encode(np.asfortranarray(m))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _no_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method that fails the test when it is prepared or asked for a map."""
    def refuse(*args, **kwargs):
        raise AssertionError("the method was asked for work before the protocol was checked")

    for cls in (BoxPrior, OracleGaussian):
        monkeypatch.setattr(cls, "prepare", refuse)
        monkeypatch.setattr(cls, "heatmaps", refuse)


def test_points_run_and_score_end_to_end(tmp_path: Path, bench_cli) -> None:
    """`bench run -m box_prior -d FILE` on points-only samples beside a box sample, by hand; `bench score` agrees;
    NaN region columns are left out of the summary and of `bench compare` per metric."""
    path = _points_dataset(tmp_path)
    run, flat = tmp_path / "prior", tmp_path / "flat"
    assert bench_cli("run", "-m", "box_prior", "-d", path, "--out", run).code == 0
    res = bench_cli("run", "-m", "uniform", "-d", path, "--out", flat)
    assert res.code == 0, res.err
    got = pd.read_csv(run / "samples.csv").set_index("sample_id")
    assert got["pointing_game"].to_dict() == {"p0": 1.0, "p1": 0.0, "p2": 1.0, "b0": 1.0}
    assert got.loc["b0", "miou"] == 1.0 and got.loc[["p0", "p1", "p2"], "miou"].isna().all()
    assert got.loc[["p0", "p1", "p2"], ["cnr", "auc_roc", "iou@0.3"]].isna().all().all()
    summary = pd.read_csv(run / "summary.csv").set_index(["group", "metric"])
    assert summary.loc[("micro", "pointing_game"), "mean"] == 0.75 and summary.loc[("micro", "pointing_game"), "n"] == 4
    assert summary.loc[("micro", "miou"), "mean"] == 1.0 and summary.loc[("micro", "miou"), "n"] == 1
    res = bench_cli("score", "--heatmaps", run, "-d", path, "--out", tmp_path / "rescored")
    assert res.code == 0, res.err
    again = pd.read_csv(tmp_path / "rescored" / "samples.csv").set_index("sample_id")
    pd.testing.assert_frame_equal(again[got.columns], got)
    # uniform: a constant map peaks at pixel (0, 0), centre (0.5, 0.5): only p2's point (0, 0) is near it
    flat_scores = pd.read_csv(flat / "samples.csv").set_index("sample_id")
    assert flat_scores["pointing_game"].to_dict() == {"p0": 0.0, "p1": 0.0, "p2": 1.0, "b0": 0.0}
    import bench

    diff = bench.compare_runs([flat, run], group="micro").differences.set_index("metric")
    assert diff.loc["pointing_game", "difference"] == pytest.approx(0.5)
    assert diff.loc["miou", "difference"] == pytest.approx(1.0)  # the box sample alone


def test_points_under_chexlocalize2022(tmp_path: Path, bench_cli) -> None:
    path = _points_dataset(tmp_path)
    res = bench_cli("run", "-m", "box_prior", "-d", path, "-p", "chexlocalize2022", "--out", tmp_path / "cx")
    assert res.code == 0, res.err
    got = pd.read_csv(tmp_path / "cx" / "samples.csv").set_index("sample_id")
    assert got["hit_rate"].to_dict() == {"p0": 1.0, "p1": 0.0, "p2": 1.0, "b0": 1.0}
    assert got.loc[["p0", "p1", "p2"], "seg_iou"].isna().all() and got.loc["b0", "seg_iou"] == 1.0


@pytest.mark.parametrize("protocol,field", [
    ("vilouras2025", "metrics = [cnr, cnr_abs, iou, miou, auc_roc], none of them a point metric (pointing_game, "
                     "hit_rate): 3 of the 4 samples have ground truth points only (first: p0)"),
    ("vilouras2024", "drop_boxes = 'label_crop', defined on boxes only: 3 of the 5 samples have ground truth points "
                     "only (first: p0)"),  # its split is every sample's
    ("boxes", "defined on GT boxes only: 3 of the 4 samples have ground truth points only (first: p0)"),
])
def test_run_refuses_before_any_map(tmp_path: Path, bench_cli, monkeypatch, protocol: str, field: str) -> None:
    path = _points_dataset(tmp_path)
    _no_maps(monkeypatch)
    res = bench_cli("run", "-m", "box_prior", "-d", path, "-p", protocol, "--out", tmp_path / "out")
    assert res.code != 0 and "Traceback" not in res.err and "AssertionError" not in res.err
    assert f"protocol '{protocol}' has " in res.err and field in res.err
    assert len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_mask_refused_before_any_map(tmp_path: Path, bench_cli, monkeypatch) -> None:
    _no_maps(monkeypatch)
    res = bench_cli("run", "-m", "oracle_gaussian", "-d", "phantom", "-O", "n_test=3", "-O", "n_train=0", "-O",
                    "gt=mask", "-p", "nutzel2025", "--out", tmp_path / "out")
    assert res.code != 0 and "AssertionError" not in res.err
    assert ("protocol 'nutzel2025' has eval_grid = 'centre_crop', defined on boxes only: 3 of the 3 samples have "
            "ground truth a mask (first: phantom-test-00000)") in res.err
    assert not (tmp_path / "out").exists()


def test_skip_bad_records_the_refused_samples_without_maps(tmp_path: Path, bench_cli) -> None:
    path = _points_dataset(tmp_path)
    out = tmp_path / "out"
    res = bench_cli("run", "-m", "box_prior", "-d", path, "-p", "vilouras2025", "--skip-bad", "--out", out)
    assert res.code == 0, res.err
    assert list(pd.read_csv(out / "samples.csv")["sample_id"]) == ["b0"]
    skipped = {s["sample_id"]: s["reason"] for s in json.loads((out / "run.json").read_text())["skipped"]}
    assert sorted(skipped) == ["p0", "p1", "p2"] and "none of them a point metric" in skipped["p0"]
    assert sorted(p.stem for p in (out / "heatmaps").glob("*.npz")) == ["b0"]


def test_score_refuses_before_scoring(tmp_path: Path, bench_cli) -> None:
    """No map is in the folder: a refusal at scoring time would name the missing map instead."""
    path = _points_dataset(tmp_path)
    (tmp_path / "maps").mkdir()
    res = bench_cli("score", "--heatmaps", tmp_path / "maps", "-d", path, "-p", "vilouras2025", "--out",
                    tmp_path / "out")
    assert res.code != 0
    assert "protocol 'vilouras2025' has metrics = " in res.err and "(first: p0)" in res.err
    assert not (tmp_path / "out").exists()


def test_box_metrics_need_gt_boxes(tmp_path: Path, bench_cli) -> None:
    """`bench score --boxes`: a mask without boxes and points only are refused before scoring, naming the
    samples; a mask sample that carries its boxes is scored against those boxes."""
    rows = [_row(tmp_path, "m0", mask=_mask_rle()), _row(tmp_path, "m1", mask=_mask_rle()),
            _row(tmp_path, "mb", mask=_mask_rle(), boxes=[TRAIN_BOX])]
    path = tmp_path / "masks.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    boxes = tmp_path / "mine.jsonl"
    boxes.write_text("".join(json.dumps({"sample_id": s, "boxes": [TRAIN_BOX]}) + "\n" for s in ("m0", "m1", "mb")))
    res = bench_cli("score", "--boxes", boxes, "-d", path, "-p", "boxes", "--out", tmp_path / "out")
    assert res.code != 0
    assert ("protocol 'boxes' has box metrics (metrics = [top1_iou_union, top1_iou_best, acc@0.5, ap@0.5, "
            "ap@[.5:.95], box_precision, box_recall, box_contained, pooled_iou]), defined on GT boxes only: 2 of the "
            "3 samples have ground truth a mask without boxes (first: m0)") in res.err
    assert not (tmp_path / "out").exists()
    res = bench_cli("score", "--boxes", boxes, "-d", path, "-p", "boxes", "--skip-bad", "--out", tmp_path / "out")
    assert res.code == 0, res.err
    got = pd.read_csv(tmp_path / "out" / "samples.csv").set_index("sample_id")
    assert list(got.index) == ["mb"]
    assert got.loc["mb", "top1_iou_best"] == 1.0 and got.loc["mb", "acc@0.5"] == 1.0


def test_the_viewer_draws_gt_points_as_circles_of_the_point_radius(tmp_path: Path, bench_cli) -> None:
    """`bench view` of a points run: each GT point a circle of point_radius (15 px; the 64 px images are not
    scaled at the 256 px thumbnail size) at the point, the box sample's box a rectangle; the legend says so."""
    from html.parser import HTMLParser

    path = _points_dataset(tmp_path)
    run = tmp_path / "prior"
    assert bench_cli("run", "-m", "box_prior", "-d", path, "--out", run).code == 0
    res = bench_cli("view", run, "--out", tmp_path / "view")
    assert res.code == 0, res.err

    class Shapes(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.circles: list[tuple[float, float, float]] = []
            self.rects: list[tuple[float, ...]] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "circle":
                self.circles.append((float(a["cx"]), float(a["cy"]), float(a["r"])))
            elif tag == "rect":
                self.rects.append(tuple(float(a[k]) for k in ("x", "y", "width", "height")))

    html = (tmp_path / "view" / "index.html").read_text(encoding="utf-8")
    shapes = Shapes()
    shapes.feed(html)
    assert sorted(shapes.circles) == sorted([(19.5, 32.5, 15.0), (19.6, 32.5, 15.0), (0.0, 0.0, 15.0),
                                             (10.5, 20.5, 15.0)])
    assert shapes.rects == [(10.0, 20.0, 8.0, 8.0)]
    assert "ground-truth points (the circle: 15.0 px around the point" in html
