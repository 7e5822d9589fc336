"""The fast routes against their references: sorted pixels against brute force, the histogram GMM
against scikit-learn's per-pixel fit, label-crop box dropping from geometry against the
full-resolution label mask."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation import scoring
from bench.evaluation.gmm_histogram import histogram_threshold
from bench.evaluation.gmm_mask import fast_threshold, gmm_threshold
from bench.evaluation.label_crop import FROM_MAP, field_of_view, surviving_boxes, surviving_boxes_mask
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import prefers_pixels, score, score_dense, score_pixels


def _sample(w: int, h: int, boxes) -> Sample:
    return Sample("s", "x.png", w, h, "c", "p", tuple(tuple(float(v) for v in b) for b in boxes), "test")


def _original_map(rng: np.random.Generator, h: int, w: int, kind: int) -> np.ndarray:
    """Original-size maps with what breaks sloppy fast paths: ties, flat regions, NaN frames, negatives."""
    if kind == 0:
        v = rng.random((h, w))
    elif kind == 1:  # few distinct values: ties everywhere, values exactly on thresholds
        v = rng.integers(0, 11, (h, w)) / 10.0
    elif kind == 2:  # half precision
        v = (rng.random((h, w)) ** 3).astype(np.float16).astype(np.float64)
    else:  # negative values (binned AUC excludes them) and a constant block
        v = rng.normal(size=(h, w))
        v[: h // 3, : w // 3] = 0.25
    if kind % 2 == 0:  # a NaN frame outside a centred square, as the published code pads
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        framed = np.full((h, w), np.nan)
        framed[top:top + side, left:left + side] = v[top:top + side, left:left + side]
        v = framed
    return v


@pytest.mark.parametrize("name", ["default", "vilouras2024", "vilouras2025"])
def test_sorted_pixel_route_equals_brute_force(name: str) -> None:
    rng = np.random.default_rng(11)
    protocol = load_protocol(name)
    variants = [protocol, dataclasses.replace(protocol, threshold_op=">=", auc="binned", cnr_variance="sample")]
    for trial in range(16):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        boxes = [(int(rng.integers(0, w - 5)), int(rng.integers(0, h - 5)), int(rng.integers(2, 30)),
                  int(rng.integers(2, 30))) for _ in range(int(rng.integers(1, 4)))]
        hm = Heatmap.from_original(_original_map(rng, h, w, trial % 4))
        s = _sample(w, h, boxes)
        for p in variants:
            try:
                ref = score_dense(hm, s, p, model_crop=FROM_MAP)
            except scoring.ExcludedSample:
                with pytest.raises(scoring.ExcludedSample):
                    score_pixels(hm, s, p, model_crop=FROM_MAP)
                continue
            fast = score_pixels(hm, s, p, model_crop=FROM_MAP)
            assert list(fast) == list(ref)
            for key in ref:
                assert fast[key] == pytest.approx(ref[key], abs=1e-12, rel=1e-12), (name, trial, key)


def test_original_size_maps_take_the_sorted_pixel_route(monkeypatch: pytest.MonkeyPatch) -> None:
    called = []
    monkeypatch.setattr(scoring, "_score_pixels", lambda *a: called.append("pixels") or {})
    monkeypatch.setattr(scoring, "_score_cells", lambda *a: called.append("cells") or {})
    big = Heatmap.from_original(np.random.default_rng(0).random((300, 200)))
    small = Heatmap(np.ones((16, 16)), Geometry.short_side_crop(300, 200, 512, 512))
    assert prefers_pixels(big) and not prefers_pixels(small)
    s = _sample(200, 300, [(10, 10, 30, 30)])
    score(big, s, load_protocol("default"))
    score(small, s, load_protocol("default"))
    assert called == ["pixels", "cells"]


def _half_maps(rng: np.random.Generator):
    for i in range(12):
        n = (16, 48, 80)[i % 3]
        kind = i % 4
        if kind == 0:
            x = rng.random((n, n))
        elif kind == 1:
            x = rng.random((n, n)) ** 4
        elif kind == 2:
            yy, xx = np.mgrid[:n, :n]
            x = np.exp(-((xx - n * rng.random()) ** 2 + (yy - n * rng.random()) ** 2) / (2 * (n / 6) ** 2))
            x = x + 0.1 * rng.random((n, n))
        else:
            x = rng.normal(size=(n, n))
            x[: n // 3] += 3
        scale = 1e-3 if i % 5 == 0 else 1.0  # raw attention-sized values, where reg_covar matters
        yield ((x - x.min()) / (x.max() - x.min()) * scale).astype(np.float16).astype(np.float64)


def test_histogram_gmm_equals_the_per_pixel_fit() -> None:
    for x in _half_maps(np.random.default_rng(5)):
        ref, fast = gmm_threshold(x, 0), histogram_threshold(x.ravel(), 0)
        assert fast == pytest.approx(ref, rel=1e-12, abs=1e-15)
        assert np.array_equal(x > ref, x > fast)


def test_histogram_gmm_unseeded_draws_from_numpy_as_the_per_pixel_fit() -> None:
    x = next(_half_maps(np.random.default_rng(6)))
    np.random.seed(123)
    ref = gmm_threshold(x, None)
    after_ref = np.random.random()
    np.random.seed(123)
    fast = fast_threshold(x, None)
    assert fast == pytest.approx(ref, rel=1e-12) and np.random.random() == after_ref


def test_label_crop_from_geometry_equals_the_full_resolution_mask() -> None:
    rng = np.random.default_rng(3)
    for i in range(60):
        h, w = int(rng.integers(300, 900)), int(rng.integers(300, 900))
        resize = int(rng.choice([512, 256]))
        crop = int(rng.choice([resize, resize * 15 // 16, resize * 7 // 8]))
        g = Geometry.short_side_crop(h, w, resize, crop) if i % 5 else Geometry.whole(h, w)
        boxes = []
        for _ in range(int(rng.integers(1, 4))):
            bx, by = float(rng.integers(-20, w)), float(rng.integers(-20, h))
            bw = float(rng.choice([1, 2, 3, rng.integers(1, w // 2)])) + (rng.random() if i % 3 == 0 else 0.0)
            bh = float(rng.choice([1, 2, 3, rng.integers(1, h // 2)]))
            boxes.append((bx, by, bw, bh))
        assert surviving_boxes(boxes, g, resize) == surviving_boxes_mask(boxes, g, resize), (h, w, resize, crop, boxes)


def test_label_crop_keeps_a_box_whose_value_appears_by_interpolation() -> None:
    """Label 15 of box 3 next to 0 gives 5 (box 1's value) at some edge pixel after the bilinear resize."""
    g = Geometry.short_side_crop(1149, 588, 512, 512)
    boxes = [(487.0, 116.0, 42.0, 3.0), (507.4176, 655.0, 3.1104, 3.0), (508.0, 888.0, 227.0, 2.0)]
    assert surviving_boxes_mask(boxes, g) == [0, 1]
    assert surviving_boxes(boxes, g) == [0, 1]


def test_field_of_view_of_an_original_size_map_is_its_finite_rectangle() -> None:
    g = Geometry.short_side_crop(300, 400, 512, 512)
    v = np.full((300, 400), np.nan)
    v[g.top:g.top + g.height, g.left:g.left + g.width] = 0.5
    found = field_of_view(v, Geometry.whole(300, 400))
    assert (found.top, found.left, found.height, found.width) == (g.top, g.left, g.height, g.width)
    full = Geometry.whole(300, 400)
    assert field_of_view(np.zeros((300, 400)), full) == full
