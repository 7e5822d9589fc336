"""Bimodal Bias Merging (Nützel et al. 2025), as their evaluation code computes it.

Two passes over the same prompt: pass 1 re-noises the ground-truth latent at every step, pass 2
samples an image from seeded noise with classifier-free guidance. Four maps per sample come out of
them, all on one grid (the 64x64 SD latent in the paper), each a mean over (step, layer):

- activation A: pass 1, the method's own step window (the last 40 of 50), selected tokens;
- image bias: pass 1, every step, the start token ([CLS] / SOS) alone;
- text bias: pass 2, every step, selected tokens;
- product: P_img @ mean_n P_txt_n, the spatial matrix product of the pass-1 start-token map and the
  pass-2 token maps of the same (step, layer).

The merge quantises as the published code does: the image and text biases and the product are
min-max scaled in float16, multiplied by 255 and truncated to uint8; s = max(SSIM(image bias, text
bias), 0) with scikit-image's defaults on uint8 (7x7 uniform window, data range 255, K1 0.01,
K2 0.03, sample covariance, mean over the windows inside the image); M is the uint8 product scaled
back to [0, 1] and A the float16 min-max activation; the map is the quadratic Bézier
(1-s)^2 A + 2s(1-s) C + s^2 M with control point C = (A + M + A*M) / 2. The published code stores
the merged map in float16; it is returned here in float64, unrounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view

from .aggregate import AttentionAggregator, BbmProduct, Grid, MapStore
from .capture import Sink
from .steps import StepSelection

SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def minmax_half(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] in float16 arithmetic (a constant map gives zeros, not the published 0/0)."""
    x = np.asarray(values).astype(np.float16)
    low, high = x.min(), x.max()
    span = np.float16(high - low)
    if span == 0:
        return np.zeros_like(x)
    return ((x - low) / span).astype(np.float16)


def quantise_uint8(values: np.ndarray) -> np.ndarray:
    """The published 8-bit quantisation: float16 min-max, times 255 in float16, truncated to uint8."""
    scaled = (minmax_half(values) * np.float16(255)).astype(np.float16)
    return np.trunc(scaled).astype(np.uint8)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0, window: int = SSIM_WINDOW,
         k1: float = SSIM_K1, k2: float = SSIM_K2) -> float:
    """Mean structural similarity over every `window` x `window` square lying inside the images.

    Uniform window, sample (n-1) covariance: scikit-image's `structural_similarity` with its defaults.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"SSIM needs two 2-D images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape) < window:
        raise ValueError(f"SSIM with a {window}x{window} window needs images at least that large, got {a.shape}")

    def local_mean(x: np.ndarray) -> np.ndarray:
        return sliding_window_view(x, (window, window)).mean(axis=(-2, -1))

    n = window * window
    cov_norm = n / (n - 1)
    mu_a, mu_b = local_mean(a), local_mean(b)
    var_a = cov_norm * (local_mean(a * a) - mu_a * mu_a)
    var_b = cov_norm * (local_mean(b * b) - mu_b * mu_b)
    cov = cov_norm * (local_mean(a * b) - mu_a * mu_b)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def bezier_merge(activation: np.ndarray, product: np.ndarray, s: float) -> np.ndarray:
    """(1-s)^2 A + 2s(1-s) C + s^2 M, C = (A + M + A*M) / 2: from A at s = 0 to M at s = 1."""
    a = np.asarray(activation, dtype=np.float64)
    m = np.asarray(product, dtype=np.float64)
    control = (a + m + a * m) / 2
    return (1 - s) ** 2 * a + 2 * s * (1 - s) * control + s**2 * m


@dataclass(frozen=True)
class BbmMaps:
    """The four per-sample maps BBM merges, each (samples, H, W) on one grid."""

    activation: np.ndarray
    image_bias: np.ndarray
    text_bias: np.ndarray
    product: np.ndarray


def merge_sample(activation: np.ndarray, image_bias: np.ndarray, text_bias: np.ndarray,
                 product: np.ndarray) -> tuple[np.ndarray, float]:
    """One sample's merged map and its weight s; NaN map and s when any input is NaN (no token)."""
    inputs = (activation, image_bias, text_bias, product)
    if any(np.isnan(np.asarray(x, dtype=np.float64)).any() for x in inputs):
        return np.full(np.shape(activation), np.nan), float("nan")
    s = max(ssim(quantise_uint8(image_bias), quantise_uint8(text_bias)), 0.0)
    m = minmax_half(quantise_uint8(product))
    a = minmax_half(activation)
    return bezier_merge(a, m, s), s


