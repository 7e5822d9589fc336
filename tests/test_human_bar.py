"""The human bar: `reader2` scored as a method, and leaderboard pages with its row and each method's gap to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools import mask as cocomask

from bench.core.ground_truth import MaskSource, rle_text
from bench.core.samples import Sample
from bench.datasets import DATASETS
from bench.datasets.base import Dataset

W, H = 40, 30
CATEGORIES = ("Edema", "Cardiomegaly")


def _rle(mask: np.ndarray) -> str:
    return rle_text(cocomask.encode(np.asfortranarray(mask.astype(np.uint8))))


def _rect(x: int, y: int, w: int, h: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y:y + h, x:x + w] = True
    return m


class TinyReader2(Dataset):
    """Six 40x30 images, two findings each: a GT mask (its bounding box as the sample's box) and a second
    reader's mask (the GT shifted by one to three pixels) with one point (inside the GT on even images)."""

    name = "tiny-reader2"
    description = "test data with a second reading"

    def samples(self) -> list[Sample]:
        out = []
        for i in range(6):
            image = self.data_root / f"img{i}.png"
            if not image.is_file():
                Image.fromarray(np.full((H, W), 40 * i, np.uint8)).save(image)
            for k, category in enumerate(CATEGORIES):
                x, y, w, h = 2 + 2 * i + 8 * k, 5 + k * 8, 8 + i, 6 + k  # the shifted reading stays inside
                gt = _rect(x, y, w, h)
                shift = 1 + (i % 3)
                point = [x + 1.5, y + 1.5] if i % 2 == 0 else [1.0, 1.0]
                reader2 = {"mask": _rle(_rect(x + shift, y, w, h)), "points": [point]}
                out.append(Sample(f"img{i}_{category}", str(image), W, H, category, category.lower(),
                                  ((x, y, w, h),), "test", {"image_id": f"img{i}", "reader2": reader2},
                                  mask=MaskSource(rle=_rle(gt))))
        return out


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(DATASETS, TinyReader2.name, f"{__name__}:TinyReader2")
    root = tmp_path / "data"
    root.mkdir()
    return root


def test_reader2_scores_the_second_reading(bench_cli, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "r2"
    r = bench_cli("run", "-m", "reader2", "-d", "tiny-reader2", "--data-root", tiny, "-p", "chexlocalize2022",
                  "--out", out)
    assert r.code == 0, r.err
    table = pd.read_csv(out / "samples.csv").set_index("sample_id")
    for s in TinyReader2(tiny).samples():
        i = int(s.sample_id[3])
        x, y, w, h = s.boxes[0]
        shift = 1 + (i % 3)
        assert table.loc[s.sample_id, "seg_iou"] == pytest.approx((w - shift) * h / ((w + shift) * h))
        assert table.loc[s.sample_id, "hit_rate"] == (1.0 if i % 2 == 0 else 0.0)  # the point, not the mask's maximum
        assert table.loc[s.sample_id, "image_id"] == f"img{i}"


def test_reader2_on_a_dataset_without_a_second_reading_is_one_line(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("run", "-m", "reader2", "-d", "phantom", "-O", "n_test=4", "-O", "n_train=4", "--out", tmp_path / "x")
    assert r.code == 2
    assert r.err.strip().splitlines() == ["error: dataset phantom carries no second reading (extra['reader2']) on the "
                                          "samples this run scores; reader2 needs a dataset with one (chexlocalize's "
                                          "test split)"]
    assert not (tmp_path / "x" / "samples.csv").exists()


def _macro(table: pd.DataFrame, metric: str) -> float:
    return float(table.groupby("category")[metric].mean().mean())


@pytest.mark.parametrize("protocol", ["default", "chexlocalize2022"])
def test_a_page_shows_the_human_reference_and_the_gaps(bench_cli, tiny: Path, tmp_path: Path, protocol: str) -> None:
    from bench.leaderboard import build as leaderboard
    from bench.leaderboard.results import add_run

    runs = {}
    for method in ("reader2", "oracle_gaussian", "box_prior"):
        out = tmp_path / "runs" / method
        r = bench_cli("run", "-m", method, "-d", "tiny-reader2", "--data-root", tiny, "-p", protocol, "--out", out)
        assert r.code == 0, r.err
        add_run(out, tmp_path / "results")
        runs[method] = pd.read_csv(out / "samples.csv").sort_values("sample_id").reset_index(drop=True)
    (tmp_path / "reported").mkdir()
    built = leaderboard.build(tmp_path / "results", tmp_path / "reported")
    page = built.texts[f"tiny-reader2__{protocol}.md"]
    assert "reader2 (human reference)" in page
    section = page.split("## Measured: gap to the human reference (reader2)")[1].split("\n## ")[0]
    metric = "seg_iou" if protocol == "chexlocalize2022" else "miou"
    block = section.split(f"**{metric}**")[1].split("**")[0]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in block.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"oracle_gaussian", "box_prior"}
    hb = runs["reader2"]
    for method in ("oracle_gaussian", "box_prior"):
        m = runs[method]
        if protocol == "default":
            # stratified bootstrap: the observed macro means, their difference and 100 (HB - method) / HB
            gap, pct = _macro(m, metric) - _macro(hb, metric), 100 * (_macro(hb, metric) - _macro(m, metric)) / _macro(hb, metric)
        else:
            from bench.evaluation.image_bootstrap import paired_images

            out = paired_images(m, hb, [metric], "macro", 1000, 0.95, 0)
            gap, pct = out["difference"][0], out["pct_decrease"][0]
        assert rows[method][3].startswith(f"{gap:.3f} [")
        assert rows[method][4].startswith(f"{pct:.3f} [")


def test_compare_under_the_image_bootstrap_pairs_image_draws(bench_cli, tiny: Path, tmp_path: Path) -> None:
    from bench import compare_runs
    from bench.evaluation.image_bootstrap import draw_counts

    for method in ("reader2", "oracle_gaussian"):
        r = bench_cli("run", "-m", method, "-d", "tiny-reader2", "--data-root", tiny, "-p", "chexlocalize2022",
                      "--out", tmp_path / method)
        assert r.code == 0, r.err
    result = compare_runs([tmp_path / "reader2", tmp_path / "oracle_gaussian"], group="Edema")
    row = result.differences.set_index("metric").loc["seg_iou"]
    # independently: per resample, the Edema mean of each run over the drawn images; their difference
    tables = [pd.read_csv(tmp_path / m / "samples.csv") for m in ("oracle_gaussian", "reader2")]
    edema = [t[t["category"] == "Edema"].set_index("image_id")["seg_iou"] for t in tables]
    images = sorted(set(tables[0]["image_id"]))
    counts = draw_counts(len(images), 1000, 0)
    diffs = np.sort([(w @ edema[0].reindex(images).to_numpy() - w @ edema[1].reindex(images).to_numpy()) / w.sum()
                     for w in counts])
    assert row["difference"] == pytest.approx(diffs.mean())
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((diffs[24], diffs[974]))


def test_reader2_on_the_chexlocalize_files(bench_cli, tmp_path: Path) -> None:
    """The benchmark readers of CheXlocalize's own file format (the dataset reader's `extra["reader2"]`)."""
    import public_fixtures as fx

    fx.chexlocalize(tmp_path / "data")
    r = bench_cli("run", "-m", "reader2", "-d", "chexlocalize", "--data-root", tmp_path / "data", "-p",
                  "chexlocalize2022", "--out", tmp_path / "r2")
    assert r.code == 0, r.err
    table = pd.read_csv(tmp_path / "r2" / "samples.csv").set_index("sample_id")
    cxr = "patient64541_study1_view1_frontal"
    # GT rows 2-4, reader rows 3-5, both columns 3-8: 12 / 24
    assert table.loc[f"{cxr}-Airspace_Opacity", "seg_iou"] == pytest.approx(0.5)
    # no benchmark mask for this finding: undefined; its point (10.2, 9.9) is pixel [9, 10], inside the GT
    assert np.isnan(table.loc[f"{cxr}-Cardiomegaly", "seg_iou"])
    assert table.loc[f"{cxr}-Cardiomegaly", "hit_rate"] == 1.0
    # no point at all: a miss, as CheXlocalize counts it
    assert table.loc["patient64542_study1_view1_frontal-Pleural_Effusion", "hit_rate"] == 0.0
    assert set(table["image_id"]) <= {cxr, "patient64542_study1_view1_frontal", "patient64600_study2_view1_frontal"}
