"""The published protocols: every option against hand-computed values on tiny maps, and the numbers
the published evaluation code gives on synthetic checks (each option's source is named in the
comments of `protocols/*.toml`)."""

from __future__ import annotations

import dataclasses
import statistics

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation import metrics as dense
from bench.evaluation import scoring
from bench.evaluation.crop_grid import CropSpace, gt_mask
from bench.evaluation.gmm_mask import PreviousMask
from bench.evaluation.label_crop import WHOLE_IMAGE
from bench.evaluation.protocols import (
    FLOAT32_MAX,
    Protocol,
    load_protocol,
    protocol_from_toml,
    protocol_names,
)
from bench.evaluation.scoring import ExcludedSample, score, score_cells, score_dense, select_samples
from bench.evaluation.stats import group_means, summarise
from bench.running.rundir import RunDir
from bench.running.runner import score_all

PAPERS = ("vilouras2024", "vilouras2025", "nutzel2025", "dombrowski2024", "dombrowski2024_filtered")


def proto(name: str, **changes) -> Protocol:
    return dataclasses.replace(load_protocol(name), **changes)


def sample(width: int, height: int, *boxes, category: str = "c", sid: str = "s", split: str = "test",
           image: str = "x.png", phrase: str = "p") -> Sample:
    return Sample(sid, image, width, height, category, phrase, tuple(tuple(float(v) for v in b) for b in boxes), split)


def whole(values) -> Heatmap:
    v = np.asarray(values, dtype=np.float64)
    return Heatmap(v, Geometry.whole(*v.shape))


# ---------------------------------------------------------------- the files themselves


@pytest.mark.parametrize("name", PAPERS)
def test_paper_protocol_files_load_and_say_what_they_reproduce(name: str) -> None:
    p = load_protocol(name)
    assert p.name == name and p.description and p.reproduces
    assert "@" in p.reproduces  # repository@commit of the code it follows (or the code it falls back on)
    assert "miou_fgbg" not in p.columns or "miou" not in p.columns


def test_paper_protocol_choices() -> None:
    v24, v25, nu, do, filtered = (load_protocol(n) for n in PAPERS)
    assert (v24.eval_grid, v24.interpolation, v24.outside, v24.drop_boxes) == ("original", "nearest", "exclude", "label_crop")
    assert (v24.cnr_boxes, v24.cnr_variance, v24.threshold_op) == ("per_box", "population", ">")
    assert {"auc_roc", "auc_roc_binned", "miou"} <= set(v24.columns) and v24.auc_bins == 5
    assert v24.value_policy("biovil").clip_min == 0.0 and v24.value_policy("biovil").normalise == "none"
    assert v24.value_policy("oracle_gaussian").normalise == "minmax" and v24.groups == ("macro",)
    assert (v25.outside, v25.normalise, v25.drop_boxes, v25.bootstrap_resamples) == ("zero", "minmax", "none", 10_000)
    assert v25.value_policy("biovil").normalise == "minmax"
    for p in (nu, do):
        assert (p.eval_grid, p.crop_size, p.interpolation, p.binary_mask) == ("centre_crop", 512, "bilinear", "gmm")
        assert (p.cnr_variance, p.cnr_boxes, p.grouping, p.auc) == ("sample", "union", "category", "exact")
        assert {"miou_fgbg", "iou_fg", "pointing_game"} <= set(p.columns) and "miou" not in p.columns
        # the published bugs are reproducible options, never the default
        assert (p.gmm_seed, p.bbox_rect, p.on_gmm_error) == ("fixed", "inclusive", "empty")
    assert nu.gt_antialias and not do.gt_antialias
    assert nu.groups == ("macro", "micro", "weighted") and "weighted" not in do.groups
    assert (nu.on_empty_mask, do.on_empty_mask) == ("zero", "score")
    assert "cnr_abs" in do.columns and "cnr_abs" not in nu.columns
    assert (nu.precision, do.precision) == ("float16", "float64") and "distance" in nu.columns + do.columns
    # Table 7 of Dombrowski et al.: the same protocol on a filtered sample set
    assert dataclasses.replace(filtered, name=do.name, description=do.description,
                               require_category_in_phrase=False) == do
    assert filtered.require_category_in_phrase and not any(p.require_category_in_phrase for p in (v24, v25, nu, do))


def test_bad_protocol_options_are_one_line_errors() -> None:
    with pytest.raises(BenchError, match="auc_bins must be at least 2"):
        proto("vilouras2024", auc_bins=1)
    with pytest.raises(BenchError, match="needs binary_mask"):
        protocol_from_toml({"name": "x", "metrics": {"metrics": ["miou_fgbg"]}}, "x.toml")
    with pytest.raises(BenchError, match="unknown key values.backend.biovil.bogus"):
        protocol_from_toml({"name": "x", "values": {"backend": {"biovil": {"bogus": 1}}}}, "x.toml")


