"""vilouras2024's box dropping is decided by the model's crop, stated for the run, whatever map is scored:
native maps, NaN-padded original-size maps and original-size maps finite everywhere give the same
dropped-box sample set, equal to the published label-mask rule written out here with PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_datasets import fake_ms_cxr

from bench.core.errors import BenchError
from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.core.samples import Sample
from bench.evaluation.label_crop import FROM_MAP, WHOLE_IMAGE
from bench.evaluation.protocols import load_protocol
from bench.evaluation.resample import to_original
from bench.evaluation.scoring import ExcludedSample, score_dense, score_with_boxes
from bench.running.model_crop import source_crop, spec_crop

torch = pytest.importorskip("torch")

W, H = 400, 300  # resized to 682 x 512: a 512 crop leaves 85 resized (66 original) columns out on each side
BOXES = {
    "left": [(5, 100, 30, 40)],                        # in the left margin only: dropped by every crop
    "mixed": [(5, 100, 30, 40), (150, 100, 60, 60)],   # the first dropped, the second kept
    "edge": [(30, 50, 40, 40)],                        # partly inside: kept whole
    "top": [(150, 0, 60, 6)],                          # above a 480 or 448 crop (those cut rows too), inside 512
    "middle": [(180, 120, 40, 40)],
}


def _published_kept(boxes, crop: int) -> list[int]:
    """data/ms_cxr.py: label mask 5v, bilinear Resize(512) without antialias, round to int64, centre crop."""
    labels = torch.zeros((1, H, W), dtype=torch.float32)
    for v, (x, y, w, h) in enumerate(boxes, 1):
        labels[:, y:y + h, x:x + w] = 5 * v
    rw = int(512 * W / H)
    out = torch.round(torch.nn.functional.interpolate(labels[None], size=(512, rw), mode="bilinear",
                                                      align_corners=False, antialias=False))[0, 0].long()
    if crop == 512:  # MONAI CenterSpatialCrop
        top, left = 512 // 2 - crop // 2, rw // 2 - crop // 2
    else:  # torchvision CenterCrop
        top, left = int(round((512 - crop) / 2.0)), int(round((rw - crop) / 2.0))
    present = set(out[top:top + crop, left:left + crop].unique().tolist())
    return [i for i in range(len(boxes)) if 5 * (i + 1) in present]


def _maps(crop: int) -> dict[str, Heatmap]:
    rng = np.random.default_rng(crop)
    native = Heatmap(rng.random((16, 16)), Geometry.short_side_crop(H, W, 512, crop))
    padded = to_original(native, "nearest")  # NaN outside the crop, as the published code saves it
    filled = np.where(np.isfinite(padded), padded, 0.0)  # a method that fills its margins
    return {"native": native, "nan_padded": Heatmap.from_original(padded), "finite": Heatmap.from_original(filled)}


def _scored_set(maps: dict[str, Heatmap], kind: str, crop: int | None) -> dict[str, tuple]:
    p = load_protocol("vilouras2024")
    out = {}
    for name, boxes in BOXES.items():
        s = Sample(name, "x.png", W, H, "c", "p", tuple(tuple(float(v) for v in b) for b in boxes), "test")
        try:
            scores, scored = score_with_boxes(maps[kind], s, p, model_crop=crop)
            assert score_dense(maps[kind], s, p, model_crop=crop) == pytest.approx(scores)  # the reference route
            out[name] = scored.boxes
        except ExcludedSample:
            out[name] = ()
    return out


@pytest.mark.parametrize("crop", [512, 480, 448])
def test_native_nan_padded_and_finite_maps_drop_the_same_boxes_as_published(crop: int) -> None:
    maps = _maps(crop)
    want = {name: tuple(tuple(float(v) for v in boxes[i]) for i in _published_kept(boxes, crop))
            for name, boxes in BOXES.items()}
    assert want["left"] == () and len(want["mixed"]) == 1 and want["edge"] and want["middle"]
    assert bool(want["top"]) == (crop == 512)
    for kind in ("native", "nan_padded", "finite"):
        assert _scored_set(maps, kind, crop) == want, kind
    for kind in ("native", "nan_padded"):  # the crop these maps record is the same fact
        assert _scored_set(maps, kind, None) == want, kind


def test_a_finite_original_size_map_without_a_stated_crop_is_refused() -> None:
    maps = _maps(512)
    s = Sample("s", "x.png", W, H, "c", "p", ((150.0, 100.0, 60.0, 60.0),), "test")
    with pytest.raises(BenchError, match="--model-crop"):
        score_with_boxes(maps["finite"], s, load_protocol("vilouras2024"))
    # the old inference kept every box of such a map: the left-margin box scored
    left = Sample("l", "x.png", W, H, "c", "p", ((5.0, 100.0, 30.0, 40.0),), "test")
    assert score_with_boxes(maps["finite"], left, load_protocol("vilouras2024"), model_crop=WHOLE_IMAGE)[1].boxes
    with pytest.raises(ExcludedSample):
        score_with_boxes(maps["finite"], left, load_protocol("vilouras2024"), model_crop=512)
    # a stated crop that the map's own NaN frame contradicts
    with pytest.raises(BenchError, match="not the 512 crop"):
        score_with_boxes(_maps(448)["nan_padded"], s, load_protocol("vilouras2024"), model_crop=512)
    import bench

    with pytest.raises(BenchError, match="model_crop=SIZE"):
        bench.score_maps([maps["finite"]], [left], protocol="vilouras2024")
    api = bench.score_maps([maps["finite"], maps["finite"]], [left, s], protocol="vilouras2024", model_crop=512)
    assert list(api.samples["sample_id"]) == ["s"] and "l" in api.skipped
    # protocols that drop no box need no crop
    assert score_with_boxes(maps["finite"], s, load_protocol("vilouras2025"))[1].boxes == s.boxes


def test_the_crop_from_method_specs_and_source_runs() -> None:
    p = load_protocol("vilouras2024")
    assert spec_crop({"params": {"resize": 512, "crop": 480}}, p) == 480
    assert spec_crop({"params": {"resize": 64, "crop": 64}}, p) == 512  # phantom_ldm: the same footprint at 512
    assert spec_crop({"params": {"grid": 64}}, p) == FROM_MAP  # a baseline: its maps say where they lie
    assert source_crop({"config": {"method": {"params": {"resize": 512, "crop": 448}}}}, p) == 448
    assert source_crop({"model_crop": {"size": 480, "model_input": 512, "source": "--model-crop"}}, p) == 480
    assert source_crop(None, p) is None


def _ms_cxr(root: Path) -> list[list]:
    # two 400 x 300 images: one box in the left margin (dropped by a 512 crop), one in the middle
    rows = [[f"{k}" + "a" * 40, "Pneumonia", f"finding {k}", f"files/p10/p1{k}/s1/{k}{'a' * 40}.jpg", *box, W, H]
            for k, box in enumerate([(5, 100, 30, 40), (180, 120, 40, 40)])]
    fake_ms_cxr(root, "1.0.0", rows)
    return rows


def ms_cxr_maps(tmp_path: Path, make) -> Path:
    """The MS-CXR-format fixture under tmp_path/data and one original-size map `make(rng)` per sample in tmp_path/maps."""
    from bench.datasets import get_dataset

    _ms_cxr(tmp_path / "data")
    maps = tmp_path / "maps"
    maps.mkdir()
    rng = np.random.default_rng(0)
    for s in get_dataset("ms-cxr", tmp_path / "data").samples():
        np.save(maps / f"{s.sample_id}.npy", make(rng))
    return maps


def test_bench_score_takes_the_crop_refuses_without_it_and_records_it(tmp_path: Path, bench_cli) -> None:
    maps = ms_cxr_maps(tmp_path, lambda rng: rng.random((H, W)))
    args = ["score", "--heatmaps", maps, "-d", "ms-cxr", "--data-root", tmp_path / "data", "-p", "vilouras2024"]
    refused = bench_cli(*args, "--out", tmp_path / "a")
    assert refused.code != 0 and "--model-crop" in refused.err and "Traceback" not in refused.err
    assert not (tmp_path / "a" / "summary.csv").exists()
    ok = bench_cli(*args, "--out", tmp_path / "b", "--model-crop", "512")
    assert ok.code == 0, ok.err
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    assert run["model_crop"] == {"size": 512, "model_input": 512, "source": "--model-crop"}
    assert run["n_samples"] == 1 and len(run["excluded"]) == 1  # the left-margin finding is not scored
    whole = bench_cli(*args, "--out", tmp_path / "c", "--model-crop", "0")
    assert whole.code == 0 and json.loads((tmp_path / "c" / "run.json").read_text())["n_samples"] == 2


def test_bench_run_records_the_crop_and_bench_score_reuses_it(tmp_path: Path, bench_cli) -> None:
    _ms_cxr(tmp_path / "data")
    run = tmp_path / "run"
    made = bench_cli("run", "-m", "oracle_gaussian", "-d", "ms-cxr", "--data-root", tmp_path / "data", "-p",
                     "vilouras2024", "--out", run)
    assert made.code == 0, made.err
    record = json.loads((run / "run.json").read_text())
    # a baseline declares no crop: its maps, over the whole image, are the statement; both findings scored
    assert record["model_crop"] == {"size": None, "model_input": 512, "source": "map geometry"}
    assert record["n_samples"] == 2
    again = bench_cli("score", "--heatmaps", run, "-d", "ms-cxr", "--data-root", tmp_path / "data", "-p",
                      "vilouras2024", "--out", tmp_path / "again")
    assert again.code == 0, again.err
    assert json.loads((tmp_path / "again" / "run.json").read_text())["model_crop"]["source"] == "map geometry"
    cropped = bench_cli("score", "--heatmaps", run, "-d", "ms-cxr", "--data-root", tmp_path / "data", "-p",
                        "vilouras2024", "--model-crop", "512", "--out", tmp_path / "cropped")
    assert cropped.code == 0, cropped.err
    assert json.loads((tmp_path / "cropped" / "run.json").read_text())["n_samples"] == 1
