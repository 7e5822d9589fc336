"""Ground truth given as points only: the pointing game within `point_radius`, NaN region metrics, refusals."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from bench.core.errors import BenchError, SampleError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.predictions import BoxPrediction
from bench.core.samples import Sample
from bench.evaluation.box_scoring import score_prediction
from bench.evaluation.gt_kinds import refused_samples
from bench.evaluation.point_route import peak, peak_hit
from bench.evaluation.protocols import load_protocol, protocol_from_toml
from bench.evaluation.resample import to_original
from bench.evaluation.scoring import prepare_values, score, score_dense, score_pixels
from bench.evaluation.stats import paired_difference, summarise


def _points(*points: tuple[float, float], sid: str = "s") -> Sample:
    return Sample(sid, "x.png", 50, 40, "c", "p", (), "test", points=tuple(points))


def _spike(*at: tuple[int, int]) -> np.ndarray:
    v = np.zeros((40, 50))
    for row, col in at:
        v[row, col] = 1.0
    return v


# the peak pixel (row 10, column 20) stands at its centre (20.5, 10.5); (9, 12) away is 15 exactly
AT_RADIUS = (20.5 + 9, 10.5 + 12)
JUST_OUTSIDE = (20.5 + 9.1, 10.5 + 12)  # 9.1^2 + 12^2 = 226.81 > 225


def test_peak_hit_by_hand() -> None:
    v = _spike((10, 20))
    assert peak(v) == (10, 20)
    assert peak_hit(v, [AT_RADIUS], 15) == 1.0  # inclusive
    assert peak_hit(v, [JUST_OUTSIDE], 15) == 0.0
    assert peak_hit(v, [JUST_OUTSIDE], 15.07) == 1.0  # sqrt(226.81) = 15.0602
    assert peak_hit(v, [(0.0, 0.0), (49.0, 39.0)], 15) == 0.0
    assert peak_hit(v, [(0.0, 0.0), JUST_OUTSIDE, AT_RADIUS], 15) == 1.0  # any point
    assert peak_hit(v, [(20.5, 10.5)], 0) == 1.0 and peak_hit(v, [(20.0, 10.0)], 0) == 0.0  # the pixel centre


def test_ties_take_the_first_maximum_and_nan_never_wins() -> None:
    v = _spike((10, 20), (5, 40))  # row 5 comes first in row-major order
    assert peak(v) == (5, 40)
    assert peak_hit(v, [AT_RADIUS], 15) == 0.0  # near (10, 20), not near (5, 40): 20 columns away
    assert peak_hit(v, [(40.5 - 9, 5.5 + 12)], 15) == 1.0
    v = _spike((10, 20))
    v[0, :] = np.nan
    assert peak(v) == (10, 20)
    assert peak(np.full((3, 4), np.nan)) is None and peak_hit(np.full((3, 4), np.nan), [(1.0, 1.0)], 15) == 0.0


@pytest.mark.parametrize("native", [False, True])
def test_point_route_under_default(native: bool) -> None:
    """Default protocol: pointing game within 15 px, every region metric NaN; the fast and the dense path agree."""
    if native:  # 8 x 10 cells of 5 x 5 pixels: cell (2, 4) covers rows 10-14, columns 20-24, first pixel (10, 20)
        cells = np.zeros((8, 10))
        cells[2, 4] = 3.0
        hm = Heatmap(cells, Geometry.whole(40, 50))
    else:
        hm = Heatmap.from_original(_spike((10, 20)))
    protocol = load_protocol("default")
    for point, want in ((AT_RADIUS, 1.0), (JUST_OUTSIDE, 0.0)):
        s = _points(point)
        got, ref = score(hm, s, protocol), score_dense(hm, s, protocol)
        assert list(got) == protocol.columns and got["pointing_game"] == want == ref["pointing_game"]
        assert all(math.isnan(got[c]) and math.isnan(ref[c]) for c in protocol.columns if c != "pointing_game")
    assert score(hm, _points(AT_RADIUS), dataclasses.replace(protocol, point_radius=14.9))["pointing_game"] == 0.0
    per_box = score(hm, _points(AT_RADIUS), dataclasses.replace(protocol, cnr_boxes="per_box"))
    assert math.isnan(per_box["cnr"]) and math.isnan(per_box["cnr_abs"])  # not the 0 of a sample without parts


def test_point_route_reads_the_protocol_interpolation() -> None:
    """Bilinear upsampling moves the peak: the point route's peak is the one of the map the protocol makes."""
    protocol = dataclasses.replace(load_protocol("default"), interpolation="bilinear")
    rng = np.random.default_rng(4)
    hm = Heatmap(rng.random((8, 10)), Geometry.whole(40, 50))
    row, col = peak(prepare_values(to_original(hm, "bilinear"), protocol))
    near, far = (col + 0.5 + 15, row + 0.5), (col + 0.5 + 15.5, row + 0.5)
    assert score(hm, _points(near), protocol)["pointing_game"] == 1.0
    assert score(hm, _points(far), protocol)["pointing_game"] == 0.0
    assert score(hm, _points(far), protocol).keys() == score_dense(hm, _points(far), protocol).keys()