# ---------------------------------------------------------------- Vilouras et al. 2024


def test_binned_auc_beside_exact_auc_audit_numbers() -> None:
    """The audit's smooth synthetic map: torcheval 5-bin AUC 0.9659, exact AUC 0.9939."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    heat = np.exp(-(((xx - 250) / 60.0) ** 2 + ((yy - 150) / 50.0) ** 2)) + 0.15 * rng.random((300, 400))
    heat = (heat - heat.min()) / (heat.max() - heat.min())
    s = sample(400, 300, (200, 100, 120, 100))
    got = score(whole(heat), s, load_protocol("vilouras2024"), model_crop=WHOLE_IMAGE)
    assert got["auc_roc_binned"] == pytest.approx(0.9659, abs=1e-4)
    assert got["auc_roc"] == pytest.approx(0.9939, abs=1e-4)
    # a NaN frame with GT inside it leaves the binned AUC unchanged: NaN pixels are in neither class
    padded = np.pad(heat, ((0, 0), (30, 30)), constant_values=np.nan)
    s_pad = sample(460, 300, (230, 100, 120, 100), (0, 100, 30, 100))
    got_pad = score(whole(padded), s_pad, load_protocol("vilouras2024"))
    assert got_pad["auc_roc_binned"] == pytest.approx(got["auc_roc_binned"], abs=1e-12)


def test_binned_auc_is_exact_auc_of_the_quantised_map_over_non_negative_pixels() -> None:
    """Audit equivalence: torcheval's 5-bin AUC = sklearn's AUC on the number of thresholds passed,
    over pixels >= 0 only (negative scores fall in neither class), on both scoring routes."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:400]
    heat = np.exp(-(((xx - 250) / 60.0) ** 2 + ((yy - 150) / 50.0) ** 2)) + 0.15 * rng.random((300, 400))
    heat = (heat - heat.min()) / (heat.max() - heat.min())
    heat[:50] -= 2.0
    gt = np.zeros((300, 400), dtype=bool)
    gt[100:200, 200:320] = True
    levels = (heat[..., None] >= np.linspace(0, 1, 5)).sum(-1)
    kept = heat >= 0
    expected = roc_auc_score(gt[kept], levels[kept])
    assert expected == pytest.approx(0.964219, abs=1e-6)  # the audit's printed value
    s = sample(400, 300, (200, 100, 120, 100))
    p = proto("vilouras2024", normalise="none", drop_boxes="none")
    for route in (score_dense, score_cells):
        assert route(whole(heat), s, p)["auc_roc_binned"] == pytest.approx(expected, abs=1e-9)


def test_binned_auc_hand_computed_and_auc_option() -> None:
    # levels (thresholds 0, .25, .5, .75, 1 reached with >=): 0.1 -> 1, 0.2 -> 1, 0.3 -> 2, 0.9 -> 4
    # positives {0.2, 0.9} -> {1, 4}, negatives {0.1, 0.3} -> {1, 2}: pairs 0.5 + 0 + 1 + 1 = 2.5 of 4
    hm = whole([[0.1, 0.2, 0.3, 0.9]])
    s = sample(4, 1, (1, 0, 1, 1), (3, 0, 1, 1))
    base = proto("vilouras2024", normalise="none", drop_boxes="none")
    got = score(hm, s, base)
    assert got["auc_roc_binned"] == pytest.approx(2.5 / 4)
    assert got["auc_roc"] == pytest.approx(3 / 4)  # exact: 0.2 beats 0.1, 0.9 beats both
    assert score(hm, s, dataclasses.replace(base, auc="binned"))["auc_roc"] == pytest.approx(2.5 / 4)
    # three bins (0, .5, 1): levels 1, 1, 1, 2 -> pairs 0.5 + 0.5 + 1 + 1 = 3 of 4
    assert score(hm, s, dataclasses.replace(base, auc_bins=3))["auc_roc_binned"] == pytest.approx(3 / 4)


