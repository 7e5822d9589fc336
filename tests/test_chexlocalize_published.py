"""chexlocalize2022 against the published CheXlocalize code run on the same synthetic masks and maps.

Needs the published scripts (rajpurkarlab/cheXlocalize: eval.py, eval_constants.py, utils.py,
tune_heatmap_threshold.py, heatmap_to_segmentation.py, calculate_percentage_decrease.py) in the
folder named by BENCH_CHEXLOCALIZE_CODE; skipped without it. Their imports of OpenCV and statsmodels
are stubbed: the functions compared here do not call them. The Otsu-with-contours rule calls OpenCV
and is checked by hand-made shapes in test_chexlocalize.py instead.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as cocomask

from bench.core.geometry import Geometry
from bench.core.ground_truth import MaskSource, rle_text
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation.chexlocalize import points_hit, seg_iou
from bench.evaluation.chexlocalize_tuning import tune_thresholds
from bench.evaluation.image_bootstrap import paired_images, summarise_images
from bench.evaluation.protocols import load_protocol
from bench.evaluation.resample import to_original
from bench.evaluation.scoring import prepare_values, score

CODE = os.environ.get("BENCH_CHEXLOCALIZE_CODE")
pytestmark = pytest.mark.skipif(not CODE or not (Path(CODE) / "eval.py").is_file(),
                                reason="BENCH_CHEXLOCALIZE_CODE does not name a folder with CheXlocalize's eval.py")
PROTOCOL = load_protocol("chexlocalize2022")


@pytest.fixture(scope="module")
def published():
    """The published modules, imported with OpenCV and statsmodels stubbed."""
    pytest.importorskip("torch")
    stubs = {name: types.ModuleType(name) for name in ("cv2", "statsmodels", "statsmodels.formula",
                                                       "statsmodels.formula.api")}
    saved = {name: sys.modules.get(name) for name in [*stubs, "eval", "utils", "eval_constants",
                                                      "heatmap_to_segmentation", "tune_heatmap_threshold",
                                                      "calculate_percentage_decrease"]}
    sys.modules.update(stubs)
    sys.path.insert(0, CODE)
    try:
        import calculate_percentage_decrease
        import eval as evaluation
        import eval_constants
        import tune_heatmap_threshold
        yield types.SimpleNamespace(eval=evaluation, tune=tune_heatmap_threshold, pct=calculate_percentage_decrease,
                                    tasks=eval_constants.LOCALIZATION_TASKS)
    finally:
        sys.path.remove(CODE)
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _encode(mask: np.ndarray) -> dict:
    rle = cocomask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _blob(rng: np.random.Generator, h: int, w: int, empty: float) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    if rng.random() < empty:
        return mask
    y, x = rng.integers(0, h - 4), rng.integers(0, w - 4)
    mask[y:y + rng.integers(2, h - y), x:x + rng.integers(2, w - x)] = True
    return mask


@pytest.fixture(scope="module")
def world(published, tmp_path_factory):
    """12 images of 30x40, a GT, a second reader's mask and points, and a 7x9 map per (image, task).

    7x9 rather than a whole fraction of 30x40: upsampling by a whole factor puts interpolated values exactly
    on thresholds such as 0.6, where the published float32 and the harness's float64 arithmetic round apart."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("cxl")
    ids = [f"patient{i:05d}_study1_view1_frontal" for i in range(12)]
    gt, hb, pts, maps = {}, {}, {}, {}
    for cxr in ids:
        gt[cxr], hb[cxr], pts[cxr] = {}, {}, {}
        for task in published.tasks:
            g = _blob(rng, 30, 40, 0.4)
            gt[cxr][task], hb[cxr][task] = g, _blob(rng, 30, 40, 0.2)
            pts[cxr][task] = [[float(rng.uniform(0, 40)), float(rng.uniform(0, 30))] for _ in range(rng.integers(0, 3))]
            maps[cxr, task] = rng.random((7, 9)).astype(np.float32)
    (root / "gt.json").write_text(json.dumps({c: {t: _encode(m) for t, m in d.items()} for c, d in gt.items()}))
    (root / "hb.json").write_text(json.dumps({c: {t: _encode(m) for t, m in d.items()} for c, d in hb.items()}))
    (root / "pts.json").write_text(json.dumps(pts))
    import torch

    (root / "maps").mkdir()
    for (cxr, task), values in maps.items():
        info = {"map": torch.from_numpy(values)[None, None], "cxr_dims": (40, 30), "prob": 1.0, "task": task}
        with open(root / "maps" / f"{cxr}_{task}_map.pkl", "wb") as fh:
            pickle.dump(info, fh)
    return types.SimpleNamespace(root=root, ids=ids, gt=gt, hb=hb, pts=pts, maps=maps, tasks=published.tasks)


