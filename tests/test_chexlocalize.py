"""The chexlocalize2022 protocol: each published rule on hand-computed cases."""

from __future__ import annotations

import dataclasses
import tomllib

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as cocomask

from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.core.ground_truth import MaskSource, rle_text
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation import chexlocalize as cx
from bench.evaluation.chexlocalize_tuning import protocol_toml, tune_thresholds, tuned_protocol
from bench.evaluation.image_bootstrap import draw_counts, index_interval, paired_images, summarise_images
from bench.evaluation.protocols import load_protocol, protocol_from_toml
from bench.evaluation.scoring import score, score_dense

PROTOCOL = load_protocol("chexlocalize2022")


def test_the_protocol_file_sets_the_published_choices() -> None:
    p = PROTOCOL
    assert (p.interpolation, p.eval_grid, p.normalise, p.segmentation) == ("bilinear", "original", "minmax", "otsu")
    assert p.columns == ["seg_iou", "hit_rate"]
    assert (p.bootstrap, p.bootstrap_resamples, p.ci_level, p.seed, p.groups) == ("images", 1000, 0.95, 0, ("macro",))
    assert load_protocol("default").bootstrap == "stratified" and load_protocol("default").segmentation == "none"


@pytest.mark.parametrize("change, message", [
    ({"segmentation": "none"}, "metric 'seg_iou' needs segmentation"),
    ({"metrics": ("seg_iou", "miou")}, "scores only seg_iou, hit_rate, not 'miou'"),
    ({"segmentation": "thresholds"}, "needs a seg_thresholds table"),
    ({"seg_thresholds": {"Edema": 0.3}}, "seg_thresholds needs segmentation = \"thresholds\""),
    ({"segmentation": "thresholds", "seg_thresholds": {"Edema": 1.5}}, "seg_thresholds.Edema must be a number in [0, 1]"),
    ({"groups": ("macro", "weighted")}, "summarises the groups macro and micro only"),
])
def test_inconsistent_segmentation_fields_are_one_line(change, message) -> None:
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dataclasses.replace(PROTOCOL, **change)


def test_eight_bit_levels_truncate() -> None:
    assert cx.to_uint8(np.array([0.0, 0.5, 0.999, 1.0, np.nan])).tolist() == [0, 127, 254, 255, 0]


def test_otsu_threshold_by_hand() -> None:
    # two levels: every t in [51, 203] splits them alike; the first valid one wins
    two = np.array([51] * 6 + [204] * 10, dtype=np.uint8)
    assert cx.otsu_threshold(two) == 51
    # levels 0 (4 px), 100 (4 px), 200 (8 px): split after 0 gives .25*.75*(0-166.7)^2 = 5208,
    # after 100 gives .5*.5*(50-200)^2 = 5625: t = 100
    three = np.array([0] * 4 + [100] * 4 + [200] * 8, dtype=np.uint8)
    assert cx.otsu_threshold(three) == 100
    assert cx.otsu_threshold(np.full(9, 77, dtype=np.uint8)) == 0


def test_otsu_threshold_splits_as_scikit_image() -> None:
    from skimage.filters import threshold_otsu

    rng = np.random.default_rng(3)
    for _ in range(20):
        img = rng.choice(rng.integers(0, 256, size=6), size=(30, 40)).astype(np.uint8)
        if img.min() == img.max():
            continue
        assert np.array_equal(img > cx.otsu_threshold(img), img > threshold_otsu(img))


def _shapes() -> tuple[np.ndarray, np.ndarray]:
    """A map of hand-made shapes on 0 and the mask the published contour filling gives."""
    m = np.zeros((20, 20))
    m[2:9, 2:9] = 1.0
    m[4:7, 4:7] = 0.0          # a 3x3 hole: filled
    m[0, 19] = 1.0             # one isolated pixel: its contour has one point, dropped
    m[18, 0:2] = 1.0           # two pixels: kept
    m[12, 12:16] = m[15, 12:16] = m[13:15, 12] = 1.0
    m[14, 15] = 1.0            # a box outline with a gap at (13, 15) on its right side...
    m[13, 16] = 1.0            # ...closed only diagonally by (13, 16): the 2x2 inside is a hole (4-connected background)
    expected = np.zeros((20, 20), dtype=bool)
    expected[2:9, 2:9] = True
    expected[18, 0:2] = True
    expected[12:16, 12:16] = True
    expected[13, 16] = True
    return m, expected