def test_vilouras_cnr_absolute_per_box_population_variance() -> None:
    # one row; box A = cols 0-1 (values 0, 2), box B = col 4 (value 0); the rest 1, 1
    # box A: in mean 1 var 1, out {1, 1, 0} mean 2/3 var 2/9 -> (1/3) / sqrt(11/9)
    # box B (A now excluded): in {0} var 0, out {1, 1} var 0 -> zero variance, the means differ
    h = whole([[0.0, 2.0, 1.0, 1.0, 0.0]])
    s = sample(5, 1, (0, 0, 2, 1), (4, 0, 1, 1))
    p = proto("vilouras2024", normalise="none", drop_boxes="none")
    a = (1 / 3) / np.sqrt(11 / 9)
    got = score(h, s, p)
    assert got["cnr"] == pytest.approx((a + 0.0) / 2) and got["cnr_abs"] == pytest.approx((a + 0.0) / 2)
    got = score(h, s, dataclasses.replace(p, cnr_zero_variance="float32_max"))
    assert got["cnr"] == pytest.approx((a - FLOAT32_MAX) / 2) and got["cnr_abs"] == pytest.approx((a + FLOAT32_MAX) / 2)
    # the union: in {0, 2, 0} mean 2/3 var 8/9, out {1, 1} var 0 -> (-1/3) / sqrt(8/9)
    union = score(h, s, dataclasses.replace(p, cnr_boxes="union"))
    assert union["cnr"] == pytest.approx((-1 / 3) / np.sqrt(8 / 9))
    assert union["cnr_abs"] == pytest.approx((1 / 3) / np.sqrt(8 / 9))
    # sample variance on the single box (ddof 1): in var 2, out var 1/3
    one = sample(5, 1, (0, 0, 2, 1))
    assert score(h, one, dataclasses.replace(p, cnr_variance="sample"))["cnr"] == pytest.approx(
        (1 - 2 / 3) / np.sqrt(statistics.variance([0, 2]) + statistics.variance([1, 1, 0])))
    assert score(h, one, p)["cnr"] == pytest.approx(
        (1 - 2 / 3) / np.sqrt(statistics.pvariance([0, 2]) + statistics.pvariance([1, 1, 0])))


def test_zero_variance_cnr_is_float32_max_only_on_request() -> None:
    """Audit: a piecewise-constant map gives CNR 3.403e38 in the published code."""
    h = np.zeros((300, 400))
    h[100:200, 200:320] = 1.0
    s = sample(400, 300, (200, 100, 120, 100))
    assert score(whole(h), s, load_protocol("vilouras2024"), model_crop=WHOLE_IMAGE)["cnr_abs"] == 0.0
    legacy = score(whole(h), s, proto("vilouras2024", cnr_zero_variance="float32_max"), model_crop=WHOLE_IMAGE)
    assert legacy["cnr_abs"] == pytest.approx(3.403e38, rel=1e-4)


def test_nan_frame_excluded_versus_zero() -> None:
    # 1 x 4 image, native map [0, 1] on columns 1-2 (nearest: one column each); columns 0 and 3 outside
    hm = Heatmap(np.array([[0.0, 1.0]]), Geometry(1, 4, 0, 1, 1, 2))
    s = sample(4, 1, (2, 0, 2, 1))  # box = columns 2-3: col 2 inside the view, col 3 in the frame
    exclude = proto("vilouras2024", drop_boxes="none", cnr_boxes="union")
    got = score(hm, s, exclude)
    # pred (> t) = {2} for every t, GT = {2, 3}: IoU 1/2; AUC over the finite cols {1: 0, 2: 1}: 1
    assert got["miou"] == pytest.approx(0.5) and got["auc_roc"] == 1.0
    # CNR: in {1}, out {0}: zero variance -> 0
    assert got["cnr"] == 0.0
    zero = dataclasses.replace(exclude, outside="zero")
    got = score(hm, s, zero)
    # now in {1, 0} mean 1/2 var 1/4, out {0, 0}: (1/2) / (1/2) = 1; AUC: pos {1, 0}, neg {0, 0} -> 0.75
    assert got["cnr"] == pytest.approx(1.0) and got["auc_roc"] == pytest.approx(0.75)


def test_strict_threshold_comparison() -> None:
    hm = whole([[0.5, 0.0, 1.0]])
    s = sample(3, 1, (0, 0, 1, 1))
    p = proto("vilouras2024", drop_boxes="none", normalise="none", metrics=("iou",), thresholds=(0.5,))
    assert score(hm, s, p)["iou@0.5"] == 0.0  # 0.5 > 0.5 is false: pred {2}
    assert score(hm, s, dataclasses.replace(p, threshold_op=">="))["iou@0.5"] == pytest.approx(1 / 2)  # pred {0, 2}


