"""Training tensors of the phantom demonstration LDM: model-sized images, box coverage, phrases.

Images go through the `ldm` backend's own preprocessing (`image_tensor`: short side resized
bilinearly with antialias, centre crop, grey values to [-1, 1]), so training sees exactly what a
`bench run` feeds the model. The box masks go through the same resize and crop, giving the
fraction of every model pixel that lies inside the finding's boxes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ....core import atomic
from ....core.geometry import box_mask
from ....datasets.phantom import CATEGORIES, PhantomDataset, phrase_for, sizes_for
from ..preprocess import image_tensor

SIDES = ("right", "left")


@dataclass
class PhantomTensors:
    """N training pairs: images (N, 1, S, S) in [-1, 1], coverage (N, 1, S, S) in [0, 1], phrases, sides."""

    images: torch.Tensor
    coverage: torch.Tensor
    phrases: list[str]
    sides: list[str]


def phantom_vocabulary() -> list[str]:
    """Every word any phantom phrase can use, sorted (the tokenizer's whole-word vocabulary)."""
    words: set[str] = set()
    for category in CATEGORIES:
        for side in ("right", "left", "bilateral", "none"):
            for zone in ("upper", "mid", "lower", "apical", "lateral", "heart", "perihilar"):
                for size in sizes_for(category):
                    for variant in range(4):
                        try:
                            words.update(phrase_for(category, side, zone, size, variant).lower().split())
                        except ValueError:
                            continue
    return sorted(words)


def coverage_tensor(boxes, height: int, width: int, size: int) -> torch.Tensor:
    """(1, size, size): fraction of each model pixel inside the boxes, after the model's resize and crop."""
    mask = box_mask(list(boxes), height, width).astype(np.float32)
    return image_tensor(mask, size, size, True, "unit", 1).clamp(0.0, 1.0)


def phantom_tensors(n_train: int, seed: int, size: int,
                    progress: Callable[[str], None] | None = None) -> PhantomTensors:
    """The first `n_train` train-split phantom samples of dataset seed `seed`, as model-sized tensors.

    The tensors are cached beside the rendered PNGs, so a second training run starts at once.
    """
    dataset = PhantomDataset(None, {"n_train": str(n_train), "n_test": "0", "seed": str(seed)})
    cache = dataset.folder / f"tensors-train{n_train}-size{size}.pt"
    if cache.is_file():
        return PhantomTensors(**torch.load(cache, weights_only=True))
    samples = [s for s in dataset.samples() if s.split == "train"]
    if progress:
        progress(f"rendering {len(samples)} phantom train images (cached in {dataset.folder})")
    dataset.materialise(samples)
    images, coverage = [], []
    for s in samples:
        pixels = dataset.load_image(s)
        images.append(image_tensor(pixels, size, size, True, "symmetric", 1))
        coverage.append(coverage_tensor(s.boxes, s.height, s.width, size))
    data = PhantomTensors(torch.stack(images), torch.stack(coverage), [s.phrase for s in samples],
                          [str(s.extra.get("side", "")) for s in samples])
    atomic.write_with(cache, lambda f: torch.save(dataclasses.asdict(data), f))
    return data


__all__ = ["PhantomTensors", "SIDES", "coverage_tensor", "phantom_tensors", "phantom_vocabulary"]
