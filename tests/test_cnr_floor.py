"""The default protocol's CNR variance floor: a perfect map of the GT scores the highest CNR any
map can, a constant map still scores 0, the paper protocols keep their published zero, and every
scoring route agrees with brute force."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import bench
from bench.core.errors import BenchError
from bench.core.geometry import Geometry, box_mask
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation import metrics as dense
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score_cells, score_dense, score_pixels

DEFAULT = load_protocol("default")
PAPERS = ("vilouras2024", "vilouras2025", "nutzel2025", "dombrowski2024", "dombrowski2024_filtered")


def _image(h: int, w: int, box: tuple[int, int, int, int], outside: dict[tuple[int, int], float]) -> tuple[np.ndarray, np.ndarray]:
    g = box_mask([box], h, w)
    m = g.astype(np.float64)
    for (i, j), v in outside.items():
        m[i, j] = v
    return m, g


def test_the_default_protocol_declares_the_floor_and_the_papers_do_not() -> None:
    assert DEFAULT.cnr_variance_floor == 1e-4
    for name in PAPERS:
        assert load_protocol(name).cnr_variance_floor == 0.0


def test_cnr_with_the_floor_hand_computed() -> None:
    # 4x4 image, GT the top-left 2x2: the perfect binary map has no variance on either side
    perfect, g = _image(4, 4, (0, 0, 2, 2), {})
    assert dense.cnr(perfect, g) == 0.0  # without a floor: the published zero
    assert dense.cnr(perfect, g, floor=1e-4) == pytest.approx(100.0, abs=1e-12)  # 1 / sqrt(1e-4)
    # one outside pixel at 0.5: mean_out = 0.5/12, var_out = 0.25/12 - (0.5/12)^2 = 0.019097..., above the floor
    one, g = _image(4, 4, (0, 0, 2, 2), {(3, 3): 0.5})
    expected = (1 - 0.5 / 12) / math.sqrt(0.25 / 12 - (0.5 / 12) ** 2)
    assert expected == pytest.approx(6.934760, abs=1e-6)
    assert dense.cnr(one, g, floor=1e-4) == pytest.approx(expected, abs=1e-12) == dense.cnr(one, g)
    # 10x10, GT 2x2, one outside pixel at 0.05: var_out = 0.0025/96 - (0.05/96)^2 = 2.577e-5 < 1e-4,
    # so the floor is the denominator: (1 - 0.05/96) / 0.01 = 99.9479..., below the perfect map's 100
    low, g = _image(10, 10, (0, 0, 2, 2), {(9, 9): 0.05})
    assert 0.0025 / 96 - (0.05 / 96) ** 2 == pytest.approx(2.5770e-5, rel=1e-4)
    assert dense.cnr(low, g, floor=1e-4) == pytest.approx((1 - 0.05 / 96) / 0.01, abs=1e-12)
    assert dense.cnr(low, g) == pytest.approx(196.89, abs=0.01)  # without it: above the perfect map
    # a constant map scores 0 whatever the floor; a reversed perfect map -100
    assert dense.cnr(np.full((4, 4), 0.3), g[:4, :4], floor=1e-4) == 0.0
    assert dense.cnr(1 - perfect, box_mask([(0, 0, 2, 2)], 4, 4), floor=1e-4) == pytest.approx(-100.0)


def _sample(w: int, h: int, boxes) -> Sample:
    return Sample("s", "x.png", w, h, "c", "p", tuple(tuple(float(v) for v in b) for b in boxes), "test")


def test_every_route_applies_the_floor_as_brute_force_does() -> None:
    """Native cells, sorted original-size pixels and brute force on maps whose variance is near or under the floor."""
    rng = np.random.default_rng(3)
    protocols = [DEFAULT, dataclasses.replace(DEFAULT, cnr_boxes="per_box"),
                 dataclasses.replace(DEFAULT, cnr_variance="sample", cnr_variance_floor=1e-3)]
    checked = 0
    for trial in range(40):
        cells = int(rng.integers(4, 12))
        scale = int(rng.integers(3, 9))
        side = cells * scale
        boxes = [(int(rng.integers(0, cells - 2)) * scale, int(rng.integers(0, cells - 2)) * scale,
                  int(rng.integers(1, 3)) * scale, int(rng.integers(1, 3)) * scale) for _ in range(int(rng.integers(1, 3)))]
        native = box_mask([(x / scale, y / scale, w / scale, h / scale) for x, y, w, h in boxes], cells, cells)
        values = native.astype(np.float64)
        if trial % 2:  # a faint cell outside: a variance of the order of the floor
            out = np.argwhere(~native)
            i, j = out[int(rng.integers(0, len(out)))]
            values[i, j] = float(rng.choice([0.002, 0.01, 0.05]))
        sample = _sample(side, side, boxes)
        native_map = Heatmap(values, Geometry.whole(side, side))
        original = Heatmap.from_original(np.kron(values, np.ones((scale, scale))))
        for p in protocols:
            ref = score_dense(native_map, sample, p)
            for fast in (score_cells(native_map, sample, p), score_pixels(original, sample, p)):
                assert list(fast) == list(ref)
                for key in ref:
                    assert fast[key] == pytest.approx(ref[key], abs=1e-9, rel=1e-12), (trial, key)
            if p is DEFAULT and trial % 2 == 0:
                assert ref["cnr"] == pytest.approx(100.0)
            checked += 1
    assert checked == 120


def test_a_perfect_map_never_ranks_below_an_imperfect_one() -> None:
    ds = bench.load_dataset("phantom", options={"n_test": "16", "n_train": "0"})
    samples = bench.protocol_samples(ds)
    perfect = [box_mask(s.boxes, s.height, s.width).astype(np.float64) for s in samples]
    rng = np.random.default_rng(0)
    imperfect = [np.clip(m + 0.05 * rng.random(m.shape), 0, 1) for m in perfect]  # the same boxes, a little noise
    constant = [np.full(m.shape, 0.5) for m in perfect]
    best = bench.score_maps(perfect, samples).metric("cnr")[0]
    noisy = bench.score_maps(imperfect, samples).metric("cnr")[0]
    flat = bench.score_maps(constant, samples).metric("cnr")[0]
    assert best == pytest.approx(100.0) and 0 < noisy < best and flat == 0.0
    # the paper protocols keep their published behaviour: no variance, no contrast (single-box samples:
    # their per-box CNR sees no other box outside)
    single = [i for i, s in enumerate(samples) if len(s.boxes) == 1]
    assert len(single) >= 8
    for name in ("vilouras2024", "vilouras2025"):
        table = bench.score_maps([perfect[i] for i in single], [samples[i] for i in single], protocol=name,
                                 model_crop=0).samples  # the maps cover the whole image
        assert table["cnr"].tolist() == [0.0] * len(single)


def test_a_bad_floor_is_refused() -> None:
    for bad in (-1e-4, float("inf"), True, "small"):
        with pytest.raises(BenchError, match="cnr_variance_floor = .* is not a number >= 0"):
            dataclasses.replace(DEFAULT, cnr_variance_floor=bad)
