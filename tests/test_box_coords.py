"""`box_coords`: float boxes rasterised by pixel centres (the harness) or truncated to int first (the
published scorers), on the original grid and in the 512 centre crop, against values computed here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.stats import rankdata

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score_dense, score_with_boxes

FLOAT_BOX = (1.6, 2.4, 3.7, 2.2)  # x, y, w, h


def _sample(width: int, height: int, box) -> Sample:
    return Sample("s", "x.png", width, height, "c", "p", (tuple(box),), "test")


def _cnr(h: np.ndarray, gt: np.ndarray, ddof: int) -> float:
    a, b = h[gt], h[~gt]
    return (a.mean() - b.mean()) / np.sqrt(a.var(ddof=ddof) + b.var(ddof=ddof))


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return (pred & gt).sum() / (pred | gt).sum()


def _auc(h: np.ndarray, gt: np.ndarray) -> float:
    ranks = rankdata(h.ravel())
    pos = gt.ravel()
    n1, n0 = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


@pytest.mark.parametrize("name", ["vilouras2024", "vilouras2025", "nutzel2025", "dombrowski2024",
                                  "dombrowski2024_filtered"])
def test_paper_protocols_truncate_and_default_keeps_float(name: str) -> None:
    assert load_protocol(name).box_coords == "truncate"
    assert load_protocol("default").box_coords == "float"


@pytest.mark.parametrize("coords", ["float", "truncate"])
def test_box_coords_on_the_original_grid(coords: str) -> None:
    # 10 x 8 image; the float box covers pixel centres rows 2..4, columns 2..4 (ceil(s - 0.5) .. ceil(s + l - 0.5));
    # truncated it is (1, 2, 3, 2): rows 2..3, columns 1..3
    h = np.arange(80, dtype=np.float64).reshape(8, 10) / 79
    gt = np.zeros((8, 10), dtype=bool)
    if coords == "float":
        gt[2:5, 2:5] = True
    else:
        gt[2:4, 1:4] = True
    p = dataclasses.replace(load_protocol("default"), box_coords=coords, split="all")
    scores, scored = score_with_boxes(Heatmap(h, Geometry.whole(8, 10)), _sample(10, 8, FLOAT_BOX), p)
    assert scored.boxes == ((FLOAT_BOX if coords == "float" else (1, 2, 3, 2)),)
    assert scores["cnr"] == pytest.approx(_cnr(h, gt, 0), abs=1e-12)
    assert scores["iou@0.3"] == pytest.approx(_iou(h > 0.3, gt), abs=1e-12)
    assert scores["auc_roc"] == pytest.approx(_auc(h, gt), abs=1e-12)
    assert score_dense(Heatmap(h, Geometry.whole(8, 10)), _sample(10, 8, FLOAT_BOX), p) == pytest.approx(scores)


@pytest.mark.parametrize("coords", ["float", "truncate"])
def test_box_coords_in_the_centre_crop(coords: str) -> None:
    # a 512 x 512 image is its own crop: the GT is the box's pixels (no resize, so no dilation)
    box = (10.6, 20.4, 30.7, 40.2)
    rng = np.random.default_rng(3)
    h = rng.integers(0, 9, size=(512, 512)) / 8.0  # exact in float16 and float32, min 0, max 1
    gt = np.zeros((512, 512), dtype=bool)
    if coords == "float":
        gt[20:61, 11:41] = True  # rows ceil(19.9)..ceil(60.1)-1, columns ceil(10.1)..ceil(40.8)-1
    else:
        gt[20:60, 10:40] = True  # (10, 20, 30, 40)
    p = dataclasses.replace(load_protocol("dombrowski2024"), box_coords=coords)
    scores, _ = score_with_boxes(Heatmap(h, Geometry.whole(512, 512)), _sample(512, 512, box), p)
    assert scores["cnr"] == pytest.approx(_cnr(h, gt, 1), rel=1e-5)
    assert scores["auc_roc"] == pytest.approx(_auc(h, gt), abs=1e-9)
    assert scores["pointing_game"] == float(gt.ravel()[np.argmax(h)])


def test_integer_boxes_are_the_same_either_way() -> None:
    h = np.arange(80, dtype=np.float64).reshape(8, 10) / 79
    base = dataclasses.replace(load_protocol("default"), split="all")
    s = _sample(10, 8, (1, 2, 3, 2))
    a = score_with_boxes(Heatmap(h, Geometry.whole(8, 10)), s, base)[0]
    b = score_with_boxes(Heatmap(h, Geometry.whole(8, 10)), s, dataclasses.replace(base, box_coords="truncate"))[0]
    assert a == b