def test_biovil_maps_clamped_not_normalised() -> None:
    # raw cosine [-0.5, 0.15, 0.3]: clamp -> [0, 0.15, 0.3]; min-max would give [0, 0.8125, 1]
    hm = whole([[-0.5, 0.15, 0.3]])
    s = sample(3, 1, (1, 0, 1, 1))
    p = proto("vilouras2024", drop_boxes="none")
    # clamped: t=.1 pred {1,2} -> 1/2; t=.2,.3,.4,.5 pred {2} / {} -> 0 -> miou (1/2) / 5
    assert score(hm, s, p, backend="biovil")["miou"] == pytest.approx(0.1)
    # min-max (any other backend): t=.1 ... .5 pred {1, 2} -> 1/2 each
    assert score(hm, s, p, backend="oracle_gaussian")["miou"] == pytest.approx(0.5)
    assert score(hm, s, p)["miou"] == pytest.approx(0.5)
    # vilouras2025 min-max normalises every map, BioViL's included
    assert score(hm, s, proto("vilouras2025"), backend="biovil")["miou"] == pytest.approx(0.5)


def test_clip_max_before_min_max() -> None:
    hm = whole([[0.0, 0.25, 1.0]])
    s = sample(3, 1, (1, 0, 1, 1))
    # no clip: t = .1, .2 -> pred {1, 2}: 1/2; t >= .3 -> {2}: 0 -> miou 1/5
    assert score(hm, s, proto("vilouras2025"))["miou"] == pytest.approx(0.2)
    # clip at 0.5 then min-max: [0, 0.5, 1]: t = .1 ... .4 -> 1/2; t = .5 -> {2}: 0 -> miou 2/5
    assert score(hm, s, proto("vilouras2025", clip_max=0.5))["miou"] == pytest.approx(0.4)


def test_bilinear_versus_nearest_upsampling() -> None:
    hm = whole([[0.0, 1.0]])
    hm = Heatmap(hm.values, Geometry.whole(1, 4))  # a 1 x 2 map over a 1 x 4 image
    s = sample(4, 1, (1, 0, 1, 1))
    p = proto("vilouras2025")
    # nearest [0, 0, 1, 1]: pred never meets col 1 -> 0; bilinear [0, .25, .75, 1]: t=.1, .2 -> 1/3
    assert score(hm, s, p)["miou"] == 0.0
    assert score(hm, s, dataclasses.replace(p, interpolation="bilinear"))["miou"] == pytest.approx(2 / 15)


def test_boxes_outside_the_model_crop_leave_the_ground_truth() -> None:
    # 200 x 100 image: short side to 512 (1024 x 512), LDM crop 512 = original columns 50-150
    h, w = 100, 200
    native = np.zeros((2, 2))
    native[0, 0] = 1.0  # nearest: original rows 0-49, cols 50-99 hold 1
    ldm = Heatmap(native, Geometry.short_side_crop(h, w, 512, 512))
    inside = (50, 0, 50, 50)
    outside = (0, 0, 20, 20)
    p = load_protocol("vilouras2024")
    got = score(ldm, sample(w, h, inside, outside), p)
    assert got["miou"] == pytest.approx(1.0)  # only the inside box is left: prediction == GT
    kept = score(ldm, sample(w, h, inside, outside), proto("vilouras2024", drop_boxes="none"))
    assert kept["miou"] == pytest.approx(2500 / 2900)  # the dropped box would stay in the union
    with pytest.raises(ExcludedSample):
        score(ldm, sample(w, h, outside), p)
    # the crop is the model's: a 3-px box at columns 50-52 survives the LDM's 512 crop (starting at
    # resized column 256) but not BioViL's 480 crop (starting at round((1024 - 480) / 2) = 272)
    sliver = (50, 60, 3, 10)
    assert scoring.protocol_sample(ldm, sample(w, h, inside, sliver), p).boxes == ((50.0, 0.0, 50.0, 50.0), sliver)
    biovil = Heatmap(np.zeros((15, 15)), Geometry.short_side_crop(h, w, 512, 480))
    assert scoring.protocol_sample(biovil, sample(w, h, inside, sliver), p).boxes == ((50.0, 0.0, 50.0, 50.0),)


def test_label_mask_rounding_depends_on_the_model_input_size() -> None:
    # a one-pixel box at column 141, inside the LDM crop (columns 50-150 of a 200 x 100 image).
    # Resize to 512 (x5.12): resized column 724 samples source 141.004 -> 5 * 0.996 rounds to 5: kept.
    # Resize to 256 (x2.56): columns 361 / 362 sample 140.711 / 141.102 -> 3.55 / 4.49 round to 4: lost.
    hm = Heatmap(np.zeros((64, 64)), Geometry.short_side_crop(100, 200, 512, 512))
    s = sample(200, 100, (60, 30, 20, 10), (141, 30, 1, 10))
    assert len(scoring.protocol_sample(hm, s, load_protocol("vilouras2024")).boxes) == 2
    assert len(scoring.protocol_sample(hm, s, proto("vilouras2024", model_input=256)).boxes) == 1


# ---------------------------------------------------------------- Nützel et al. 2025 / Dombrowski et al. 2024


