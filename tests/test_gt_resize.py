"""The GMM protocols' GT mask (boolean resize + centre crop) from the interpolation weights equals PyTorch's."""

from __future__ import annotations

import numpy as np
import pytest

from bench.evaluation import crop_grid
from bench.evaluation.crop_grid import CropSpace, gt_mask

torch = pytest.importorskip("torch")


def _torch_axis(inside: np.ndarray, resized: int, offset: int, size: int, antialias: bool) -> np.ndarray:
    """PyTorch's own profile, written here independently of the harness: interpolate a 2-wide strip, crop, != 0."""
    import torch.nn.functional as F

    strip = torch.from_numpy(np.repeat(inside.astype(np.float32)[:, None], 2, axis=1))[None, None]
    out = F.interpolate(strip, size=(resized, 2), mode="bilinear", align_corners=False, antialias=antialias)
    return (out[0, 0, offset:offset + size, 0] != 0).numpy()


# MIMIC, NIH, phantom and odd sizes; identity and integer scales (exact ties), upsampling (small images)
SIZES = [(2544, 3056), (3056, 2544), (1024, 1024), (659, 702), (512, 512), (300, 280), (3050, 2539), (1537, 1200)]


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("shape", SIZES)
def test_axis_profile_equals_pytorch(shape: tuple[int, int], antialias: bool) -> None:
    rng = np.random.default_rng(shape[0] * 7 + shape[1] + antialias)
    space = CropSpace.for_image(*shape, 512)
    undecided = 0
    for n, resized, offset in ((shape[0], space.resized_height, space.top), (shape[1], space.resized_width, space.left)):
        runs = [(0, 1), (0, n), (n - 1, n), (n // 2, n // 2 + 1)]
        runs += [(a, int(rng.integers(a + 1, n + 1))) for a in rng.integers(0, n, 150)]
        for a, b in runs:
            inside = np.zeros(n, dtype=bool)
            inside[a:b] = True
            want = _torch_axis(inside, resized, offset, 512, antialias)
            fast = crop_grid._axis_mask_weights(inside, resized, offset, 512, antialias)
            undecided += fast is None
            assert np.array_equal(crop_grid._axis_mask(inside, resized, offset, 512, antialias), want), (n, a, b)
            assert fast is None or np.array_equal(fast, want), (n, a, b)
    assert undecided <= 2  # PyTorch decides only where float32 and exact arithmetic part


def test_identity_resize_keeps_the_box_and_integer_downscale_dilates_by_one_pixel() -> None:
    """Hand-computed: at 512 x 512 nothing moves. At 1024 x 1024 (scale 2) output row i blends source rows
    2i and 2i + 1 without antialias, so source rows 100-199 give rows 50-99; with the triangle filter of
    support 2, row i is non-zero when its centre 2i + 1 lies less than 2 from a source centre in
    [100.5, 199.5]: rows 49-100, one more on each side."""
    box = [(10, 100, 20, 100)]  # x, y, w, h
    same = gt_mask(box, CropSpace.for_image(512, 512, 512), antialias=True)
    assert np.array_equal(np.flatnonzero(same.any(axis=1)), np.arange(100, 200))
    assert np.array_equal(np.flatnonzero(same.any(axis=0)), np.arange(10, 30))
    for antialias, rows in ((False, np.arange(50, 100)), (True, np.arange(49, 101))):
        half = gt_mask(box, CropSpace.for_image(1024, 1024, 512), antialias=antialias)
        assert np.array_equal(np.flatnonzero(half.any(axis=1)), rows)


def test_an_undecided_edge_without_pytorch_is_one_line_naming_the_models_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where float32 and exact arithmetic part, only PyTorch decides: a light install says so in one line."""
    from bench.core.errors import BenchError

    monkeypatch.setattr(crop_grid, "_axis_mask_weights", lambda *args: None)
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    inside = np.zeros(1024, dtype=bool)
    inside[100:200] = True
    with pytest.raises(BenchError, match=r"needs torch, which the light install leaves out.*\[models\]") as err:
        crop_grid._axis_mask(inside, 512, 0, 512, True)
    assert "\n" not in str(err.value)
