"""Geometry: PyTorch-exact nearest indices, the box rasterisation rule, crop footprints, storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.core.geometry import Geometry, box_mask, box_pixel_range, nearest_index
from bench.core.heatmap import Heatmap
from bench.evaluation.resample import bilinear_resize, to_original


def test_nearest_index_matches_torch_float32() -> None:
    rng = np.random.default_rng(0)
    for i in range(80):
        ih, iw = (int(v) for v in rng.integers(1, 70, 2))
        oh, ow = (int(v) for v in rng.integers(1, 1600, 2))
        if i % 3 == 0:
            oh = 2 * ih
        src = torch.arange(ih * iw, dtype=torch.float32).reshape(1, 1, ih, iw)
        out = F.interpolate(src, size=(oh, ow), mode="nearest")[0, 0].numpy()
        ours = np.arange(ih * iw).reshape(ih, iw)[nearest_index(oh, ih)][:, nearest_index(ow, iw)]
        np.testing.assert_array_equal(out, ours)


def test_bilinear_matches_torch() -> None:
    x = np.random.default_rng(1).random((7, 9))
    ref = F.interpolate(torch.tensor(x)[None, None], size=(40, 23), mode="bilinear", align_corners=False)[0, 0]
    np.testing.assert_allclose(bilinear_resize(x, 40, 23), ref.numpy(), atol=1e-12)


def test_box_rasterisation_rule() -> None:
    # integer boxes are the slice [y:y+h, x:x+w]
    m = box_mask([(2, 1, 3, 2)], 5, 6)
    ref = np.zeros((5, 6), bool)
    ref[1:3, 2:5] = True
    np.testing.assert_array_equal(m, ref)
    # pixel k is inside iff start <= k + 0.5 < start + length
    assert box_pixel_range(1.5, 2.0, 10) == (1, 3)  # centres 1.5 and 2.5
    assert box_pixel_range(1.6, 2.0, 10) == (2, 4)  # centres 2.5, 3.5 (3.5 < 3.6)
    assert box_pixel_range(-3.0, 5.0, 10) == (0, 2)  # clipped at the border
    assert box_pixel_range(8.2, 5.0, 10) == (8, 10)
    assert box_pixel_range(0.0, 0.4, 10) == (0, 0)  # covers no pixel centre


def test_short_side_crop_footprint_like_hi_ml() -> None:
    g = Geometry.short_side_crop(3056, 2544, 512, 480)
    side = int(480 * 2544 / 512)
    assert (g.height, g.width) == (side, side) == (2385, 2385)
    assert g.left == (2544 - 2385) // 2 and g.top == (3056 - 2385) // 2
    # NaN padding: floor on top/left, ceil on bottom/right
    assert g.image_width - g.left - g.width == 80 and g.left == 79


def test_to_original_places_map_with_nan_outside() -> None:
    hm = Heatmap(np.array([[1.0, 2.0], [3.0, 4.0]]), Geometry(6, 8, 1, 2, 4, 4))
    out = to_original(hm)
    assert np.isnan(out[0]).all() and np.isnan(out[:, :2]).all() and np.isnan(out[:, 6:]).all()
    np.testing.assert_array_equal(out[1:5, 2:6], np.kron([[1, 2], [3, 4]], np.ones((2, 2))))


def test_heatmap_roundtrip(tmp_path) -> None:
    hm = Heatmap(np.random.default_rng(2).random((15, 15)).astype(np.float32),
                 Geometry.short_side_crop(2000, 1600, 512, 480), {"method": "x"})
    hm.save(tmp_path / "a.npz")
    back = Heatmap.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(back.values, hm.values)
    assert back.geometry == hm.geometry and back.meta == {"method": "x"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_geometry_rejects_outside_field_of_view() -> None:
    with pytest.raises(ValueError):
        Geometry(10, 10, 5, 5, 6, 2)