def blob_map() -> np.ndarray:
    """6 x 6: a 3 x 3 blob of 1 (one 0.6) at rows/cols 1-3, 0 elsewhere but one 0.2 in the corner."""
    v = np.zeros((6, 6))
    v[1:4, 1:4] = 1.0
    v[3, 3] = 0.6
    v[5, 5] = 0.2
    return v


BLOB = sample(6, 6, (1, 1, 3, 3))


def crop6(name: str, **changes) -> Protocol:
    """The protocol on a 6 x 6 image with a 6-px crop: the crop space is the image itself."""
    return proto(name, crop_size=6, **changes)


def test_g2g_metrics_on_a_blob_hand_computed() -> None:
    # GMM threshold ~0.48 -> raw mask = the blob (9 px); the 3x3 majority (>= 5 of 9) on interior
    # pixels keeps only the plus (1,2), (2,1), (2,2), (2,3), (3,2): 5 px
    got = score(whole(blob_map()), BLOB, crop6("nutzel2025"))
    assert got["iou_fg"] == pytest.approx(5 / 9)
    # background: predicted 31 px, GT 27 px, all inside -> 27/31
    assert got["miou_fgbg"] == pytest.approx((5 / 9 + 27 / 31) / 2)
    # the plus's bounding rectangle (inclusive) is the blob
    assert got["bbox_iou_fg"] == 1.0 and got["bbox_miou_fgbg"] == 1.0
    # signed CNR, sample variance, union mask, on the float16 map: 0.6 -> 0.60009765625, 0.2 -> 0.199951171875
    inside, outside = [1.0] * 8 + [0.60009765625], [0.0] * 26 + [0.199951171875]
    expected = (np.mean(inside) - np.mean(outside)) / np.sqrt(statistics.variance(inside) + statistics.variance(outside))
    assert got["cnr"] == pytest.approx(expected)
    population = (np.mean(inside) - np.mean(outside)) / np.sqrt(statistics.pvariance(inside) + statistics.pvariance(outside))
    assert score(whole(blob_map()), BLOB, crop6("nutzel2025", cnr_variance="population"))["cnr"] == pytest.approx(population)
    assert got["auc_roc"] == 1.0 and got["pointing_game"] == 1.0
    assert got["distance"] == 0.0  # the plus's rectangle and the GT share their centre (2, 2)
    exact = score(whole(blob_map()), BLOB, crop6("nutzel2025", precision="float64", minmax_precision="float64"))["cnr"]
    inside[-1], outside[-1] = 0.6, 0.2
    assert exact == pytest.approx((np.mean(inside) - np.mean(outside))
                                  / np.sqrt(statistics.variance(inside) + statistics.variance(outside)))


def test_distance_between_rectangle_centres_hand_computed() -> None:
    # predicted rectangle: the plus, rows/cols 1-3, centre (2, 2); GT box at cols 3-5 of row 4: centre (4, 4)
    shifted = sample(6, 6, (3, 4, 3, 1))
    assert score(whole(blob_map()), shifted, crop6("nutzel2025"))["distance"] == pytest.approx(np.hypot(2, 2))
    # a finding with two boxes has no single centre: NaN, as published
    two = sample(6, 6, (1, 1, 3, 3), (5, 0, 1, 1))
    assert np.isnan(score(whole(blob_map()), two, crop6("nutzel2025"))["distance"])
    assert np.isnan(dense.centre_distance(np.zeros((3, 3), bool), np.eye(3, dtype=bool)))  # empty prediction
    one = np.zeros((4, 5), bool)
    one[0, 4] = True
    assert dense.centre_distance(one, np.eye(4, 5, dtype=bool)) == pytest.approx(np.hypot(4 - 1.5, 0 - 1.5))


def test_float16_maps_tie_at_the_top() -> None:
    # 0.99995 and 1.0 are the same half-precision number: the first maximum in row-major order wins
    v = np.zeros((4, 4))
    v[0, 0], v[2, 2] = 0.99995, 1.0
    s = sample(4, 4, (2, 2, 1, 1))
    default = load_protocol("default")
    half = dataclasses.replace(default, precision="float16")
    assert score(whole(v), s, default)["pointing_game"] == 1.0
    assert score(whole(v), s, half)["pointing_game"] == 0.0
    fast, ref = score_cells(whole(v), s, half), score_dense(whole(v), s, half)
    assert all(fast[k] == pytest.approx(ref[k], abs=1e-12) for k in ref)


