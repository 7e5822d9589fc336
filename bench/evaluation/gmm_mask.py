"""The binary mask of Nützel et al. and Dombrowski et al. (their `GMMMaskSuggestor`).

On the native map: a two-component 1-D Gaussian mixture over the finite values, threshold = mean
of the two component means, foreground = value > threshold; then a 3x3 majority vote (at least 5
of 9) on interior pixels only, border pixels keeping the raw decision. The mask is brought to the
evaluation grid by bilinear interpolation of 0/1 values and rounding half to even (0.5 -> 0).

The published codes fit the mixture without a random state: Nützel et al. never seed NumPy (every
run draws other starts), Dombrowski et al. seed it once per script, so each fit continues one
running stream that depends on the sample order. Here every fit is seeded (`random_state` = the
protocol seed), the same mask in any order; an unseeded fit is a legacy option, and
`bench.evaluation.seed_spread` refits with several seeds to show the mask's seed noise.

`gmm_threshold` is scikit-learn's fit on every pixel, the reference; `fast_threshold` follows the
same fit on the value histogram (`bench.evaluation.gmm_histogram`) and is what scoring uses.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from .crop_grid import CropSampling, sample_bilinear
from .gmm_histogram import NotFollowed, histogram_threshold


class GmmError(ValueError):
    """The mixture could not be fitted (fewer than two finite values)."""


def gmm_threshold(values: np.ndarray, seed: int | None) -> float:
    """Mean of the two component means of a 2-component Gaussian mixture fitted to the finite values."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)].reshape(-1, 1)
    if x.shape[0] < 2:
        raise GmmError(f"{x.shape[0]} finite value(s): a 2-component mixture needs at least 2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            gmm = GaussianMixture(n_components=2, random_state=seed).fit(x)
        except ValueError as exc:
            raise GmmError(str(exc)) from None
    return float(np.mean(gmm.means_))


def fast_threshold(values: np.ndarray, seed: int | None) -> float:
    """`gmm_threshold` computed on the value histogram; the per-pixel fit where the histogram fit cannot follow it."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise GmmError(f"{x.size} finite value(s): a 2-component mixture needs at least 2")
    state = None
    if seed is None:
        state = np.random.get_state()
    try:
        return histogram_threshold(x, seed)
    except NotFollowed:
        if state is not None:
            np.random.set_state(state)
        return gmm_threshold(x, seed)


def majority_interior(mask: np.ndarray) -> np.ndarray:
    """3x3 majority vote (>= 5 of 9 set) on interior pixels; the one-pixel border is left as is."""
    out = mask.copy()
    if mask.shape[0] < 3 or mask.shape[1] < 3:
        return out
    m = mask.astype(np.int16)
    count = sum(m[1 + dr:m.shape[0] - 1 + dr, 1 + dc:m.shape[1] - 1 + dc] for dr in (-1, 0, 1) for dc in (-1, 0, 1))
    out[1:-1, 1:-1] = count >= 5
    return out


def native_mask(values: np.ndarray, seed: int | None, majority: bool = True,
                fit: Callable[[np.ndarray, int | None], float] = fast_threshold) -> np.ndarray:
    """The GMM foreground on the native grid (NaN is background). Raises GmmError if no fit is possible.

    `fit` gives the threshold: `fast_threshold` (the default) or the per-pixel reference `gmm_threshold`.
    """
    threshold = fit(values, seed)
    with np.errstate(invalid="ignore"):
        mask = np.asarray(values, dtype=np.float64) > threshold
    return majority_interior(mask) if majority else mask


def mask_on_grid(mask: np.ndarray, where: CropSampling) -> np.ndarray:
    """A native binary mask on the evaluation grid: bilinear 0/1 then round half to even; False outside."""
    up = sample_bilinear(mask.astype(np.float64), where)
    with np.errstate(invalid="ignore"):
        return np.round(up) >= 1


class PreviousMask:
    """The last mask made, for the legacy reuse of a stale mask after a failed fit (Dombrowski et al.).

    The reproduced bug depends on the order samples are scored in; it is kept per process.
    """

    last: np.ndarray | None = None

    @classmethod
    def remember(cls, mask: np.ndarray) -> np.ndarray:
        cls.last = mask
        return mask

    @classmethod
    def recall(cls, shape: tuple[int, int]) -> np.ndarray:
        if cls.last is None or cls.last.shape != shape:
            return np.zeros(shape, dtype=bool)
        return cls.last


__all__ = ["GmmError", "PreviousMask", "fast_threshold", "gmm_threshold", "majority_interior", "mask_on_grid", "native_mask"]