def _host(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def merge_maps(maps: Any) -> tuple[np.ndarray, np.ndarray]:
    """(samples, H, W) merged maps and (samples,) weights s, from anything holding the four maps
    (`BbmMaps`, or tensors under the same attribute names)."""
    parts = [_host(getattr(maps, name)) for name in ("activation", "image_bias", "text_bias", "product")]
    out = [merge_sample(*(p[i] for p in parts)) for i in range(len(parts[0]))]
    return np.stack([m for m, _ in out]), np.array([s for _, s in out])


def merge(parts: Any, settings: Any = None) -> torch.Tensor:
    """The merged maps as a float64 (samples, H, W) tensor: the merge hook of the `ldm` backend."""
    merged, _ = merge_maps(parts)
    return torch.from_numpy(merged)


class BbmCollector:
    """The sinks of both passes, streaming: memory is four grids per sample plus the pass-1
    start-token maps at native resolution, whatever the number of steps.

    samples: samples per call. tokens: per-sample positions of the phrase tokens read (A, text bias,
    product), or position -> weight mappings. activation_steps: pass-1 steps that make A (the others
    only feed the image bias and the product); both loops must read every step. layers: layer names
    read (None = all hooked). start_token: position of [CLS] / SOS. per_map_minmax: min-max every
    (step, layer) map of A before it is summed (a method's own option; the biases stay raw).
    """

    def __init__(self, samples: int, tokens: Sequence[Sequence[int]] | None, grid: Grid = 64,
                 activation_steps: StepSelection | None = None, layers: Sequence[str] | None = None,
                 half: str = "cond", start_token: int = 0, per_map_minmax: bool = False) -> None:
        start = [[start_token]] * samples
        self.activation = AttentionAggregator(samples, tokens, half=half, grid=grid, steps=activation_steps,
                                              layers=layers, per_map_minmax=per_map_minmax)
        self.image_maps = MapStore(samples, start, half=half, layers=layers)
        self.image_bias = AttentionAggregator(samples, start, half=half, grid=grid, layers=layers)
        self.product = BbmProduct(self.image_maps, samples, tokens, grid=grid, half=half, layers=layers)
        self.text_bias = AttentionAggregator(samples, tokens, half=half, grid=grid, layers=layers)

    @property
    def pass1_sinks(self) -> list[Sink]:
        """Sinks for the re-noised ground-truth pass."""
        return [self.activation, self.image_maps, self.image_bias]

    @property
    def pass2_sinks(self) -> list[Sink]:
        """Sinks for the sampling pass."""
        return [self.product, self.text_bias]

    def pair_by_timestep(self, steps: int) -> None:
        """After an inversion pass 1 (timesteps ascending) and before the sampling pass 2 (descending):
        re-key the stored start-token maps so the product pairs maps of the same timestep."""
        last = steps - 1
        self.image_maps.maps = {(last - i, layer): m for (i, layer), m in self.image_maps.maps.items()}

    def maps(self) -> BbmMaps:
        """The four streamed maps, float64 numpy."""
        return BbmMaps(_host(self.activation.result()), _host(self.image_bias.result()),
                       _host(self.text_bias.result()), _host(self.product.result()))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(samples, H, W) merged maps and the (samples,) weights s."""
        return merge_maps(self.maps())