def _sample(world, cxr: str, task: str) -> Sample:
    return Sample(f"{cxr}_{task}", f"{cxr}.jpg", 40, 30, task, task.lower(), (),
                  extra={"image_id": cxr}, mask=MaskSource(rle=rle_text(_encode(world.gt[cxr][task]))))


def test_iou_and_human_hits_match(published, world) -> None:
    ious, _ = published.eval.get_ious(str(world.root / "gt.json"), str(world.root / "hb.json"), True)
    hits, _ = published.eval.get_hb_hitrates(str(world.root / "gt.json"), str(world.root / "pts.json"))
    for task in sorted(world.tasks):
        for k, cxr in enumerate(world.ids):
            ours = seg_iou(world.hb[cxr][task], world.gt[cxr][task])
            np.testing.assert_equal(ours, ious[task][k])
            np.testing.assert_equal(points_hit(world.pts[cxr][task], world.gt[cxr][task]), hits.loc[cxr, task])


def test_argmax_hits_of_resized_maps_match(published, world) -> None:
    hits, _ = published.eval.get_hitrates(str(world.root / "gt.json"), str(world.root / "maps"))
    for (cxr, task), values in world.maps.items():
        ours = score(Heatmap(values, Geometry.whole(30, 40)), _sample(world, cxr, task), PROTOCOL)["hit_rate"]
        np.testing.assert_equal(ours, hits.loc[cxr, task])


def test_tuned_thresholds_match(published, world) -> None:
    gt = json.loads((world.root / "gt.json").read_text())
    items = []
    for (cxr, task), values in world.maps.items():
        normalised = prepare_values(to_original(Heatmap(values, Geometry.whole(30, 40)), "bilinear"), PROTOCOL)
        items.append((task, normalised, world.gt[cxr][task]))
    ours, curves = tune_thresholds(items)
    for task in world.tasks:
        expected = published.tune.tune_threshold(task, gt, str(world.root / "maps"))
        assert ours[task] == round(float(expected), 1)
        paths = sorted((world.root / "maps").glob(f"*{task}_map.pkl"))
        mious = [published.tune.compute_miou(t, paths, gt) for t in np.arange(0.2, 0.8, 0.1)]
        np.testing.assert_allclose(curves[task], mious, rtol=1e-9)


def test_bootstrap_summary_and_percentage_decrease_match(published, world, tmp_path) -> None:
    ious, _ = published.eval.get_ious(str(world.root / "gt.json"), str(world.root / "hb.json"), True)
    rows = [{"sample_id": f"{cxr}_{t}", "image_id": cxr, "category": t, "seg_iou": ious[t][k]}
            for t in sorted(world.tasks) for k, cxr in enumerate(world.ids)]
    table = pd.DataFrame(rows)
    wide = pd.DataFrame(ious)
    wide["img_id"] = world.ids
    np.random.seed(0)
    boot = published.eval.bootstrap_metric(wide, 1000)
    ours = summarise_images(table, ["seg_iou"], ("macro",), 1000, 0.95, 0).set_index("group")
    for task in world.tasks:
        lo, mean, hi = published.eval.compute_cis(boot[task], confidence_level=0.05)
        # with 12 images some resamples draw no image with a value: NaN sorts last, so an upper bound can be NaN
        np.testing.assert_equal([round(ours.loc[task, c], 3) for c in ("ci_low", "mean", "ci_high")], [lo, mean, hi])
    # a "method": every IoU halved; the published percentage decrease from the two bootstrap files
    method = table.assign(seg_iou=table["seg_iou"] / 2)
    np.random.seed(0)
    boot_m = published.eval.bootstrap_metric(wide.assign(**{t: wide[t] / 2 for t in world.tasks}), 1000)
    boot.to_csv(tmp_path / "hb.csv", index=False)
    boot_m.to_csv(tmp_path / "m.csv", index=False)
    published.pct.create_pct_diff_df("miou", tmp_path / "m.csv", tmp_path / "hb.csv", tmp_path)
    pct = pd.read_csv(tmp_path / "miou_pct_decrease.csv", index_col=0)
    for task in [*world.tasks, "Average"]:
        out = paired_images(method, table, ["seg_iou"], "macro" if task == "Average" else task, 1000, 0.95, 0)
        ours = [out["pct_decrease"][0], out["pct_low"][0], out["pct_high"][0]]
        theirs = pct.loc[task, ["pct_diff", "pct_diff_lower", "pct_diff_upper"]].to_numpy(np.float64)
        if task == "Average":
            # the published average's point value divides the two averages rounded to 3 decimals first
            # ((0.091 - 0.046) / 0.091 here, 49.451 for an exact 50): only its interval is compared
            ours, theirs = ours[1:], theirs[1:]
        np.testing.assert_allclose(ours, theirs, atol=1.5e-3)