def test_box_prediction_under_default_hits_from_its_first_box_pixel() -> None:
    """A box method's boxes rasterised (each box its score): the peak is the top-left pixel of the best box."""
    pred = BoxPrediction(((20.0, 10.0, 8.0, 6.0), (0.0, 0.0, 4.0, 4.0)), (0.9, 0.5))
    got, _ = score_prediction(pred, _points(AT_RADIUS), load_protocol("default"))
    assert got["pointing_game"] == 1.0


def test_region_routes_refuse_points() -> None:
    with pytest.raises(SampleError, match="points only has no region"):
        score_pixels(Heatmap.from_original(_spike((10, 20))), _points(AT_RADIUS), load_protocol("default"))


def test_chexlocalize_hit_rate_on_points() -> None:
    protocol = load_protocol("chexlocalize2022")
    hm = Heatmap.from_original(_spike((10, 20)))
    assert score(hm, _points(AT_RADIUS), protocol)["hit_rate"] == 1.0
    got = score(hm, _points(JUST_OUTSIDE), protocol)
    assert list(got) == ["seg_iou", "hit_rate"] and got["hit_rate"] == 0.0 and math.isnan(got["seg_iou"])
    stated = Heatmap(hm.values, hm.geometry, meta={"points": [[1.0, 1.0], [5.0, 30.0]]})  # a reader's points
    assert score(stated, _points((5.0 + 9, 30.0 + 12)), protocol)["hit_rate"] == 1.0
    assert score(stated, _points(AT_RADIUS), protocol)["hit_rate"] == 0.0  # the map's own peak is not read


def test_point_radius_in_a_protocol_file() -> None:
    base = load_protocol("default")
    assert base.point_radius == 15.0
    data = {"name": "near", "metrics": {"metrics": ["pointing_game"], "point_radius": 5}}
    near = protocol_from_toml(data, "near.toml")
    assert near.point_radius == 5
    assert near.fingerprint() != protocol_from_toml({"name": "near", "metrics": {"metrics": ["pointing_game"]}},
                                                    "near.toml").fingerprint()
    same = protocol_from_toml({"name": "n", "metrics": {"metrics": ["pointing_game"], "point_radius": 15}}, "n.toml")
    assert same.fingerprint() == protocol_from_toml({"name": "n", "metrics": {"metrics": ["pointing_game"]}},
                                                    "n.toml").fingerprint()
    for bad in (-1, "15", True):
        with pytest.raises(BenchError, match="point_radius"):
            protocol_from_toml({"name": "b", "metrics": {"point_radius": bad}}, "b.toml")
    assert score(Heatmap.from_original(_spike((10, 20))), _points((20.5 + 3, 10.5 + 4)), near)["pointing_game"] == 1.0
    assert score(Heatmap.from_original(_spike((10, 20))), _points((20.5 + 3, 10.6 + 4)), near)["pointing_game"] == 0.0


@pytest.mark.parametrize("name,field", [("vilouras2025", "metrics = \\[cnr, cnr_abs, iou, miou, auc_roc\\], none of "
                                                         "them a point metric \\(pointing_game, hit_rate\\)"),
                                        ("vilouras2024", "drop_boxes = 'label_crop', defined on boxes only"),
                                        ("nutzel2025", "eval_grid = 'centre_crop', defined on boxes only"),
                                        ("boxes", "box metrics .*defined on GT boxes only")])
def test_points_refused_where_no_rule_scores_them(name: str, field: str) -> None:
    s = _points(AT_RADIUS)
    with pytest.raises(SampleError, match=f"protocol '{name}' has {field}; this sample's ground truth is points only"):
        score_prediction(Heatmap.from_original(_spike((10, 20))), s, load_protocol(name))


