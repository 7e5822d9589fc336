"""Noise-schedule arithmetic shared by the diffusion loops: q-sampling, DDIM steps and DDIM inversion.

Built from a diffusers or MONAI scheduler's cumulative alphas and prediction type, so both model
families run the same loop code (eta = 0 throughout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


@dataclass(frozen=True)
class NoiseSchedule:
    """Cumulative alphas (index = training timestep), prediction type, and alpha-bar past the end."""

    alphas_cumprod: torch.Tensor
    prediction_type: str = "epsilon"
    final_alpha_cumprod: float = 1.0

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction type {self.prediction_type!r} not in {PREDICTION_TYPES}")

    @classmethod
    def from_scheduler(cls, scheduler) -> "NoiseSchedule":
        """From a diffusers scheduler (config.prediction_type) or a MONAI one (prediction_type)."""
        config = getattr(scheduler, "config", None)
        prediction = getattr(config, "prediction_type", None) or scheduler.prediction_type
        final = getattr(scheduler, "final_alpha_cumprod", 1.0)
        return cls(scheduler.alphas_cumprod.detach().double().cpu(), str(prediction), float(final))

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha_bar(self, t: int | None) -> float:
        """alpha-bar at training timestep t; None (before the first step) gives final_alpha_cumprod."""
        return self.final_alpha_cumprod if t is None else float(self.alphas_cumprod[t])

    def add_noise(self, clean: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        """q-sample: sqrt(a) * clean + sqrt(1 - a) * noise."""
        a = self.alpha_bar(t)
        return clean * a**0.5 + noise * (1.0 - a) ** 0.5

    def split(self, output: torch.Tensor, sample: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted clean sample, predicted noise) from the model output at timestep t."""
        a = self.alpha_bar(t)
        if self.prediction_type == "epsilon":
            return (sample - (1.0 - a) ** 0.5 * output) / a**0.5, output
        if self.prediction_type == "v_prediction":
            return a**0.5 * sample - (1.0 - a) ** 0.5 * output, a**0.5 * output + (1.0 - a) ** 0.5 * sample
        return output, (sample - a**0.5 * output) / (1.0 - a) ** 0.5

    def move(self, output: torch.Tensor, sample: torch.Tensor, t: int, t_to: int | None) -> torch.Tensor:
        """Deterministic DDIM move of `sample` from t to t_to, either way along the chain.

        Towards smaller t this is the DDIM sampling step; towards larger t it is DDIM inversion
        (MONAI `reversed_step`): the clean-sample and noise predictions at t, re-mixed at t_to.
        """
        clean, noise = self.split(output, sample, t)
        a_to = self.alpha_bar(t_to)
        return a_to**0.5 * clean + (1.0 - a_to) ** 0.5 * noise


def trailing_timesteps(num_train_timesteps: int = 1000, num_inference_steps: int = 300) -> list[int]:
    """Descending "trailing" timesteps with an integer stride, as Vilouras et al. set their DDIM.

    Stride num_train // num_inference; round(arange(num_train, 0, -stride)) - 1. For (1000, 300)
    that is 334 steps 999, 996, ..., 0 (not 300); their inversion walks it backwards, t = 0 ... 999.
    """
    stride = num_train_timesteps // num_inference_steps
    return [int(t) for t in np.round(np.arange(num_train_timesteps, 0, -stride)).astype(np.int64) - 1]


def scheduler_timesteps(scheduler, num_inference_steps: int) -> list[int]:
    """The descending timesteps a diffusers or MONAI scheduler sets for `num_inference_steps`."""
    scheduler.set_timesteps(num_inference_steps)
    return [int(t) for t in scheduler.timesteps]
