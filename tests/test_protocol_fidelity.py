"""The published protocols follow each published code's arithmetic and inputs: hand-made maps on
which the published behaviour and the harness's earlier one give different numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation import scoring
from bench.evaluation.label_crop import WHOLE_IMAGE
from bench.evaluation.protocols import Protocol, ValuePolicy, load_protocol
from bench.evaluation.scoring import ExcludedSample, apply_policy, protocol_sample, score, score_dense


def proto(name: str, **changes) -> Protocol:
    return dataclasses.replace(load_protocol(name), **changes)


def sample(width: int, height: int, *boxes) -> Sample:
    return Sample("s", "x.png", width, height, "c", "p", tuple(tuple(float(v) for v in b) for b in boxes), "test")


def whole(values) -> Heatmap:
    v = np.asarray(values)
    return Heatmap(v, Geometry.whole(*v.shape))


# a raw attention-sized map (k * 5e-4): fitted raw, reg_covar (1e-6) dominates the variances and the
# GMM splits at k >= 3 (15 px); fitted on its min-max it splits at k >= 5 (7 px, all in the GT)
K = np.array([[3, 2, 2, 1, 1, 0],
              [0, 4, 4, 7, 2, 3],
              [2, 6, 7, 6, 2, 2],
              [2, 7, 5, 7, 2, 0],
              [1, 3, 2, 0, 3, 2],
              [3, 0, 0, 3, 0, 2]])
BLOB = sample(6, 6, (1, 1, 3, 3))


@pytest.mark.parametrize("name", ["nutzel2025", "dombrowski2024"])
def test_gmm_is_fitted_on_the_stored_map(name: str) -> None:
    raw = whole(K * 5e-4)
    p = proto(name, crop_size=6, gmm_majority=False)
    assert p.gmm_input == "stored"
    # stored: the 15 px with k >= 3, every GT pixel among them -> 9 / 15
    assert score(raw, BLOB, p)["iou_fg"] == pytest.approx(9 / 15)
    # the min-max fit of the earlier harness: 7 px inside the 3 x 3 GT -> 7 / 9
    assert score(raw, BLOB, dataclasses.replace(p, gmm_input="normalised"))["iou_fg"] == pytest.approx(7 / 9)
    assert score_dense(raw, BLOB, p)["iou_fg"] == pytest.approx(9 / 15)


def test_gmm_threshold_is_rounded_to_half_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    """`map > t` on a float16 tensor: t = 0.30004 becomes 0.300048828125, which a pixel of exactly that value does not exceed."""
    v = np.zeros((6, 6))
    v[1:4, 1:4] = 0.300048828125
    v[0, 0] = 1.0
    monkeypatch.setattr(scoring, "fast_threshold", lambda values, seed: 0.30004)
    p = proto("nutzel2025", crop_size=6, gmm_majority=False, minmax_precision="float64", precision="float64",
              gmm_input="normalised")
    assert p.gmm_precision == "float16"
    # rounded: only the corner pixel is foreground, outside the GT -> 0
    assert score(whole(v), BLOB, dataclasses.replace(p, on_empty_mask="score"))["iou_fg"] == 0.0
    # compared in float64: the 3 x 3 block and the corner -> 9 / 10
    assert score(whole(v), BLOB, dataclasses.replace(p, gmm_precision="float64"))["iou_fg"] == pytest.approx(9 / 10)


def test_minmax_in_half_precision_after_the_cast() -> None:
    x = np.array([0.25, 2.9, 0.35, 1.58])
    h = x.astype(np.float16)
    published = ((h - h.min()) / (h.max() - h.min())).astype(np.float64)
    now = apply_policy(x, ValuePolicy(precision="float16", minmax_precision="float16"))
    before = apply_policy(x, ValuePolicy(precision="float16"))
    assert np.array_equal(now, published)
    # (0.35 - 0.25) / 2.65 in float16 steps: 0.03778076171875; rounded after float64: 0.0377502...
    assert now[2] == 0.03778076171875 and before[2] != now[2]
    assert load_protocol("nutzel2025").minmax_precision == "float16"


def test_float32_minmax_and_thresholds_under_vilouras2024() -> None:
    """A flat region at an exact ratio: float32(0.4) after the min-max equals the float32 threshold (not
    above it) but lies above the float64 threshold 0.4: the GT pixel leaves the prediction at t = 0.4."""
    v = np.array([[0.0, 1.0], [0.4, 0.6]], dtype=np.float32)
    s = sample(2, 2, (0, 1, 1, 1))  # the 0.4 pixel
    p = load_protocol("vilouras2024")
    assert (p.minmax_precision, p.threshold_precision) == ("float32", "float32")
    # float32: predicted {1, 0.6}, GT missed -> 0; float64 threshold: predicted {1, 0.4, 0.6} -> 1 / 3
    for route in (score, score_dense, scoring.score_cells, scoring.score_pixels):
        assert route(whole(v), s, p, model_crop=WHOLE_IMAGE)["iou@0.4"] == 0.0
    legacy = dataclasses.replace(p, minmax_precision="float64", threshold_precision="float64")
    assert score(whole(v), s, legacy, model_crop=WHOLE_IMAGE)["iou@0.4"] == pytest.approx(1 / 3)


def _byo(height: int, width: int) -> Heatmap:
    """An original-size map as Vilouras et al. save it: NaN outside the model's 512 crop of the short side."""
    g = Geometry.short_side_crop(height, width, 512, 512)
    v = np.full((height, width), np.nan)
    v[g.top:g.top + g.height, g.left:g.left + g.width] = np.linspace(0, 1, g.height * g.width).reshape(g.height, g.width)
    return Heatmap.from_original(v)