def test_refused_samples_names_the_count_and_the_first() -> None:
    samples = [Sample("b0", "x.png", 50, 40, "c", "p", ((1.0, 1.0, 2.0, 2.0),)), _points((1.0, 1.0), sid="p1"),
               _points((2.0, 2.0), sid="p2")]
    reasons, line = refused_samples(samples, load_protocol("vilouras2025"))
    assert sorted(reasons) == ["p1", "p2"]
    assert line.startswith("protocol 'vilouras2025' has metrics = [cnr, cnr_abs, iou, miou, auc_roc], none of them a "
                           "point metric (pointing_game, hit_rate): 2 of the 3 samples have ground truth points only "
                           "(first: p1)")
    assert refused_samples(samples, load_protocol("default")) == ({}, None)


def test_the_python_scorer_refuses_a_batch_before_scoring_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench.Scorer checks the batch's GT kinds first, as the CLI does: no map of the batch is scored."""
    import bench
    import bench.api

    samples = [Sample("b0", "x.png", 50, 40, "c", "p", ((1.0, 1.0, 2.0, 2.0),)), _points((1.0, 1.0), sid="p1")]
    maps = [_spike((1, 1)), _spike((1, 1))]
    calls: list[str] = []
    real = bench.api.score_with_boxes
    monkeypatch.setattr(bench.api, "score_with_boxes", lambda h, s, *a: calls.append(s.sample_id) or real(h, s, *a))
    scorer = bench.Scorer("vilouras2025")
    with pytest.raises(BenchError, match=r"1 of the 2 samples have ground truth points only \(first: p1\) \(use skip_bad=True to record"):
        scorer.update(maps, samples)
    assert calls == [] and len(scorer) == 0
    lenient = bench.Scorer("vilouras2025", skip_bad=True)
    lenient.update(maps, samples)
    assert calls == ["b0"] and list(lenient.skipped) == ["p1"]
    assert "points only" in lenient.skipped["p1"]


def test_nan_region_columns_leave_means_intervals_and_paired_tests_per_metric() -> None:
    """Box samples and points samples in one table: miou is the mean over the box samples (n counts them),
    the pointing game over all; a paired difference of miou reads the box samples only."""
    table = pd.DataFrame({"sample_id": [f"s{k}" for k in range(6)], "category": ["a"] * 3 + ["b"] * 3,
                          "miou": [0.2, 0.4, np.nan, 0.6, np.nan, np.nan],
                          "pointing_game": [1.0, 0.0, 1.0, 1.0, 1.0, 0.0]})
    s = summarise(table, ["miou", "pointing_game"], resamples=200).set_index(["group", "metric"])
    assert s.loc[("a", "miou"), "mean"] == pytest.approx(0.3) and s.loc[("a", "miou"), "n"] == 2
    assert s.loc[("b", "miou"), "mean"] == pytest.approx(0.6) and s.loc[("b", "miou"), "n"] == 1
    assert s.loc[("micro", "miou"), "mean"] == pytest.approx(0.4) and s.loc[("micro", "miou"), "n"] == 3
    assert s.loc[("macro", "miou"), "mean"] == pytest.approx(0.45)
    assert s.loc[("micro", "pointing_game"), "mean"] == pytest.approx(4 / 6)
    assert s.loc[("micro", "pointing_game"), "n"] == 6
    a = table[["miou", "pointing_game"]].to_numpy()
    b = a.copy()
    b[:, 0] -= 0.1  # miou 0.1 lower where it is defined
    diff, lo, hi, p = paired_difference(a, b, table["category"].tolist(), group="micro", resamples=200)
    assert diff[0] == pytest.approx(0.1) and lo[0] == pytest.approx(0.1) and hi[0] == pytest.approx(0.1)
    assert diff[1] == 0.0


def test_grouping_per_category_unites_points_and_refuses_masks() -> None:
    from bench.core.ground_truth import MaskSource
    from bench.evaluation.scoring import select_samples

    protocol = dataclasses.replace(load_protocol("default"), grouping="category")
    a = Sample("a", "x.png", 50, 40, "c", "one phrase", (), points=((1.0, 2.0),))
    b = Sample("b", "x.png", 50, 40, "c", "another", (), points=((3.0, 4.0), (1.0, 2.0)))
    (united,) = select_samples([a, b], protocol)
    assert united.sample_id == "a" and united.points == ((1.0, 2.0), (3.0, 4.0)) and united.gt_kind == "points"
    masked = dataclasses.replace(b, points=(), mask=MaskSource(rle='{"size":[40,50],"counts":[2000]}'))
    with pytest.raises(BenchError, match="grouping = 'category', which unites .* masks are not united"):
        select_samples([a, masked], protocol)