def test_otsu_segmentation_fills_contours_and_drops_specks() -> None:
    m, expected = _shapes()
    assert np.array_equal(cx.otsu_segmentation(m), expected)
    assert not cx.otsu_segmentation(np.zeros((5, 5))).any()


def test_a_gap_open_to_the_outside_is_not_a_hole() -> None:
    b = np.zeros((7, 7), dtype=bool)
    b[1, 1:6] = b[5, 1:6] = b[1:6, 1] = True
    b[1:3, 5] = b[4:6, 5] = True   # right side open at (3, 5): the inside reaches the outside 4-connected
    assert np.array_equal(cx.fill_contours(b), b)
    b[3, 5] = True
    assert cx.fill_contours(b)[2:5, 2:5].all()


def test_threshold_rule_is_strict() -> None:
    assert cx.threshold_segmentation(np.array([0.2, 0.3, 0.31, np.nan]), 0.3).tolist() == [False, False, True, False]


def test_iou_only_where_both_masks_have_pixels() -> None:
    pred, gt = np.zeros((3, 3), bool), np.zeros((3, 3), bool)
    pred[0:2, 0:2] = True
    gt[0:2, 0:3] = True
    assert cx.seg_iou(pred, gt) == pytest.approx(4 / 6)
    assert np.isnan(cx.seg_iou(np.zeros((3, 3), bool), gt)) and np.isnan(cx.seg_iou(pred, np.zeros((3, 3), bool)))


def test_hit_at_the_first_maximum_and_by_points() -> None:
    gt = np.zeros((3, 4), bool)
    gt[1, 2] = True
    v = np.array([[0, 0, 0, 0], [0, np.nan, 5, 0], [0, 0, 5, 0]], dtype=float)
    assert cx.argmax_hit(v, gt) == 1.0                # first of the two maxima, row-major; NaN never wins
    assert cx.argmax_hit(v[::-1], gt) == 0.0
    assert np.isnan(cx.argmax_hit(v, np.zeros_like(gt)))
    assert cx.points_hit([(0.5, 0.5), (2.9, 1.99)], gt) == 1.0   # [int(y), int(x)] = [1, 2]
    assert cx.points_hit([(3.0, 1.0)], gt) == 0.0 and cx.points_hit([], gt) == 0.0
    assert np.isnan(cx.points_hit([(2, 1)], np.zeros_like(gt)))


def _rle(mask: np.ndarray) -> str:
    return rle_text(cocomask.encode(np.asfortranarray(mask.astype(np.uint8))))


def test_the_route_scores_a_mask_sample() -> None:
    m, filled = _shapes()
    gt = np.zeros((20, 20), bool)
    gt[2:9, 2:12] = True
    sample = Sample("s", "s.png", 20, 20, "Edema", "edema", (), mask=MaskSource(rle=_rle(gt)))
    # a map at the original size: bilinear to the same size is the identity
    heatmap = Heatmap(m, Geometry.whole(20, 20))
    # the filled 7x7 square lies in the 7x10 GT; the other shapes (2 + 16 + 1 px) lie outside it
    assert (filled & gt).sum() / (filled | gt).sum() == pytest.approx(49 / 89)
    for scorer in (score, score_dense):
        out = scorer(heatmap, sample, PROTOCOL)
        assert list(out) == ["seg_iou", "hit_rate"]
        assert out["seg_iou"] == pytest.approx(49 / 89)
        # the first maximum is the isolated pixel (0, 19): dropped from the mask, still the map's maximum
        assert out["hit_rate"] == 0.0
    shifted = Heatmap(np.where(np.arange(20) == 19, 0.0, m), Geometry.whole(20, 20))
    assert score(shifted, sample, PROTOCOL)["hit_rate"] == 1.0   # now (2, 2)
    # a method that states points is scored by them; a binary map is its own segmentation
    stated = Heatmap(gt.astype(np.uint8), Geometry.whole(20, 20), {"binary": True, "points": [[19.0, 19.0]]})
    out = score(stated, sample, PROTOCOL)
    assert out == {"seg_iou": 1.0, "hit_rate": 0.0}


