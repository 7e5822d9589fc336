"""Box metrics against hand-computed values, and AP against pycocotools' COCOeval called directly."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from bench.evaluation.box_metrics import (
    box_iou,
    box_scores,
    coco_ap,
    containment,
    pooled_counts,
    ranked,
    top1_ious,
    union_box,
)


def test_box_iou_and_union_box_by_hand() -> None:
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_iou((0, 0, 4, 4), (1, 1, 2, 2)) == pytest.approx(4 / 16)
    assert union_box([(10, 20, 5, 5), (30, 5, 10, 10)]) == (10, 5, 30, 20)


def test_top1_against_union_box_and_best_matching_box() -> None:
    gt = [(0, 0, 10, 10), (20, 0, 10, 10)]  # union box (0, 0, 30, 10)
    pred = [(0, 0, 10, 10), (20, 0, 10, 10)]
    union_iou, best_iou = top1_ious(pred, gt)
    assert best_iou == 1.0
    assert union_iou == pytest.approx(100 / 300)
    assert top1_ious([], gt) == (0.0, 0.0)


def test_ranking_by_score_else_by_order() -> None:
    boxes = [(0, 0, 1, 1), (1, 1, 1, 1), (2, 2, 1, 1)]
    assert ranked(boxes, [0.2, 0.9, 0.2]) == ([boxes[1], boxes[0], boxes[2]], [0.9, 0.2, 0.2])
    assert ranked(boxes) == (boxes, [1.0, 1 - 1 / 3, 1 - 2 / 3])
    # the top box decides the top-1 IoU: the second box by score
    s = box_scores(boxes, [0.2, 0.9, 0.2], [(1, 1, 1, 1)], 10, 10)
    assert s["top1_iou_best"] == 1.0 and s["acc@0.5"] == 1.0


def _cocoeval(pred, scores, gt) -> tuple[float, float]:
    """COCOeval on one image as its documentation calls it: GT and results as COCO json lists."""
    truth = COCO()
    truth.dataset = {"images": [{"id": 7}], "categories": [{"id": 3, "name": "finding"}],
                     "annotations": [{"id": i + 1, "image_id": 7, "category_id": 3, "bbox": list(b),
                                      "area": b[2] * b[3], "iscrowd": 0} for i, b in enumerate(gt)]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        dets = truth.loadRes([{"image_id": 7, "category_id": 3, "bbox": list(b), "score": s}
                              for b, s in zip(pred, scores)])
        ev = COCOeval(truth, dets, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[1], ev.stats[0]


@pytest.mark.parametrize("seed", range(6))
def test_ap_equals_cocoeval_called_directly(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = [tuple(float(v) for v in (*rng.uniform(0, 300, 2), *rng.uniform(20, 120, 2))) for _ in range(rng.integers(1, 4))]
    pred = []
    for g in gt:  # near misses and hits of the GT boxes, and stray boxes
        pred.append((g[0] + rng.uniform(-15, 15), g[1] + rng.uniform(-15, 15), g[2] * rng.uniform(0.7, 1.3), g[3]))
    pred += [tuple(float(v) for v in (*rng.uniform(0, 300, 2), *rng.uniform(10, 80, 2))) for _ in range(3)]
    scores = [float(s) for s in rng.uniform(0, 1, len(pred))]
    want50, want = _cocoeval(*ranked(pred, scores), gt)
    got50, got = coco_ap(*ranked(pred, scores), gt)
    assert (got50, got) == (want50, want)
    assert box_scores(pred, scores, gt, 512, 512)["ap@0.5"] == want50


def test_ap_by_hand_and_without_boxes() -> None:
    gt = [(0.0, 0.0, 100.0, 100.0)]
    # a perfect box ranked below a miss: precision 1/2 at recall 1 -> AP 0.5 at every threshold
    ap50, ap = coco_ap([(300.0, 300.0, 50.0, 50.0), (0.0, 0.0, 100.0, 100.0)], [0.9, 0.1], gt)
    assert ap50 == pytest.approx(0.5) and ap == pytest.approx(0.5)
    assert coco_ap([], [], gt) == (0.0, 0.0)


def test_radfact_containment_by_hand() -> None:
    # on a 224 x 224 image the normalised boxes times 224 are the pixel boxes
    gt = [(0, 0, 100, 100)]
    precision, recall, contained = containment([(50, 0, 100, 100)], gt, 224, 224)
    assert precision == pytest.approx(0.5) and recall == pytest.approx(0.5)
    assert contained == 0.0  # RadFact's rule is strict: more than half
    precision, recall, contained = containment([(0, 0, 50, 100)], gt, 224, 224)
    assert (precision, recall, contained) == (1.0, 0.5, 1.0)
    precision, recall, contained = containment([], gt, 224, 224)
    assert math.isnan(precision) and recall == 0.0 and contained == 0.0
    # on a 448 image the boxes are halved, and truncated: x 1..3 -> 0.5..1.5 -> columns 0..1
    precision, _, _ = containment([(1, 0, 2, 448)], [(0, 0, 2, 448)], 448, 448)
    assert precision == 1.0


def test_pooled_counts_on_the_normalised_1024_grid() -> None:
    inter, union = pooled_counts([(0, 0, 512, 1024)], [(256, 0, 512, 1024)], 1024, 1024)
    assert (inter, union) == (256 * 1024, 768 * 1024)
    inter, union = pooled_counts([(0, 0, 1, 2)], [(0, 0, 1, 1)], 2, 2)  # a 2 x 2 image: halves and quarters
    assert (inter, union) == (512 * 512, 512 * 1024)
