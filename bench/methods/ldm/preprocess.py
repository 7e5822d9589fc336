"""Radiograph -> model input and latent: intensity range, short-side resize, centre crop, VAE encoding.

Vilouras et al.: one channel, fixed range to [0, 1], bilinear resize without antialias, crop 512,
latent = posterior mean x 0.3. Nützel / Dombrowski: the grey image on 3 channels in [-1, 1],
bilinear resize with antialias, crop 512, a posterior sample x 0.18215 (re-drawn every step by
Nützel, once per sample by Dombrowski).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ...core.geometry import Geometry
from .process import randn_per_sample


def scaled_intensity(array: np.ndarray) -> torch.Tensor:
    """(1, h, w) float32 in [0, 1]: grey values over the full range of their integer type (uint8: /255)."""
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer):
        top = float(np.iinfo(array.dtype).max) if array.dtype != np.int64 else float(max(array.max(), 1))
    else:
        top = 1.0
    return torch.from_numpy(np.clip(array.astype(np.float32) / top, 0.0, 1.0)).unsqueeze(0)


def image_tensor(array: np.ndarray, resize: int, crop: int, antialias: bool, intensity: str,
                 channels: int) -> torch.Tensor:
    """(channels, crop, crop): intensity scaled, short side resized (bilinear), centre-cropped."""
    img = scaled_intensity(array)
    if intensity == "symmetric":
        img = img * 2.0 - 1.0
    img = TF.resize(img, [resize], interpolation=InterpolationMode.BILINEAR, antialias=antialias)
    img = TF.center_crop(img, [crop, crop])
    return img.expand(channels, -1, -1).contiguous()


def crop_geometry(array: np.ndarray, resize: int, crop: int) -> Geometry:
    """Where the model's crop lies on the original image."""
    h, w = np.asarray(array).shape[:2]
    return Geometry.short_side_crop(h, w, resize, crop)


@torch.no_grad()
def posterior(vae: torch.nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the autoencoder's latent posterior, for diffusers and MONAI autoencoders."""
    out = vae.encode(images)
    if isinstance(out, tuple):  # MONAI: (z_mu, z_sigma)
        return out[0], out[1]
    dist = out.latent_dist if hasattr(out, "latent_dist") else out[0]
    return dist.mean, dist.std


def latent_source(mean: torch.Tensor, std: torch.Tensor, policy: str, scale: float,
                  generators: Sequence[torch.Generator]) -> torch.Tensor | Callable:
    """The clean latents a loop starts from: the mean, one sample, or a function drawing a new sample
    from the per-sample generators at every call."""
    if policy == "mean":
        return mean * scale

    def draw(gens: Sequence[torch.Generator]) -> torch.Tensor:
        noise = randn_per_sample(mean.shape[1:], gens, mean.dtype).to(mean.device)
        return (mean + std * noise) * scale

    return draw if policy == "resample" else draw(generators)


__all__ = ["crop_geometry", "image_tensor", "latent_source", "posterior", "scaled_intensity"]
