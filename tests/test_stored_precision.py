"""`stored_precision`: dombrowski2024 computes every step from the map at the dtype it was stored in,
checked against Dombrowski et al.'s arithmetic written out here in PyTorch and scikit-learn, on maps
stored in float32 (their default ATTN_PRECISION) and in float16 (their fp16 variant)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score, score_dense
from bench.evaluation.stored_precision import cnr_held, held_at

torch = pytest.importorskip("torch")
F = torch.nn.functional
BOX = (200, 150, 120, 90)  # x, y, w, h on a 512 x 512 image: the crop is the image, the GT is the box itself


def _stored_map(dtype) -> np.ndarray:
    """A 64 x 64 attention-like map: a small range on an offset, so the stored dtype matters."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-((xx - 32) ** 2 + (yy - 25) ** 2) / 60.0) + 0.6 * np.exp(-((xx - 10) ** 2 + (yy - 50) ** 2) / 30.0)
    return (0.3 + 0.01 * (blob + 0.05 * rng.random((64, 64)))).astype(dtype)


def _gt() -> np.ndarray:
    x, y, w, h = BOX
    gt = np.zeros((512, 512), dtype=bool)
    gt[y:y + h, x:x + w] = True
    return gt


def _published(stored: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """compute_bbox_iou.py's arithmetic on the stored tensor (GMM seeded with 0, as the harness's fixed seed)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.mixture import GaussianMixture

    t = torch.from_numpy(stored)
    mm = (t - t.min()) / (t.max() - t.min())
    up = F.interpolate(mm[None, None], size=(512, 512), mode="bilinear", align_corners=False)[0, 0]
    g = torch.from_numpy(gt)
    roi, rest = up[g], up[~g]
    cnr = ((roi.mean() - rest.mean()) / torch.sqrt(roi.var() + rest.var())).item()
    auc = roc_auc_score(gt.ravel(), up.float().numpy().ravel())
    top1 = float(gt.ravel()[int(torch.argmax(up.flatten()))])
    gmm = GaussianMixture(n_components=2, random_state=0).fit(stored.reshape(-1, 1))
    raw = t > float(np.mean(gmm.means_))
    count = F.conv2d(raw.float()[None, None], torch.ones(1, 1, 3, 3))[0, 0]
    mask = raw.clone()
    mask[1:-1, 1:-1] = count >= 5
    big = torch.round(F.interpolate(mask.float()[None, None], size=(512, 512), mode="bilinear",
                                    align_corners=False)[0, 0]).bool().numpy()
    iou = (big & gt).sum() / (big | gt).sum()
    return {"cnr": cnr, "auc_roc": auc, "pointing_game": top1, "iou_fg": float(iou)}


@pytest.mark.parametrize("precision,dtype", [("float32", np.float32), ("float16", np.float16)])
def test_every_step_at_the_stored_precision_matches_the_published_arithmetic(precision: str, dtype) -> None:
    stored = _stored_map(dtype)
    want = _published(stored, _gt())
    p = dataclasses.replace(load_protocol("dombrowski2024"), stored_precision=precision)
    heat = Heatmap(stored.astype(np.float64), Geometry.whole(512, 512))
    s = Sample("s", "x.png", 512, 512, "c", "p", (BOX,), "test")
    for got in (score(heat, s, p), score_dense(heat, s, p)):
        assert got["cnr"] == pytest.approx(want["cnr"], rel=1e-6)
        assert got["auc_roc"] == pytest.approx(want["auc_roc"], abs=1e-8)  # 1-ulp resize differences
        assert got["pointing_game"] == want["pointing_game"]
        assert got["iou_fg"] == pytest.approx(want["iou_fg"], abs=1e-12)


def test_float32_is_the_default_and_float16_the_documented_variant() -> None:
    p = load_protocol("dombrowski2024")
    assert p.stored_precision == "float32" == p.gmm_dtype == p.value_policy().minmax_precision
    assert load_protocol("dombrowski2024_filtered").stored_precision == "float32"
    assert load_protocol("nutzel2025").stored_precision == "float64"  # its half-precision map: precision fields
    assert load_protocol("nutzel2025").gmm_dtype == "float16"


def test_the_old_mixed_precisions_miss_the_published_mask() -> None:
    # GMM threshold at float16 on a float32 map, the rest in float64: not the published numbers
    stored = _stored_map(np.float32)
    want = _published(stored, _gt())
    mixed = dataclasses.replace(load_protocol("dombrowski2024"), stored_precision="float64", gmm_precision="float16")
    got = score(Heatmap(stored.astype(np.float64), Geometry.whole(512, 512)),
                Sample("s", "x.png", 512, 512, "c", "p", (BOX,), "test"), mixed)
    assert got["iou_fg"] != pytest.approx(want["iou_fg"], abs=1e-6)


def test_cnr_held_rounds_every_intermediate_by_hand() -> None:
    h = np.array([[0.0, 0.25], [0.5, 1.0]])
    g = np.array([[False, False], [False, True]])
    # inside [1.0]: mean 1, sample variance undefined for one pixel -> 0 by ddof 0 only
    # ddof 0: mean_out = 0.25, var_out = 1/24 (float16: 0.041656494...), var_in = 0
    var16 = np.float16(0.75 / 3 / 6 * 1.0)  # float64 1/24 rounded to half
    want = np.float16(np.float16(0.75) / np.float16(np.sqrt(np.float16(var16))))
    assert cnr_held(h, g, 0, "float16") == float(want)
    assert cnr_held(h, g, 0, "float64") == pytest.approx(0.75 / np.sqrt(1 / 24), rel=1e-15)
    assert held_at(np.array([0.1]), "float32")[0] == float(np.float32(0.1))


def test_stored_precision_is_one_field() -> None:
    base = load_protocol("dombrowski2024")
    with pytest.raises(BenchError, match="leave gmm_precision out"):
        dataclasses.replace(base, gmm_precision="float16")
    with pytest.raises(BenchError, match="stored_precision needs"):
        dataclasses.replace(load_protocol("default"), stored_precision="float32")
