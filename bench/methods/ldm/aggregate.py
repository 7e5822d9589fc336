"""Streaming reduction of captured cross-attention into one map per sample.

Each (step, layer) event is reduced at once: heads averaged, the chosen half of the batch taken,
each sample's tokens averaged, optionally min-max normalised over space (Vilouras), nearest-block
upsampled to a common grid and added, weighted, to a running sum. Memory per sample is one grid,
whatever the number of steps and layers. Bimodal Bias Merging (Nützel) keeps the pass-1 start-token
maps per (step, layer) (`MapStore`) and forms P_img @ mean_n P_txt_n on the fly in pass 2
(`BbmProduct`); the product is taken at native resolution and scaled by the upsampling factor f,
since U_f(A) @ U_f(B) = f * U_f(A @ B) for nearest-block upsampling U_f.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from .capture import AttentionEvent
from .steps import StepSelection

READ_HALVES = ("cond", "uncond", "cond_minus_uncond")
Grid = int | tuple[int, int] | None


class TokenSelection:
    """Per-sample token index sets, as averaging weights over the context axis.

    `tokens=None` averages every context position; otherwise `tokens[i]` lists sample i's positions
    (sets may differ between samples), or maps them to relative weights (e.g. equal weight per word
    whatever its number of sub-tokens), normalised to sum 1. An empty set gives that sample a NaN
    map, as the published codes do when no token qualifies.
    """

    def __init__(self, samples: int, tokens: Sequence[Sequence[int] | Mapping[int, float]] | None = None) -> None:
        if tokens is not None and len(tokens) != samples:
            raise ValueError(f"{len(tokens)} token sets for {samples} samples")
        self.samples = samples
        self.tokens = None if tokens is None else [self._weighted(ts) for ts in tokens]
        self._cache: dict[tuple, torch.Tensor] = {}

    @staticmethod
    def _weighted(tokens: Sequence[int] | Mapping[int, float]) -> dict[int, float]:
        if isinstance(tokens, Mapping):
            return {int(t): float(w) for t, w in sorted(tokens.items()) if w != 0}
        return {int(t): 1.0 for t in sorted({int(t) for t in tokens})}

    def weights(self, n_tokens: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(samples, n_tokens) weights summing to 1 on the sample's tokens, 0 elsewhere (NaN row if empty)."""
        key = (n_tokens, device, dtype)
        if key not in self._cache:
            w = torch.zeros(self.samples, n_tokens, dtype=torch.float64)
            for i in range(self.samples):
                chosen = {t: 1.0 for t in range(n_tokens)} if self.tokens is None else self.tokens[i]
                if any(not 0 <= t < n_tokens for t in chosen):
                    raise ValueError(f"sample {i}: token positions {sorted(chosen)} outside a context of {n_tokens}")
                total = sum(chosen.values())
                if chosen and total > 0:
                    for t, weight in chosen.items():
                        w[i, t] = weight / total
                else:
                    w[i] = float("nan")
            self._cache[key] = w.to(device=device, dtype=dtype)
        return self._cache[key]


def token_maps(event: AttentionEvent, half: str, selection: TokenSelection) -> torch.Tensor:
    """(samples, h, w): head-mean probabilities of one half, averaged over each sample's tokens."""
    if half == "cond_minus_uncond":
        return token_maps(event, "cond", selection) - token_maps(event, "uncond", selection)
    if half not in ("cond", "uncond"):
        raise ValueError(f"half must be one of {READ_HALVES}, got {half!r}")
    layout = event.step.layout
    if layout.samples != selection.samples:
        raise ValueError(f"the call holds {layout.samples} samples, the token selection {selection.samples}")
    rows = layout.half_rows(half)
    probs = event.probs.view(layout.rows, event.heads, event.probs.shape[1], event.probs.shape[2])[rows]
    weights = selection.weights(probs.shape[-1], probs.device, probs.dtype)
    maps = torch.einsum("bknt,bt->bn", probs, weights) / event.heads
    return maps.view(layout.samples, event.height, event.width)


