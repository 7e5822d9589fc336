"""Samples whose ground truth is a mask: routes, parts, refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.core.errors import SampleError
from bench.core.geometry import Geometry
from bench.core.ground_truth import MaskSource
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score, score_cells, score_dense, score_pixels


def _mask_sample(tmp_path, mask: np.ndarray, boxes=()) -> Sample:
    path = tmp_path / "m.npy"
    np.save(path, mask.astype(np.uint8))
    h, w = mask.shape
    return Sample("s", "x.png", w, h, "c", "p", tuple(boxes), "test", mask=MaskSource(path=str(path)))


def _two_blobs(h: int = 40, w: int = 50) -> np.ndarray:
    """An L-shaped lesion and a diagonal pair (8-connected: one part): two parts in all."""
    m = np.zeros((h, w), dtype=bool)
    m[5:20, 5:9] = True
    m[16:20, 5:20] = True
    m[30, 30] = m[31, 31] = m[32, 32] = True
    return m


@pytest.mark.parametrize("name", ["default", "vilouras2024"])
def test_mask_gt_pixel_route_equals_dense(tmp_path, name: str) -> None:
    rng = np.random.default_rng(3)
    protocol = dataclasses.replace(load_protocol(name), drop_boxes="none")
    s = _mask_sample(tmp_path, _two_blobs())
    for trial in range(4):
        v = rng.integers(0, 11, (40, 50)) / 10.0 if trial % 2 else rng.random((40, 50))
        for hm in (Heatmap.from_original(v), Heatmap(v[::5, ::5], Geometry.whole(40, 50))):
            ref = score_dense(hm, s, protocol)
            fast = score(hm, s, protocol)
            assert fast.keys() == ref.keys()
            for k in ref:
                assert fast[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-12), k


def test_mask_equal_to_box_scores_as_the_box(tmp_path) -> None:
    rng = np.random.default_rng(5)
    protocol = dataclasses.replace(load_protocol("vilouras2024"), drop_boxes="none")
    m = np.zeros((40, 50), dtype=bool)
    m[10:25, 12:30] = True  # the box (12, 10, 18, 15)
    boxed = Sample("s", "x.png", 50, 40, "c", "p", ((12.0, 10.0, 18.0, 15.0),), "test")
    masked = _mask_sample(tmp_path, m)
    hm = Heatmap(rng.random((8, 10)), Geometry.whole(40, 50))
    assert score(hm, masked, protocol) == pytest.approx(score(hm, boxed, protocol), rel=1e-12)


def test_mask_parts_are_8_connected_components(tmp_path) -> None:
    """Per-part CNR over the two components (Vilouras et al.'s sequential exclusion, population variance):
    part A (4 pixels at 1) against all else; part B (two diagonal pixels at 0) against all but A and B."""
    protocol = dataclasses.replace(load_protocol("vilouras2024"), drop_boxes="none")
    m = np.zeros((10, 10), dtype=bool)
    m[1:3, 1:3] = True  # part A: 4 pixels
    m[7, 7] = m[8, 8] = True  # part B: 2 pixels, diagonal neighbours
    v = np.zeros((10, 10))
    v[1:3, 1:3] = 1.0
    v[0, 0] = 0.5
    s = _mask_sample(tmp_path, m)
    # A: outside is 96 pixels, one at 0.5: mean 0.5/96, var 0.25/96 - (0.5/96)^2; inside constant 1
    mean_a, var_a = 0.5 / 96, 0.25 / 96 - (0.5 / 96) ** 2
    cnr_a = (1 - mean_a) / np.sqrt(var_a)
    # B: outside is 94 pixels, one at 0.5; inside constant 0
    mean_b, var_b = 0.5 / 94, 0.25 / 94 - (0.5 / 94) ** 2
    cnr_b = (0 - mean_b) / np.sqrt(var_b)
    got = score_pixels(Heatmap.from_original(v), s, protocol)
    assert got["cnr"] == pytest.approx((cnr_a + cnr_b) / 2, rel=1e-9)
    assert got["cnr_abs"] == pytest.approx((abs(cnr_a) + abs(cnr_b)) / 2, rel=1e-9)
    assert score_dense(Heatmap.from_original(v), s, protocol)["cnr"] == pytest.approx(got["cnr"], rel=1e-12)


@pytest.mark.parametrize("name,field", [("vilouras2024", "drop_boxes"), ("nutzel2025", "eval_grid"),
                                        ("dombrowski2024", "eval_grid")])
def test_mask_gt_refused_under_box_only_geometry(tmp_path, name: str, field: str) -> None:
    s = _mask_sample(tmp_path, _two_blobs())
    hm = Heatmap.from_original(np.random.default_rng(0).random((40, 50)))
    for fn in (score, score_dense):
        with pytest.raises(SampleError, match=f"protocol '{name}' has {field} = .*defined on boxes only"):
            fn(hm, s, load_protocol(name))


def test_mask_gt_has_no_cell_route(tmp_path) -> None:
    s = _mask_sample(tmp_path, _two_blobs())
    with pytest.raises(SampleError, match="cell route cuts along boxes"):
        score_cells(Heatmap(np.ones((8, 10)), Geometry.whole(40, 50)), s, load_protocol("default"))


def test_box_coords_truncate_leaves_a_mask_alone(tmp_path) -> None:
    protocol = dataclasses.replace(load_protocol("default"), box_coords="truncate")
    m = np.zeros((40, 50), dtype=bool)
    m[10:25, 12:30] = True
    s = _mask_sample(tmp_path, m, boxes=((12.7, 10.7, 18.0, 15.0),))
    hm = Heatmap.from_original(np.random.default_rng(1).random((40, 50)))
    assert score(hm, s, protocol) == score(hm, dataclasses.replace(s, boxes=()), protocol)


def _with_dice(name: str, **changes) -> "object":
    p = load_protocol(name)
    return dataclasses.replace(p, metrics=tuple(p.metrics) + ("dice",), drop_boxes="none", **changes)


def test_dice_hand_computed(tmp_path) -> None:
    """GT 2x2 block; the map is above 0.5 on the block's top row and on two background pixels:
    tp = 2, |pred| = 4, |G| = 4 -> Dice 0.5 at 0.5; at 0.1 the 3x3 corner and the two: tp 4, |pred| 11 -> 8/15."""
    m = np.zeros((6, 6), dtype=bool)
    m[0:2, 0:2] = True
    v = np.zeros((6, 6))
    v[0:3, 0:3] = 0.3
    v[0, 0:2] = 0.9
    v[5, 4:6] = 0.9
    protocol = dataclasses.replace(_with_dice("default"), thresholds=(0.1, 0.5))
    s = _mask_sample(tmp_path, m)
    for fn in (score_dense, score_pixels):
        got = fn(Heatmap.from_original(v), s, protocol)
        assert got["dice@0.5"] == pytest.approx(0.5)
        assert got["dice@0.1"] == pytest.approx(8 / 15)
        assert got["iou@0.5"] == pytest.approx(2 / 6)
    boxed = Sample("s", "x.png", 6, 6, "c", "p", ((0.0, 0.0, 2.0, 2.0),), "test")
    assert score_cells(Heatmap(v[::3, ::3], Geometry.whole(6, 6)), boxed, protocol)["dice@0.5"] == pytest.approx(
        8 / 13)  # native 2x2 of 3x3 cells, only the top-left (0.9) above 0.5: tp 4, |pred| 9, |G| 4


@pytest.mark.parametrize("name", ["default", "vilouras2024"])
def test_dice_fast_routes_equal_brute_force(tmp_path, name: str) -> None:
    rng = np.random.default_rng(17)
    protocol = _with_dice(name)
    variants = [protocol, dataclasses.replace(protocol, threshold_op=">=")]
    mask_sample = _mask_sample(tmp_path, _two_blobs())
    for trial in range(6):
        boxes = tuple((float(rng.integers(0, 40)), float(rng.integers(0, 30)), float(rng.integers(2, 12)),
                       float(rng.integers(2, 12))) for _ in range(int(rng.integers(1, 3))))
        box_sample = Sample("s", "x.png", 50, 40, "c", "p", boxes, "test")
        v = rng.integers(0, 11, (40, 50)) / 10.0 if trial % 2 else rng.random((40, 50))
        for p in variants:
            for hm in (Heatmap.from_original(v), Heatmap(v[::5, ::5], Geometry.whole(40, 50))):
                for s, fast in ((box_sample, score_pixels), (box_sample, score_cells), (mask_sample, score_pixels)):
                    ref, got = score_dense(hm, s, p), fast(hm, s, p)
                    dice = [c for c in ref if c.startswith("dice@")]
                    assert len(dice) == len(p.thresholds)
                    for c in dice:
                        assert got[c] == pytest.approx(ref[c], rel=1e-12, abs=1e-15), (fast.__name__, c)


def test_chexlocalize_masks_scored_under_default(tmp_path, bench_cli) -> None:
    """The CheXlocalize fixture's mask samples under the default protocol (sorted-pixel route), by hand."""
    import pandas as pd
    import public_fixtures as fx

    from bench.core.ground_truth import load_mask
    from bench.datasets import get_dataset

    fx.chexlocalize(tmp_path / "data")
    samples = get_dataset("chexlocalize", tmp_path / "data").samples()
    maps = tmp_path / "maps"
    maps.mkdir()
    for s in samples:
        v = load_mask(s.mask, s.height, s.width).astype(np.float32)
        if s.category == "airspace opacity":  # one row lower: 12 of 18 pixels shared, union 24
            v = np.roll(v, 1, axis=0)
        np.save(maps / f"{s.sample_id}.npy", v)
    res = bench_cli("score", "--heatmaps", maps, "-d", "chexlocalize", "--data-root", tmp_path / "data",
                    "--out", tmp_path / "scored")
    assert res.code == 0, res.err
    got = pd.read_csv(tmp_path / "scored" / "samples.csv").set_index("category")
    assert sorted(got.index) == ["airspace opacity", "cardiomegaly", "pleural effusion"]
    assert got.loc["airspace opacity", "miou"] == pytest.approx(0.5)
    assert got.loc["cardiomegaly", "miou"] == 1.0 and got.loc["pleural effusion", "miou"] == 1.0
    # AUC of the shifted map: 12 of 18 positives at 1 above all 302 negatives but 6, 6 positives at 0
    # tie with 296 of them and lose to 6
    n_pos, n_neg = 18, 16 * 20 - 18
    assert got.loc["airspace opacity", "auc_roc"] == pytest.approx(
        (12 * (n_neg - 6) + 12 * 6 * 0.5 + 6 * (n_neg - 6) * 0.5) / (n_pos * n_neg))
