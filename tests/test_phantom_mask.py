"""The phantom with `-O gt=mask`: the lesion's pixels as ground truth, scored end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from bench.core.geometry import box_mask
from bench.core.ground_truth import load_mask
from bench.datasets import get_dataset


def _masked_samples(n: int = 16):
    ds = get_dataset("phantom", options={"n_test": str(n), "n_train": "0", "gt": "mask"})
    return ds, ds.samples()


def test_phantom_mask_lies_in_its_tight_boxes() -> None:
    ds, samples = _masked_samples()
    assert all(s.gt_kind == "mask" for s in samples)
    assert get_dataset("phantom", options={"n_test": "2", "n_train": "0"}).samples()[0].mask is None
    for s in samples:
        m = load_mask(s.mask, s.height, s.width, s.sample_id)
        boxes = box_mask(s.boxes, s.height, s.width)
        assert m.any() and not (m & ~boxes).any(), s.sample_id  # the mask is inside its boxes
        assert m.sum() < boxes.sum(), s.sample_id  # and no lesion fills its box
        for b in s.boxes:  # each box is tight around its pixels, one pixel looser at most (ellipse extents)
            x, y, w, h = (int(v) for v in b)
            rows, cols = np.nonzero(m[y:y + h, x:x + w])
            assert rows.min() <= 1 and cols.min() <= 1 and rows.max() >= h - 2 and cols.max() >= w - 2
        if s.category == "pleural effusion":  # one meniscus region scanned column by column: exactly tight
            _, n = ndimage.label(m, structure=np.ones((3, 3)))
            assert n == 1
            (sl,) = ndimage.find_objects(m.astype(int))
            assert (sl[1].start, sl[0].start, sl[1].stop - sl[1].start, sl[0].stop - sl[0].start) == \
                tuple(int(v) for v in s.boxes[0])


def test_phantom_gt_option_changes_the_fingerprint_only_for_masks() -> None:
    plain = get_dataset("phantom", options={"n_test": "2"}).fingerprint_options()
    assert "gt" not in plain
    assert get_dataset("phantom", options={"n_test": "2", "gt": "boxes"}).fingerprint_options() == plain
    assert get_dataset("phantom", options={"n_test": "2", "gt": "mask"}).fingerprint_options()["gt"] == "mask"


def test_oracle_gaussian_scored_against_phantom_masks(bench_cli, tmp_path: Path) -> None:
    rows = {}
    for gt in ("boxes", "mask"):
        r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "phantom", "-O", "n_test=16", "-O",
                      "n_train=0", "-O", f"gt={gt}", "--out", tmp_path / gt)
        assert r.code == 0, r.err
        rows[gt] = pd.read_csv(tmp_path / gt / "samples.csv").set_index("sample_id")
    box, mask = rows["boxes"], rows["mask"]
    assert list(box.index) == list(mask.index) and len(box) == 16
    # the same maps against smaller GT: every sample's miou changes, the macro mean stays close
    assert (box["miou"] != mask["miou"]).all()
    assert 0.02 < abs(box["miou"].mean() - mask["miou"].mean()) < 0.2
    assert mask["auc_roc"].between(0.9, 1.0).all()
    # a Gaussian centred on the box peaks inside every box, but misses a pneumothorax crescent (the air
    # along the lung's edge, not its centre) and the gap between a pneumonia's patches
    assert (box["pointing_game"] == 1).all()
    missed = set(mask.index[mask["pointing_game"] == 0])
    assert missed == {"phantom-test-00007", "phantom-test-00014", "phantom-test-00015"}
    assert set(mask.loc[sorted(missed), "category"]) == {"pneumothorax", "pneumonia"}


def test_phantom_mask_refused_under_box_only_protocol(bench_cli, tmp_path: Path) -> None:
    r = bench_cli("run", "--method", "oracle_gaussian", "--dataset", "phantom", "-O", "n_test=2", "-O",
                  "n_train=0", "-O", "gt=mask", "--protocol", "vilouras2024", "--out", tmp_path / "v")
    assert r.code != 0
    assert "protocol 'vilouras2024' has drop_boxes = 'label_crop', defined on boxes only" in r.err
    assert "Traceback" not in r.err


@pytest.mark.parametrize("bad", ["masks", "points"])
def test_phantom_gt_option_checked(bad: str) -> None:
    from bench.core.errors import BenchError

    with pytest.raises(BenchError, match="gt"):
        get_dataset("phantom", options={"gt": bad})