def minmax_per_map(maps: torch.Tensor) -> torch.Tensor:
    """Each (h, w) map scaled to [0, 1] over space; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = (flat - low) / torch.where(span > 0, span, torch.ones_like(span))
    return scaled.view_as(maps)


def _grid_hw(grid: Grid) -> tuple[int, int] | None:
    if grid is None:
        return None
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def upsample_nearest(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(b, h, w) -> (b, *size) by nearest neighbour: block replication when size is a multiple of (h, w)."""
    h, w = maps.shape[-2:]
    if (h, w) == tuple(size):
        return maps
    if size[0] % h == 0 and size[1] % w == 0:
        return maps.repeat_interleave(size[0] // h, dim=-2).repeat_interleave(size[1] // w, dim=-1)
    return F.interpolate(maps.unsqueeze(1), size=size, mode="nearest").squeeze(1)


class _RunningMean:
    """Weighted running sum of per-sample maps on one grid (float64, or float32 where unsupported).

    With a grid, every map is first nearest-upsampled to it; without one the first map fixes the size.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = _grid_hw(grid)
        self.size = self.grid
        self.total: torch.Tensor | None = None
        self.weight = 0.0

    def add(self, maps: torch.Tensor, weight: float) -> None:
        if self.size is None:
            self.size = tuple(maps.shape[-2:])
        if tuple(maps.shape[-2:]) != self.size:
            raise ValueError(f"a {tuple(maps.shape[-2:])} map cannot join {self.size} maps without a common "
                             "grid; give the aggregator a grid")
        dtype = torch.float32 if maps.device.type == "mps" else torch.float64
        term = maps.to(dtype) * weight
        self.total = term if self.total is None else self.total + term
        self.weight += weight

    def mean(self) -> torch.Tensor:
        if self.total is None or self.weight == 0:
            raise RuntimeError("no attention was accumulated: check the step and layer selections")
        return self.total / self.weight


class _Filter:
    """Which (step, layer) events a reducer reads."""

    def __init__(self, steps: StepSelection | None, layers: Sequence[str] | None) -> None:
        self.steps = steps
        self.layers = None if layers is None else frozenset(layers)

    def accepts(self, event: AttentionEvent) -> bool:
        step = event.step
        if self.steps is not None and not self.steps.contains(step.index, step.timestep, step.total):
            return False
        return self.layers is None or event.layer.name in self.layers


class AttentionAggregator:
    """Sink: the weighted mean over read (step, layer) maps of each sample's token-mean attention.

    samples: samples per call (the batch without CFG duplication). tokens: per-sample positions, None
    for all. half: "cond", "uncond" or "cond_minus_uncond". per_map_minmax: scale each (step, layer)
    map to [0, 1] before it joins the mean (Vilouras). grid: common grid the maps are nearest-upsampled
    to (16 keeps 16x16 layers native, 64 = SD latent); None accumulates at native resolution, which
    requires one resolution across read layers. steps / layers: what this aggregator reads among the
    captured events (None = all). step_weights / layer_weights: by loop index / layer name, default 1.
    """

    def __init__(self, samples: int, tokens: Sequence[Sequence[int]] | None = None, half: str = "cond",
                 per_map_minmax: bool = False, grid: Grid = None, steps: StepSelection | None = None,
                 layers: Sequence[str] | None = None, step_weights: Mapping[int, float] | None = None,
                 layer_weights: Mapping[str, float] | None = None) -> None:
        if half not in READ_HALVES:
            raise ValueError(f"half must be one of {READ_HALVES}, got {half!r}")
        self.selection = TokenSelection(samples, tokens)
        self.half = half
        self.per_map_minmax = per_map_minmax
        self.filter = _Filter(steps, layers)
        self.step_weights = dict(step_weights or {})
        self.layer_weights = dict(layer_weights or {})
        self.sum = _RunningMean(grid)
        self.read: list[tuple[int, str]] = []

    def __call__(self, event: AttentionEvent) -> None:
        if not self.filter.accepts(event):
            return
        weight = self.step_weights.get(event.step.index, 1.0) * self.layer_weights.get(event.layer.name, 1.0)
        if weight == 0:
            return
        maps = token_maps(event, self.half, self.selection)
        if self.per_map_minmax:
            maps = minmax_per_map(maps)
        if self.sum.grid is not None:
            maps = upsample_nearest(maps, self.sum.grid)
        self.sum.add(maps, weight)
        self.read.append((event.step.index, event.layer.name))

    def result(self) -> torch.Tensor:
        """(samples, H, W) mean map, float64 (NaN for samples with an empty token set)."""
        return self.sum.mean()


class MapStore:
    """Sink: keeps each read (step, layer) token-mean map at native resolution (BBM's P_img).

    Default tokens: position 0 of every sample (the start token: [CLS] / SOS), cond half.
    """

    def __init__(self, samples: int, tokens: Sequence[Sequence[int]] | None = None, half: str = "cond",
                 steps: StepSelection | None = None, layers: Sequence[str] | None = None) -> None:
        self.selection = TokenSelection(samples, tokens if tokens is not None else [[0]] * samples)
        self.half = half
        self.filter = _Filter(steps, layers)
        self.maps: dict[tuple[int, str], torch.Tensor] = {}

    def __call__(self, event: AttentionEvent) -> None:
        if self.filter.accepts(event):
            self.maps[(event.step.index, event.layer.name)] = token_maps(event, self.half, self.selection)

    def get(self, step_index: int, layer: str) -> torch.Tensor:
        try:
            return self.maps[(step_index, layer)]
        except KeyError:
            raise KeyError(f"no stored map for step {step_index}, layer {layer}: pass 1 must read the "
                           "same steps and layers as pass 2") from None


class BbmProduct:
    """Sink: mean over read (step, layer) of P_img @ mean_n P_txt_n on `grid` (Nützel's P_mult).

    P_img comes from `image_maps` (pass 1, same step index and layer); P_txt is this pass's
    token-mean map. Maps are square, so the product is the spatial matrix product of the two maps,
    as the published code takes it after upsampling to the grid.
    """

    def __init__(self, image_maps: MapStore, samples: int, tokens: Sequence[Sequence[int]] | None = None,
                 grid: Grid = 64, half: str = "cond", steps: StepSelection | None = None,
                 layers: Sequence[str] | None = None) -> None:
        self.image_maps = image_maps
        self.selection = TokenSelection(samples, tokens)
        self.half = half
        self.filter = _Filter(steps, layers)
        self.sum = _RunningMean(grid)
        self.read: list[tuple[int, str]] = []

    def __call__(self, event: AttentionEvent) -> None:
        if not self.filter.accepts(event):
            return
        text = token_maps(event, self.half, self.selection)
        image = self.image_maps.get(event.step.index, event.layer.name)
        h, w = text.shape[-2:]
        if h != w:
            raise ValueError(f"BBM needs square maps, {event.layer.name} is {h}x{w}")
        product = torch.matmul(image.to(text.dtype), text)
        grid = self.sum.grid
        if grid is not None:
            if grid[0] != grid[1] or grid[0] % h:
                raise ValueError(f"BBM grid {grid} must be square and a multiple of {h}")
            product = upsample_nearest(product * (grid[0] // h), grid)
        self.sum.add(product, 1.0)
        self.read.append((event.step.index, event.layer.name))

    def result(self) -> torch.Tensor:
        """(samples, H, W) mean of the products, float64."""
        return self.sum.mean()
