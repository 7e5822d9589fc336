"""The route interface: every route answers the same metric questions with the same numbers, and a
route asked for a metric it cannot give says so."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.geometry import Geometry, box_mask
from bench.evaluation.cells import build_cells
from bench.evaluation.protocols import load_protocol
from bench.evaluation.route_scores import COLUMNS, route_scores
from bench.evaluation.routes import CellRoute, DenseRoute, MetricUnavailable, SortedPixelRoute

# a 2 x 2 map upsampled (nearest) to a 4 x 4 image; the box is the bottom-left quarter, value 0.75
NATIVE = np.array([[0.0, 0.25], [0.75, 1.0]])
FULL = np.kron(NATIVE, np.ones((2, 2)))
BOX = (0.0, 2.0, 2.0, 2.0)
GT = box_mask([BOX], 4, 4)


def _routes(boxes=(BOX,)):
    parts = lambda: [box_mask([b], 4, 4) for b in boxes]  # noqa: E731
    gt = box_mask(boxes, 4, 4)
    return [DenseRoute(FULL, gt, parts, len(boxes)),
            CellRoute(build_cells(NATIVE, Geometry.whole(4, 4), boxes)),
            SortedPixelRoute(FULL, gt, parts, len(boxes))]


def test_every_route_gives_the_hand_computed_columns() -> None:
    # inside: four pixels of 0.75 (variance 0); outside: four each of 0, 0.25 and 1, mean 5/12, variance 13/72
    cnr = (0.75 - 5 / 12) / math.sqrt(13 / 72)
    # > 0.1 and > 0.2 keep 12 pixels, > 0.3 ... > 0.5 keep 8; the GT (4 pixels) lies in both
    iou = {"iou@0.1": 1 / 3, "iou@0.2": 1 / 3, "iou@0.3": 1 / 2, "iou@0.4": 1 / 2, "iou@0.5": 1 / 2}
    want = {"cnr": cnr, "cnr_abs": cnr, **iou, "miou": 13 / 30,
            "auc_roc": 2 / 3,  # the positive 0.75 beats the negatives 0 and 0.25, loses to 1
            "pointing_game": 0.0}  # the maximum (1.0) is in the bottom-right quarter
    protocol = load_protocol("default")
    for route in _routes():
        got = route_scores(route, protocol)
        assert list(got) == protocol.columns, route.name
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-12), (route.name, key)
        # 5 bins at 0, 0.25, 0.5, 0.75, 1 keep the order of the four values: the same AUC
        assert route.auc_roc_binned(5) == pytest.approx(2 / 3, abs=1e-12)
        assert route.cnr_per_box(0, 0.0, 0.0) == [pytest.approx(cnr, abs=1e-12)]


def test_routes_agree_on_several_parts_per_box_cnr() -> None:
    boxes = (BOX, (2.0, 0.0, 2.0, 2.0))  # the 0.75 and the 0.25 quarters
    per_box = dataclasses.replace(load_protocol("vilouras2024"), drop_boxes="none")
    results = [route_scores(r, per_box) for r in _routes(boxes)]
    # box 1: 0.75 inside, outside the other three quarters (0, 0.25, 1): 1/3 / sqrt(13/72), |.| the same;
    # box 2: 0.25 inside, outside 0 and 1 (the first box left out): (0.25 - 0.5) / sqrt(0.25)
    first, second = (0.75 - 5 / 12) / math.sqrt(13 / 72), -0.5
    for got in results:
        assert got["cnr"] == pytest.approx((first + second) / 2, abs=1e-12)
        assert got["cnr_abs"] == pytest.approx((abs(first) + abs(second)) / 2, abs=1e-12)
    assert results[0] == results[2]


def test_binary_mask_metrics_on_the_dense_route() -> None:
    binary = np.zeros((4, 4), dtype=bool)
    binary[2:4, 0:1] = True  # the left column of the box: 2 pixels of the 4
    route = DenseRoute(FULL, GT, lambda: [GT], 1, binary)
    assert route.iou_fg() == pytest.approx(0.5)
    assert route.miou_fgbg() == pytest.approx((0.5 + 12 / 14) / 2)
    assert route.bbox_iou_fg(inclusive=True) == pytest.approx(0.5)
    assert route.bbox_iou_fg(inclusive=False) == 0.0  # the published off-by-one leaves one row, no column
    assert route.distance() == pytest.approx(0.5)  # centres (0, 2.5) and (0.5, 2.5)
    two_parts = DenseRoute(FULL, GT, lambda: [GT, GT], 2, binary)
    assert math.isnan(two_parts.distance())


@pytest.mark.parametrize("metric", ["iou_fg", "miou_fgbg", "bbox_iou_fg", "bbox_miou_fgbg", "distance"])
def test_a_route_without_a_binary_mask_refuses_the_mask_metrics(metric: str) -> None:
    protocol = load_protocol("nutzel2025")
    for route in _routes():
        with pytest.raises(MetricUnavailable, match=f"the {route.name} route cannot give {metric}"):
            COLUMNS[metric](route, protocol)


def test_a_route_refuses_what_it_cannot_compute() -> None:
    dense, cells, pixels = _routes()
    assert isinstance(dense.cnr(0, 0.0, 0.0, "float16"), float)  # the dense route holds the stored-precision CNR
    for route in (cells, pixels):
        with pytest.raises(MetricUnavailable, match="stored_precision = 'float16'"):
            route.cnr(0, 0.0, 0.0, "float16")
    with pytest.raises(BenchError, match="cannot give made_up: no rule computes it"):
        route_scores(dense, _FakeProtocol(["made_up"]))


class _FakeProtocol:
    """A protocol object listing a metric the dispatch has no rule for (a real Protocol rejects it when loaded)."""

    def __init__(self, metrics: list[str]) -> None:
        self.metrics = metrics
        self.columns = metrics