def test_tuning_by_hand_and_the_tuned_protocol_file(tmp_path) -> None:
    items = [
        ("A", np.array([[0.1, 0.35, 0.55, 0.9]]), np.array([[0, 0, 1, 1]], bool)),
        ("A", np.array([[0.25, 0.45, 0.65, 0.8]]), np.array([[0, 0, 0, 1]], bool)),
        ("B", np.array([[0.1, 0.9]]), np.zeros((1, 2), bool)),
    ]
    chosen, curves = tune_thresholds(items)
    # mean IoU per t: .2 (2/3+1/4)/2, .3 (2/3+1/3)/2, .4 (1+1/3)/2, .5 (1+1/2)/2, .6 (1/2+1/2)/2, .7 (1/2+1)/2,
    # .8 (1/2 + undefined: nothing above .8 in the second map)
    assert curves["A"] == pytest.approx([11 / 24, 0.5, 2 / 3, 0.75, 0.5, 0.75, 0.5])
    assert chosen == {"A": 0.5, "B": 0.2}    # first of the tied maxima; no defined IoU keeps the first candidate
    tuned = tuned_protocol(PROTOCOL, chosen, "mine", "validation maps")
    text = protocol_toml(tuned)
    again = protocol_from_toml(tomllib.loads(text), "mine.toml")
    assert again == tuned and again.fingerprint() == tuned.fingerprint() != PROTOCOL.fingerprint()
    assert again.seg_thresholds == {"A": 0.5, "B": 0.2} and again.segmentation == "thresholds"
    sample = Sample("s", "s.png", 4, 1, "A", "a", ((0, 0, 4, 1),))
    gt_last = Sample("t", "t.png", 4, 1, "A", "a", ((3, 0, 1, 1),))
    heatmap = Heatmap(np.array([[0.25, 0.45, 0.65, 0.8]]), Geometry.whole(1, 4))
    # min-max: [0, .364, .727, 1]; > 0.5 keeps the last two
    assert score(heatmap, gt_last, again)["seg_iou"] == pytest.approx(0.5)
    assert score(heatmap, sample, again)["seg_iou"] == pytest.approx(0.5)
    with pytest.raises(Exception, match="no tuned threshold for category 'C'"):
        score(heatmap, dataclasses.replace(sample, category="C"), again)


def _published_bootstrap(wide: pd.DataFrame, resamples: int, seed: int) -> pd.DataFrame:
    """eval.py's bootstrap_metric, written out again: np.random.seed, then choice of rows, pandas means."""
    np.random.seed(seed)
    records = []
    for _ in range(resamples):
        ids = np.random.choice(len(wide), size=len(wide), replace=True)
        records.append({c: wide.iloc[ids][c].mean() for c in wide.columns})
    return pd.DataFrame.from_records(records)


def _published_ci(series: pd.Series) -> tuple[float, float, float]:
    s = series.sort_values()
    return s.iloc[int(0.025 * len(s)) - 1], s.mean(), s.iloc[int(0.975 * len(s)) - 1]


