"""Metrics: hand-computed values, scikit-learn parity, and the cell route equal to brute force."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.core.geometry import Geometry, box_mask
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation import metrics as dense
from bench.evaluation.protocols import Protocol
from bench.evaluation.scoring import score_cells, score_dense

DEFAULT = Protocol(name="t")


def test_cnr_hand_computed() -> None:
    h = np.array([[1.0, 1.0], [0.0, 2.0]])
    g = np.array([[True, True], [False, False]])
    # inside mean 1 var 0; outside mean 1 var 1 -> 0; move one value to make it non-zero
    assert dense.cnr(h, g) == 0.0
    h = np.array([[3.0, 1.0], [0.0, 2.0]])
    # inside mean 2 var 1, outside mean 1 var 1 -> 1 / sqrt(2)
    assert dense.cnr(h, g) == pytest.approx(1 / np.sqrt(2))
    # sample variance: var_in = var_out = 2 -> 1 / 2
    assert dense.cnr(h, g, ddof=1) == pytest.approx(0.5)
    assert dense.cnr(np.ones((3, 3)), np.eye(3, dtype=bool)) == 0.0


def test_iou_and_miou_hand_computed() -> None:
    h = np.array([[0.15, 0.35, 0.55, 0.0]])
    g = np.array([[True, True, False, False]])
    # t=0.1: pred {0,1,2}, inter 2, union 3; t=0.2,0.3: pred {1,2} inter 1 union 3; t=0.4,0.5: pred {2} -> 0/3
    assert dense.iou_at(h, g, 0.1) == pytest.approx(2 / 3)
    assert dense.iou_at(h, g, 0.3) == pytest.approx(1 / 3)
    assert dense.iou_at(h, g, 0.5) == 0.0
    assert dense.miou(h, g) == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 5)
    # strict versus non-strict comparison at a value equal to the threshold
    h2 = np.array([[0.5, 0.0]])
    g2 = np.array([[True, False]])
    assert dense.iou_at(h2, g2, 0.5, strict=True) == 0.0
    assert dense.iou_at(h2, g2, 0.5, strict=False) == 1.0


def test_auc_matches_sklearn_with_ties_and_nan() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        h = np.round(rng.random((13, 17)), 1)  # many ties
        g = rng.random((13, 17)) < 0.3
        h[rng.random((13, 17)) < 0.1] = np.nan
        finite = np.isfinite(h)
        expected = roc_auc_score(g[finite], h[finite])
        assert dense.auc_roc(h, g) == pytest.approx(expected, abs=1e-12)
    assert dense.auc_roc(np.ones((4, 4)), np.eye(4, dtype=bool)) == 0.5
    assert dense.auc_roc(np.random.default_rng(1).random((4, 4)), np.zeros((4, 4), bool)) == 0.5


def test_binned_auc_is_auc_of_quantised_map() -> None:
    # five thresholds 0, .25, .5, .75, 1 with >=: level = number reached
    h = np.array([[0.1, 0.3, 0.8, np.nan, -0.2, 1.0]])
    q = dense.quantise_bins(h, 5)
    np.testing.assert_array_equal(q, [[1, 2, 4, np.nan, np.nan, 5]])


def test_pointing_game_first_maximum_row_major() -> None:
    h = np.array([[0.0, 0.9], [0.9, 0.1]])
    assert dense.pointing_game(h, np.array([[False, True], [False, False]])) == 1.0
    assert dense.pointing_game(h, np.array([[False, False], [True, False]])) == 0.0
    assert dense.pointing_game(np.full((2, 2), np.nan), np.ones((2, 2), bool)) == 0.0


def test_constant_map_scores_zero_zero_half() -> None:
    sample = Sample("s", "x.png", 40, 30, "c", "p", ((5.0, 5.0, 10.0, 10.0),))
    hm = Heatmap(np.full((4, 4), 0.3), Geometry.whole(30, 40))
    for route in (score_cells, score_dense):
        s = route(hm, sample, DEFAULT)
        assert s["miou"] == 0.0 and s["cnr"] == 0.0 and s["auc_roc"] == 0.5


def _random_case(rng: np.random.Generator) -> tuple[Heatmap, Sample]:
    H = int(rng.integers(5, 160))
    W = int(rng.integers(5, 160))
    h = int(rng.integers(1, 24))
    w = int(rng.integers(1, 24))
    kind = rng.integers(0, 3)
    if kind == 0:
        geom = Geometry.whole(H, W)
    elif kind == 1:
        geom = Geometry.short_side_crop(H, W, 512, int(rng.choice([448, 480, 512])))
    else:
        fh, fw = int(rng.integers(1, H + 1)), int(rng.integers(1, W + 1))
        geom = Geometry(H, W, int(rng.integers(0, H - fh + 1)), int(rng.integers(0, W - fw + 1)), fh, fw)
    values = rng.random((h, w))
    if rng.random() < 0.3:
        values = np.round(values * 4) / 4  # ties
    if rng.random() < 0.2:
        values[rng.random((h, w)) < 0.3] = np.nan  # NaN border / holes
        if not np.isfinite(values).any():
            values[0, 0] = 0.5
    if rng.random() < 0.1:
        values[:] = 0.7  # constant
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            x, y = float(rng.integers(0, W)), float(rng.integers(0, H))
            bw, bh = float(rng.integers(1, W + 5)), float(rng.integers(1, H + 5))  # may touch/cross the border
        else:
            x, y = rng.uniform(-3, W - 1), rng.uniform(-3, H - 1)
            bw, bh = rng.uniform(0.6, W), rng.uniform(0.6, H)
        boxes.append((x, y, bw, bh))
    return Heatmap(values, geom), Sample("r", "x.png", W, H, "c", "p", tuple(boxes))


PROTOCOL_VARIANTS = [
    DEFAULT,
    dataclasses.replace(DEFAULT, outside="exclude"),
    dataclasses.replace(DEFAULT, normalise="none", clip_min=0.2, threshold_op=">="),
    dataclasses.replace(DEFAULT, cnr_variance="sample", cnr_boxes="per_box", auc="binned"),
    dataclasses.replace(DEFAULT, outside="exclude", cnr_boxes="per_box", auc="binned", thresholds=(0.25, 0.5, 0.75)),
    dataclasses.replace(DEFAULT, metrics=DEFAULT.metrics + ("auc_roc_binned",), auc_bins=7, cnr_boxes="per_box",
                        cnr_zero_variance="float32_max", outside="exclude"),
]


@pytest.mark.parametrize("protocol", PROTOCOL_VARIANTS, ids=range(len(PROTOCOL_VARIANTS)))
def test_cell_route_equals_brute_force(protocol: Protocol) -> None:
    rng = np.random.default_rng(42)
    for _ in range(150):
        hm, sample = _random_case(rng)
        if not box_mask(sample.boxes, sample.height, sample.width).any():
            continue
        fast = score_cells(hm, sample, protocol)
        ref = score_dense(hm, sample, protocol)
        assert list(fast) == list(ref)
        for key in ref:
            assert fast[key] == pytest.approx(ref[key], abs=1e-9), (key, hm.values.shape, hm.geometry, sample.boxes)


def test_cell_route_on_mimic_size_image() -> None:
    rng = np.random.default_rng(7)
    hm = Heatmap(rng.random((64, 64)), Geometry.short_side_crop(3056, 2544, 512, 512))
    sample = Sample("m", "x.png", 2544, 3056, "c", "p", ((1200.5, 900.25, 400.0, 300.7), (100.0, 2900.0, 300.0, 200.0)))
    fast = score_cells(hm, sample, DEFAULT)
    ref = score_dense(hm, sample, DEFAULT)
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], abs=1e-9)