def test_original_size_maps_drop_boxes_outside_their_finite_region() -> None:
    hm = _byo(200, 400)  # the finite square is columns 100-299
    inside, outside = (150, 50, 40, 40), (10, 50, 40, 40)
    p = load_protocol("vilouras2024")
    assert protocol_sample(hm, sample(400, 200, inside, outside), p).boxes == (tuple(map(float, inside)),)
    with pytest.raises(ExcludedSample):
        score(hm, sample(400, 200, outside), p)
    with pytest.raises(ExcludedSample):
        score_dense(hm, sample(400, 200, outside), p)


@pytest.mark.parametrize("name", ["nutzel2025", "dombrowski2024"])
def test_findings_outside_the_centre_crop_are_excluded(name: str) -> None:
    hm = Heatmap(np.random.default_rng(0).random((64, 128)), Geometry.whole(512, 1024))
    far_left = sample(1024, 512, (0, 100, 100, 100))  # the 512 crop of a 1024 x 512 image is columns 256-767
    with pytest.raises(ExcludedSample):
        score(hm, far_left, load_protocol(name))
    kept = score(hm, far_left, proto(name, on_no_box_in_crop="score", on_empty_mask="score"))
    assert kept["cnr"] == 0.0 and kept["auc_roc"] == 0.5


def test_runs_record_the_scored_boxes_and_count_exclusions(tmp_path) -> None:
    from types import SimpleNamespace

    import pandas as pd

    from bench.leaderboard.pages import _excluded, _scored_boxes
    from bench.running.rundir import RunDir
    from bench.running.runner import finish, score_all

    p = load_protocol("vilouras2024")
    g = Geometry.short_side_crop(200, 400, 512, 512)  # the model's crop: columns 100-299
    inside, outside = (150, 50, 40, 40), (10, 50, 40, 40)
    both = Sample("both", "x.png", 400, 200, "c", "p", (inside, outside), "test")
    lost = Sample("lost", "y.png", 400, 200, "c", "p", (outside,), "test")
    hm = Heatmap(np.linspace(0, 1, 64).reshape(8, 8), g)
    skipped: dict[str, str] = {}
    rundir = RunDir(tmp_path / "run")
    table, _ = score_all([both, lost], p, rundir, lambda s: hm, False, skipped)
    assert table["boxes"].tolist() == ["[[150, 50, 40, 40], [10, 50, 40, 40]]"]
    assert table["scored_boxes"].tolist() == ["[[150, 50, 40, 40]]"]
    record = {"skipped": [{"sample_id": k, "reason": v} for k, v in skipped.items()]}
    assert finish(rundir, table, p, record).record["n_excluded"] == 1
    assert _excluded({"skipped": record["skipped"] + [{"sample_id": "z", "reason": "unreadable image"}]}) == 1
    assert pd.read_csv(rundir.samples_csv)["scored_boxes"].tolist() == ["[[150, 50, 40, 40]]"]
    # a second run that kept both boxes of `both`: the page says the ground truth differed on 1 sample
    other = table.assign(scored_boxes=table["boxes"])
    board = SimpleNamespace(entries=[SimpleNamespace(samples=table), SimpleNamespace(samples=other)])
    assert "1 sample(s) were scored against partly different boxes" in _scored_boxes(board)[0]
    assert _scored_boxes(SimpleNamespace(entries=[SimpleNamespace(samples=table)] * 2)) == []