def _tables(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A per-image wide table (NaN: undefined) and the same values as a long samples table."""
    rng = np.random.default_rng(seed)
    wide = pd.DataFrame(rng.random((23, 3)), columns=["Cardiomegaly", "Edema", "Lung Lesion"],
                        index=[f"patient{i:03d}" for i in range(23)])
    wide = wide.mask(rng.random(wide.shape) < 0.3)
    long = wide.stack(future_stack=True).reset_index()
    long.columns = ["image_id", "category", "seg_iou"]
    long["sample_id"] = long["image_id"] + "_" + long["category"]
    return wide, long.sample(frac=1, random_state=1)  # any row order


def test_draws_are_numpy_legacy_choice() -> None:
    np.random.seed(7)
    expected = [np.bincount(np.random.choice(11, 11, replace=True), minlength=11) for _ in range(5)]
    assert np.array_equal(draw_counts(11, 5, 7), np.array(expected))


def test_index_interval_rule() -> None:
    values = np.random.default_rng(0).permutation(np.arange(1.0, 41.0))
    lo, hi = index_interval(values[:, None], 0.95)
    assert (lo[0], hi[0]) == (1.0, 39.0)   # int(0.025 * 40) - 1 = 0, int(0.975 * 40) - 1 = 38
    lo, hi = index_interval(np.arange(1000.0)[::-1, None], 0.95)
    assert (lo[0], hi[0]) == (24.0, 974.0)


def test_image_bootstrap_against_the_published_algorithm() -> None:
    wide, long = _tables(5)
    summary = summarise_images(long, ["seg_iou"], ("macro",), resamples=300, level=0.95, seed=0).set_index("group")
    boot = _published_bootstrap(wide, 300, 0)
    for task in wide.columns:
        lo, mean, hi = _published_ci(boot[task])
        row = summary.loc[task]
        assert (row["ci_low"], row["mean"], row["ci_high"]) == pytest.approx((lo, mean, hi), abs=1e-12)
        assert row["n"] == wide[task].notna().sum()
    lo, mean, hi = _published_ci(boot.mean(axis=1))     # the published "Average": mean over pathologies per resample
    assert (summary.loc["macro", "ci_low"], summary.loc["macro", "mean"], summary.loc["macro", "ci_high"]) == \
        pytest.approx((lo, mean, hi), abs=1e-12)


def test_percentage_decrease_against_the_published_algorithm() -> None:
    hb_wide, hb_long = _tables(5)
    m_wide, m_long = _tables(6)
    m_long = m_long.set_index("sample_id").loc[hb_long["sample_id"]].reset_index()
    hb_bs, m_bs = _published_bootstrap(hb_wide, 200, 0), _published_bootstrap(m_wide, 200, 0)
    out = paired_images(m_long, hb_long, ["seg_iou"], "Edema", 200, 0.95, 0)
    pct = (hb_bs["Edema"] - m_bs["Edema"]) / hb_bs["Edema"]
    lo, _, hi = _published_ci(pct)
    point = (hb_bs["Edema"].mean() - m_bs["Edema"].mean()) / hb_bs["Edema"].mean() * 100
    assert (out["pct_decrease"][0], out["pct_low"][0], out["pct_high"][0]) == pytest.approx((point, 100 * lo, 100 * hi))
    lo, mean, hi = _published_ci(m_bs["Edema"] - hb_bs["Edema"])
    assert (out["difference"][0], out["ci_low"][0], out["ci_high"][0]) == pytest.approx((mean, lo, hi))
    avg = paired_images(m_long, hb_long, ["seg_iou"], "macro", 200, 0.95, 0)
    avg_pct = 100 * (hb_bs.mean(axis=1) - m_bs.mean(axis=1)) / hb_bs.mean(axis=1)
    lo, _, hi = _published_ci(avg_pct)
    assert (avg["pct_low"][0], avg["pct_high"][0]) == pytest.approx((lo, hi))


def test_bench_tune_thresholds_writes_a_protocol(bench_cli, tmp_path) -> None:
    from bench.core.geometry import box_mask
    from bench.datasets import get_dataset
    from bench.running.rundir import file_name

    options = {"n_test": "4", "n_train": "6"}
    maps = tmp_path / "maps"
    maps.mkdir()
    train = [s for s in get_dataset("phantom", None, options).samples() if s.split == "train"]
    for s in train:
        inside = box_mask(s.boxes, s.height, s.width)
        ring = box_mask([(x - 8, y - 8, w + 16, h + 16) for x, y, w, h in s.boxes], s.height, s.width)
        # min-max: 1 on the GT, 0.6 on a ring around it: every t below 0.6 adds the ring, 0.6 and above give IoU 1
        np.save(maps / f"{file_name(s.sample_id)}.npy", np.where(inside, 0.75, np.where(ring, 0.45, 0.0)))
    out = tmp_path / "mine.toml"
    r = bench_cli("tune", "thresholds", "--heatmaps", maps, "-d", "phantom", "-O", "n_test=4", "-O", "n_train=6",
                  "--split", "train", "--out", out)
    assert r.code == 0, r.err
    tuned = protocol_from_toml(tomllib.loads(out.read_text()), str(out))
    assert tuned.name == "mine" and tuned.segmentation == "thresholds" and tuned.split == "test"
    assert tuned.seg_thresholds == {c: 0.6 for c in sorted({s.category for s in train})}
    assert dataclasses.replace(tuned, name=PROTOCOL.name, description=PROTOCOL.description, segmentation="otsu",
                               seg_thresholds={}) == PROTOCOL
    r = bench_cli("tune", "thresholds", "--heatmaps", maps, "-d", "phantom", "--out", tmp_path / "x.txt")
    assert r.code == 2 and "is a .toml file" in r.err and not (tmp_path / "x.txt").exists()
    r = bench_cli("tune", "thresholds", "--heatmaps", maps, "-d", "phantom", "-p", "default", "--out", out)
    assert r.code == 2 and "makes no mask of the map" in r.err


def test_the_image_of_a_sample() -> None:
    from bench.evaluation.image_bootstrap import image_id

    s = Sample("a", "/data/test/patient1/study1/view1_frontal.jpg", 4, 4, "c", "c", ((0, 0, 1, 1),))
    assert image_id(s) == "view1_frontal"
    assert image_id(dataclasses.replace(s, extra={"cxr_id": "patient1_study1_view1_frontal"})) == \
        "patient1_study1_view1_frontal"
    assert image_id(dataclasses.replace(s, extra={"image_id": "x", "cxr_id": "y"})) == "x"