def test_g2g_majority_and_off_by_one_rectangle_options() -> None:
    raw = score(whole(blob_map()), BLOB, crop6("nutzel2025", gmm_majority=False))
    assert raw["iou_fg"] == 1.0 and raw["miou_fgbg"] == 1.0
    legacy = score(whole(blob_map()), BLOB, crop6("nutzel2025", bbox_rect="exclusive_end"))
    # rows 1..3 / cols 1..3 filled as [1:3, 1:3]: 4 px; background 32 px predicted, 27 GT
    assert legacy["bbox_iou_fg"] == pytest.approx(4 / 9)
    assert legacy["bbox_miou_fgbg"] == pytest.approx((4 / 9 + 27 / 32) / 2)
    assert dense.bounding_rect(np.eye(3, dtype=bool)[:, :1], inclusive=False).sum() == 0  # one column wide -> empty


def test_empty_gmm_mask_zero_versus_scored() -> None:
    # a 2 x 2 blob: every interior pixel sees at most 4 of 9 set -> the majority vote empties the mask
    v = np.zeros((6, 6))
    v[2:4, 2:4] = 1.0
    s = sample(6, 6, (2, 2, 2, 2))
    nu = score(whole(v), s, crop6("nutzel2025"))
    assert all(value == 0.0 for value in nu.values())  # AUC 0, top-1 0 and distance 0 too, as published
    do = score(whole(v), s, crop6("dombrowski2024"))
    assert do["iou_fg"] == 0.0 and do["bbox_iou_fg"] == 0.0 and np.isnan(do["distance"])
    assert do["miou_fgbg"] == pytest.approx((0 + 32 / 36) / 2)  # background IoU only
    assert do["auc_roc"] == 1.0 and do["pointing_game"] == 1.0
    assert score(whole(v), s, crop6("nutzel2025", on_empty_mask="score"))["auc_roc"] == 1.0


def test_failed_gmm_fit_empty_or_previous_mask() -> None:
    one_value = np.full((6, 6), np.nan)
    one_value[2, 2] = 0.7  # a single finite value: no 2-component mixture can be fitted
    PreviousMask.last = None
    fixed = crop6("dombrowski2024")
    score(whole(blob_map()), BLOB, fixed)
    assert score(whole(one_value), BLOB, fixed)["iou_fg"] == 0.0
    legacy = crop6("dombrowski2024", on_gmm_error="previous")
    score(whole(blob_map()), BLOB, legacy)
    # the stale mask of the previous sample (the 5-px plus) is scored against this sample's GT
    assert score(whole(one_value), BLOB, legacy)["iou_fg"] == pytest.approx(5 / 9)


