"""Conversions between output kinds: boxes -> heatmap, heatmap -> mask -> boxes, boxes -> mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.predictions import BoxPrediction
from bench.core.samples import Sample
from bench.evaluation.box_scoring import heatmap_boxes, score_prediction
from bench.evaluation.conversions import (
    boxes_to_heatmap,
    boxes_to_mask,
    heatmap_to_mask,
    mask_to_boxes,
    otsu_threshold,
)
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score


def test_boxes_to_heatmap_max_where_boxes_overlap_zero_elsewhere() -> None:
    values = boxes_to_heatmap([(0, 0, 4, 4), (2, 2, 4, 4)], [0.3, 0.8], 8, 8)
    assert values[0, 0] == pytest.approx(0.3) and values[3, 3] == pytest.approx(0.8)  # overlap: the max
    assert values[5, 5] == pytest.approx(0.8) and values[7, 7] == 0.0 and values[0, 5] == 0.0
    assert set(np.unique(boxes_to_heatmap([(0, 0, 4, 4)], [], 8, 8))) == {0.0, 1.0}  # no scores: 1
    assert np.array_equal(boxes_to_heatmap([(0, 0, 4, 4), (2, 2, 4, 4)], [0.3, 0.8], 8, 8, "binary") > 0,
                          boxes_to_mask([(0, 0, 4, 4), (2, 2, 4, 4)], 8, 8))


def test_heatmap_to_mask_threshold_and_otsu() -> None:
    values = np.array([[0.0, 0.2, 0.6], [0.9, 0.5, 0.1]])
    assert heatmap_to_mask(values, "threshold", 0.5).tolist() == [[False, False, True], [True, False, False]]
    two_levels = np.array([[0.1, 0.1, 0.9, 0.9]])
    t = otsu_threshold(two_levels)
    assert 0.1 <= t < 0.9
    assert heatmap_to_mask(two_levels, "otsu").tolist() == [[False, False, True, True]]
    assert not heatmap_to_mask(np.full((3, 3), 0.4), "otsu").any()  # a constant map has no foreground


def test_mask_to_boxes_components_scores_and_largest() -> None:
    values = np.zeros((10, 10))
    values[1:3, 1:4] = 0.5      # component A: 2 x 3, max 0.5
    values[6:10, 5:9] = 0.2     # component B: 4 x 4, max 0.9, mean (15 * 0.2 + 0.9) / 16
    values[9, 8] = 0.9
    values[4, 4] = 0.3          # touches neither diagonally: its own component C
    mask = values > 0
    pred = mask_to_boxes(mask, values, "components", "max")
    assert pred.boxes == ((5.0, 6.0, 4.0, 4.0), (1.0, 1.0, 3.0, 2.0), (4.0, 4.0, 1.0, 1.0))
    assert pred.scores == pytest.approx((0.9, 0.5, 0.3))
    mean = mask_to_boxes(mask, values, "components", "mean")
    assert mean.boxes[0] == (1.0, 1.0, 3.0, 2.0) and mean.scores[0] == pytest.approx(0.5)
    assert mean.scores[2] == pytest.approx((15 * 0.2 + 0.9) / 16)
    largest = mask_to_boxes(mask, values, "largest", "max")
    assert largest.boxes == ((5.0, 6.0, 4.0, 4.0),)
    assert mask_to_boxes(np.zeros((4, 4), bool), np.zeros((4, 4))).boxes == ()


def test_diagonal_pixels_are_one_component() -> None:
    mask = np.eye(4, dtype=bool)
    assert mask_to_boxes(mask, mask.astype(float)).boxes == ((0.0, 0.0, 4.0, 4.0),)


def _sample() -> Sample:
    return Sample("s", "s.png", 40, 30, "Edema", "edema", ((10.0, 5.0, 10.0, 10.0),))


def test_a_box_prediction_under_a_heatmap_protocol_is_its_rasterised_map() -> None:
    sample = _sample()
    default = load_protocol("default")
    pred = BoxPrediction(((10.0, 5.0, 10.0, 10.0),))
    got, _ = score_prediction(pred, sample, default)
    values = boxes_to_heatmap(pred.boxes, (), 30, 40)
    assert got == score(Heatmap(values, Geometry.whole(30, 40)), sample, default)
    assert got["miou"] == 1.0 and got["pointing_game"] == 1.0 and got["auc_roc"] == 1.0
    empty, _ = score_prediction(BoxPrediction((), failure="no box in the text"), sample, default)
    assert empty["miou"] == 0.0 and empty["auc_roc"] == 0.5 and empty["cnr"] == 0.0


def test_a_heatmap_under_the_box_protocol_is_boxed_by_its_conversion() -> None:
    sample = _sample()
    boxes = load_protocol("boxes")
    values = np.zeros((30, 40), np.float32)
    values[5:15, 10:20] = 1.0
    values[25:28, 30:33] = 0.4
    heatmap = Heatmap(values, Geometry.whole(30, 40))
    assert otsu_threshold(values) > 0.4  # Otsu puts the faint blob with the background
    assert heatmap_boxes(heatmap, boxes).boxes == ((10.0, 5.0, 10.0, 10.0),)
    fixed = dataclasses.replace(boxes, heatmap_to_mask="threshold", mask_threshold=0.3)
    assert heatmap_boxes(heatmap, fixed).boxes == ((10.0, 5.0, 10.0, 10.0), (30.0, 25.0, 3.0, 3.0))
    assert heatmap_boxes(heatmap, fixed).scores == pytest.approx((1.0, 0.4))
    got, _ = score_prediction(heatmap, sample, boxes)
    assert got["top1_iou_best"] == 1.0 and got["acc@0.5"] == 1.0 and got["ap@0.5"] == pytest.approx(1.0)
    assert got["box_recall"] == 1.0 and got["box_precision"] == 1.0 and got["box_contained"] == 1.0
    assert got["pooled_iou"] == 1.0 and got["pooled_union"] == got["pooled_inter"] > 0