def test_gmm_seed_option(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = scoring.native_mask

    def spy(values, seed, majority=True, *args, **kwargs):
        seen.append(seed)
        return real(values, seed, majority, *args, **kwargs)

    monkeypatch.setattr(scoring, "native_mask", spy)
    score(whole(blob_map()), BLOB, crop6("nutzel2025", seed=7))
    score(whole(blob_map()), BLOB, crop6("nutzel2025", gmm_seed="none"))
    # seed 7 for the scores, then the protocol's gmm_seeds - 1 = 4 refits for the seed spread; unseeded: one fit
    assert seen == [7, 8, 9, 10, 11, None]


def test_gt_mask_dilation_by_boolean_resize_audit_numbers() -> None:
    """Audit: box (1200, 900, 400, 300) in a 3056 x 2544 image, bool Resize(512) + CenterCrop(512):
    5084 px with antialias (torchvision >= 0.17), 4941 without; 4860.6 px ideal."""
    space = CropSpace.for_image(2544, 3056, load_protocol("nutzel2025").crop_size)
    box = [(1200, 900, 400, 300)]
    assert gt_mask(box, space, load_protocol("nutzel2025").gt_antialias).sum() == 5084
    assert gt_mask(box, space, load_protocol("dombrowski2024").gt_antialias).sum() == 4941


def test_centre_crop_discards_pixels_outside_it() -> None:
    # 6 x 8 image, crop 6: columns 1-6 are scored; a map [1 | 0 0 0 0 0 0 | 1] with the box on column 0
    v = np.zeros((6, 8))
    v[:, 0] = v[:, 7] = 1.0
    s = sample(8, 6, (0, 0, 2, 6))  # columns 0-1: only column 1 is in the crop
    p = proto("nutzel2025", crop_size=6, metrics=("cnr", "auc_roc", "pointing_game"), binary_mask="none")
    got = score(whole(v), s, p)
    # in the crop the map is 0 everywhere: constant -> AUC 1/2, CNR 0, first maximum (0, 0) is in the GT
    assert got["auc_roc"] == 0.5 and got["cnr"] == 0.0 and got["pointing_game"] == 1.0
    wider = score(whole(v), s, dataclasses.replace(p, crop_size=8, eval_grid="original", interpolation="nearest"))
    # pos {1 x 6, 0 x 6}, neg {0 x 30, 1 x 6}: 6 (30 + 3) + 6 (15) = 288 of 12 x 36 pairs
    assert wider["auc_roc"] == pytest.approx(288 / 432)


def test_mIoU_definitions_differ_audit_numbers() -> None:
    """Audit: one 64 x 64 map at 512: multi-threshold miou 0.50, G2G iou 0.75, G2G "mIoU" 0.87."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:64]
    att = np.exp(-(((xx - 40) / 8.0) ** 2 + ((yy - 30) / 7.0) ** 2)) + 0.3 * rng.random((64, 64))
    hm = Heatmap(att, Geometry.whole(512, 512))
    s = sample(512, 512, (250, 180, 140, 120))
    g2g = score(hm, s, load_protocol("nutzel2025"))
    assert g2g["iou_fg"] == pytest.approx(0.75, abs=0.005)
    assert g2g["miou_fgbg"] == pytest.approx(0.87, abs=0.005)
    vil = score(hm, s, proto("vilouras2024", interpolation="bilinear"))
    assert vil["miou"] == pytest.approx(0.50, abs=0.005)


def test_same_heatmaps_different_numbers_under_vilouras2024_and_nutzel2025() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-(((xx - 20) / 6.0) ** 2 + ((yy - 32) / 6.0) ** 2)) + 0.2 * rng.random((64, 64))
    geometry = Geometry.short_side_crop(600, 800, 512, 512)  # an LDM map of the 512 centre crop
    s = sample(800, 600, (180, 250, 110, 110))
    v24, nu = load_protocol("vilouras2024"), load_protocol("nutzel2025")
    a, b = score(Heatmap(blob, geometry), s, v24), score(Heatmap(blob, geometry), s, nu)
    assert a["auc_roc_binned"] < a["auc_roc"]
    assert abs(a["cnr"] - b["cnr"]) > 0.01 and abs(a["auc_roc"] - b["auc_roc"]) > 1e-4
    # a map that is low on the finding: absolute CNR stays positive, the signed one turns negative
    a, b = score(Heatmap(1 - blob, geometry), s, v24), score(Heatmap(1 - blob, geometry), s, nu)
    assert a["cnr_abs"] == pytest.approx(-a["cnr"]) and a["cnr_abs"] > 0.5 and b["cnr"] < -0.5


def test_weighted_average_is_class_count_squared() -> None:
    """Audit: classes of 2 and 6 samples with means 1 and 0: weighted 0.10, per sample 0.25, macro 0.50."""
    table = pd.DataFrame({"category": ["A"] * 2 + ["B"] * 6, "cnr": [1.0, 1.0] + [0.0] * 6})
    summary = summarise(table, ["cnr"], load_protocol("nutzel2025").groups, resamples=50).set_index("group")
    assert summary.at["weighted", "mean"] == pytest.approx(0.10)
    assert summary.at["micro", "mean"] == pytest.approx(0.25)
    assert summary.at["macro", "mean"] == pytest.approx(0.50)


def test_weighted_average_over_undefined_values_fixed_or_as_published() -> None:
    # distance of A: 3, NaN (n_A = 2); of B: 1, 1, 1 (n_B = 3). Published: pandas sums x_i n_c(i) over
    # present values, (3*2 + 3*1*3) = 15, and divides by every sample's weight, 2*2 + 3*3 = 13.
    table = pd.DataFrame({"category": ["A", "A", "B", "B", "B"], "distance": [3.0, np.nan, 1.0, 1.0, 1.0]})
    fixed = group_means(table, ["distance"], ("weighted",)).set_index("group")["mean"]
    assert fixed["weighted"] == pytest.approx(15 / (2 + 9))
    published = group_means(table, ["distance"], ("weighted",), "zero").set_index("group")["mean"]
    assert published["weighted"] == pytest.approx(15 / 13)
    boot = summarise(table, ["distance"], ("weighted",), 200, weighted_nan="zero").set_index("group")
    assert boot.at["weighted", "mean"] == pytest.approx(15 / 13)
    assert load_protocol("nutzel2025").weighted_nan == "skip"


def test_group_means_weighted_without_resampling() -> None:
    table = pd.DataFrame({"category": ["A"] * 2 + ["B"] * 6, "cnr": [1.0, 1.0] + [0.0] * 6})
    means = group_means(table, ["cnr"], ("macro", "micro", "weighted")).set_index("group")["mean"]
    assert (means["A"], means["B"]) == (1.0, 0.0)
    assert means["weighted"] == pytest.approx(4 / 40) and means["micro"] == 0.25 and means["macro"] == 0.5


def test_scoring_a_run_applies_backend_policy_and_records_excluded_samples(tmp_path) -> None:
    protocol = proto("vilouras2024", metrics=("miou",))
    s_in = sample(200, 100, (60, 10, 20, 20), sid="in")
    s_out = sample(200, 100, (0, 0, 20, 20), sid="out")  # outside the 512 crop (columns 50-150)
    values = np.full((2, 2), -0.5)
    values[0, 0] = 0.15  # covers rows 0-49, cols 50-99; clamped cosine 0.15, min-max 1
    maps = {s.sample_id: Heatmap(values, Geometry.short_side_crop(100, 200, 512, 512)) for s in (s_in, s_out)}
    tables = {}
    for backend in ("biovil", None):
        skipped: dict[str, str] = {}
        tables[backend], _ = score_all([s_in, s_out], protocol, RunDir(tmp_path / str(backend)),
                                       lambda s: maps[s.sample_id], False, skipped, backend)
        assert list(skipped) == ["out"] and "no box survives" in skipped["out"]
    # box 400 px inside the 2500-px high quarter: clamped 0.15 passes only t = 0.1 -> (400/2500) / 5
    assert tables["biovil"]["miou"].tolist() == [pytest.approx(400 / 2500 / 5)]
    assert tables[None]["miou"].tolist() == [pytest.approx(400 / 2500)]


def test_sample_units_and_split() -> None:
    rows = [sample(10, 10, (0, 0, 2, 2), sid="a1", image="i1", category="edema", phrase="left"),
            sample(10, 10, (5, 5, 2, 2), sid="a2", image="i1", category="edema", phrase="right"),
            sample(10, 10, (1, 1, 2, 2), sid="b", image="i1", category="pneumonia"),
            sample(10, 10, (1, 1, 2, 2), sid="t", image="i2", category="edema", split="train")]
    per_phrase = select_samples(rows, load_protocol("vilouras2024"))
    assert [s.sample_id for s in per_phrase] == ["a1", "a2", "b", "t"]  # split "all"
    assert [s.sample_id for s in select_samples(rows, load_protocol("vilouras2025"))] == ["a1", "a2", "b"]
    per_finding = select_samples(rows, load_protocol("nutzel2025"))
    assert [s.sample_id for s in per_finding] == ["a1", "b", "t"]
    assert per_finding[0].boxes == ((0.0, 0.0, 2.0, 2.0), (5.0, 5.0, 2.0, 2.0)) and per_finding[0].phrase == "left"


def test_filter_keeps_findings_whose_text_names_the_category() -> None:
    rows = [sample(10, 10, (0, 0, 2, 2), sid="a1", image="i1", category="edema", phrase="mild vascular congestion"),
            sample(10, 10, (5, 5, 2, 2), sid="a2", image="i1", category="edema", phrase="Pulmonary EDEMA"),
            sample(10, 10, (1, 1, 2, 2), sid="b", image="i1", category="lung opacity", phrase="left lung opacity"),
            sample(10, 10, (1, 1, 2, 2), sid="c", image="i2", category="lung opacity", phrase="opacity at the base"),
            sample(10, 10, (1, 1, 2, 2), sid="d", image="i3", category="pneumonia", phrase="pneumonia?")]
    kept = select_samples(rows, load_protocol("dombrowski2024_filtered"))
    # the (i1, edema) finding is kept, with both boxes, because one of its texts names it
    assert [s.sample_id for s in kept] == ["a1", "b", "d"] and len(kept[0].boxes) == 2
    assert [s.sample_id for s in select_samples(rows, load_protocol("dombrowski2024"))] == ["a1", "b", "c", "d"]
    per_phrase = select_samples(rows, proto("vilouras2024", require_category_in_phrase=True))
    assert [s.sample_id for s in per_phrase] == ["a2", "b", "d"]


@pytest.mark.parametrize("name", ["vilouras2024", "vilouras2025"])
def test_paper_protocols_on_the_original_grid_take_the_exact_cell_route(name: str) -> None:
    rng = np.random.default_rng(5)
    hm = Heatmap(rng.random((15, 15)), Geometry.short_side_crop(300, 360, 512, 480))
    s = sample(360, 300, (40, 50, 90, 70), (200, 120, 60, 100))
    fast, ref = score_cells(hm, s, load_protocol(name)), score_dense(hm, s, load_protocol(name))
    assert list(fast) == list(ref)
    for key in ref:
        assert fast[key] == pytest.approx(ref[key], abs=1e-9)


def test_list_protocols_names_each_with_what_it_reproduces(bench_cli) -> None:
    r = bench_cli("list", "protocols")
    assert r.code == 0
    assert all(name in r.out for name in ("default", *PAPERS))
    assert r.out.count("reproduces:") == len(protocol_names())
    assert "Felix-012/generate_to_ground@699364a" in r.out.replace("\n", "").replace("│", "").replace(" ", "")
