"""The diffusion loops that drive a U-Net while its cross-attention is read.

- `invert`: DDIM inversion of a clean latent, driven by the guided prediction (g = 0: unconditional,
  as Vilouras et al.), over ascending timesteps (their 334-step trailing schedule walked backwards).
- `noise_gt`: every step an independent q-sample of the ground-truth latent (Nützel, Dombrowski);
  the prediction is never used, so only the halves that are read are run.
- `sample`: DDIM sampling from seeded noise with classifier-free guidance (BBM's pass 2).

All three stop after the last step read and run, on each step, only the batch halves that step
needs (the halves driving the loop plus, on read steps, the halves read); batch rows are
independent, so this leaves every read map as it is. The `as_coded` switch runs what the published
codes run (every step, both CFG halves) to compare costs. Noise comes from one torch.Generator per
sample, so a sample's maps do not depend on its batch or batch position.
"""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .capture import CrossAttentionCapture
from .schedule import NoiseSchedule
from .steps import HALVES, BatchLayout, StepInfo, StepSelection

CleanLatents = torch.Tensor | Callable[[Sequence[torch.Generator]], torch.Tensor]


class UNetRunner:
    """One call signature for diffusers U-Nets and MONAI ones (or any `f(latents, timesteps, context)`),
    counting sample-evaluations (latents pushed through the U-Net; a CFG call counts 2 per sample)."""

    def __init__(self, unet: nn.Module | Callable,
                 autocast: Callable[[], AbstractContextManager] = nullcontext) -> None:
        self.unet = unet
        self.autocast = autocast
        params = inspect.signature(unet.forward if isinstance(unet, nn.Module) else unet).parameters
        self.kind = "diffusers" if "encoder_hidden_states" in params else "positional"
        self.sample_evals = 0

    def __call__(self, latents: torch.Tensor, t: int, context: torch.Tensor) -> torch.Tensor:
        """The U-Net's output, inside the `autocast` region, returned in the latents' dtype."""
        self.sample_evals += latents.shape[0]
        timesteps = torch.full((latents.shape[0],), int(t), device=latents.device, dtype=torch.long)
        with self.autocast():
            if self.kind == "diffusers":
                out = self.unet(latents, timesteps, encoder_hidden_states=context, return_dict=False)[0]
            else:
                out = self.unet(latents, timesteps, context)
        return out.to(latents.dtype)


@dataclass(frozen=True)
class Conditioning:
    """Text contexts: `cond` (samples, tokens, dim); `uncond` the same or (1, tokens, dim), broadcast."""

    cond: torch.Tensor
    uncond: torch.Tensor | None = None

    @property
    def samples(self) -> int:
        return int(self.cond.shape[0])

    def half(self, name: str) -> torch.Tensor:
        if name == "cond":
            return self.cond
        if self.uncond is None:
            raise ValueError("this run needs the unconditional context, none was given")
        return self.uncond.expand(self.samples, *self.uncond.shape[1:])


@dataclass(frozen=True)
class ProcessResult:
    """What a loop did: the latents where it stopped, steps run and read, and its cost."""

    latents: torch.Tensor
    steps_run: int
    steps_read: list[int]
    sample_evals: int
    samples: int

    @property
    def sample_evals_per_sample(self) -> float:
        return self.sample_evals / self.samples


def sample_generators(seeds: Sequence[int], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One seeded generator per sample."""
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]


def randn_per_sample(shape: Sequence[int], generators: Sequence[torch.Generator],
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(len(generators), *shape) standard normal noise, row i drawn from generator i on its device."""
    return torch.stack([torch.randn(tuple(shape), generator=g, device=g.device, dtype=dtype) for g in generators])


def _ordered(halves: set[str]) -> tuple[str, ...]:
    return tuple(h for h in HALVES if h in halves)


def _halves_for(read_halves: Sequence[str]) -> set[str]:
    wanted = set()
    for half in read_halves:
        wanted.update(("cond", "uncond") if half == "cond_minus_uncond" else (half,))
    unknown = wanted - set(HALVES)
    if unknown:
        raise ValueError(f"unknown halves {sorted(unknown)}")
    return wanted


def _driving_halves(guidance: float) -> set[str]:
    """Halves the guided prediction u + g (c - u) depends on."""
    if guidance == 0:
        return {"uncond"}
    if guidance == 1:
        return {"cond"}
    return {"uncond", "cond"}


class _Loop:
    """Shared bookkeeping: which steps are read, where to stop, one U-Net call per step."""

    def __init__(self, runner: UNetRunner, timesteps: Sequence[int], steps: StepSelection,
                 conditioning: Conditioning, capture: CrossAttentionCapture | None, read_halves: Sequence[str],
                 as_coded: bool) -> None:
        self.runner = runner
        self.timesteps = [int(t) for t in timesteps]
        self.read = steps.resolve(self.timesteps)
        self.conditioning = conditioning
        self.capture = capture
        self.read_halves = _halves_for(read_halves)
        self.as_coded = as_coded
        self.selected = frozenset(self.read)
        self.start_evals = runner.sample_evals
        self.steps_run = 0
        if not self.read:
            raise ValueError("the step selection reads no step of this loop")

    @property
    def end(self) -> int:
        """Loop length actually run: up to the last step read (all steps as coded)."""
        return len(self.timesteps) if self.as_coded else self.read[-1] + 1

    def is_read(self, index: int) -> bool:
        return index in self.selected

    def call(self, index: int, latents: torch.Tensor, halves: set[str]) -> dict[str, torch.Tensor]:
        """Run the U-Net on `latents` (one row per sample) for the given halves; outputs per half."""
        t = self.timesteps[index]
        order = _ordered(halves)
        layout = BatchLayout(self.conditioning.samples, order)
        batch = torch.cat([latents] * len(order))
        context = torch.cat([self.conditioning.half(h) for h in order])
        step = StepInfo(index, t, len(self.timesteps), layout)
        reading = self.capture.reading(step) if self.capture is not None and self.is_read(index) else nullcontext()
        with reading:
            output = self.runner(batch, t, context)
        self.steps_run += 1
        return {h: output[layout.half_rows(h)] for h in order}

    def result(self, latents: torch.Tensor) -> ProcessResult:
        return ProcessResult(latents, self.steps_run, [i for i in self.read if i < self.end],
                             self.runner.sample_evals - self.start_evals, self.conditioning.samples)


def _guided(outputs: dict[str, torch.Tensor], guidance: float) -> torch.Tensor:
    if guidance == 0:
        return outputs["uncond"]
    if guidance == 1:
        return outputs["cond"]
    return outputs["uncond"] + guidance * (outputs["cond"] - outputs["uncond"])


def invert(runner: UNetRunner, schedule: NoiseSchedule, latents: torch.Tensor, conditioning: Conditioning,
           timesteps: Sequence[int], steps: StepSelection, capture: CrossAttentionCapture | None = None,
           guidance: float = 0.0, read_halves: Sequence[str] = ("cond",), as_coded: bool = False) -> ProcessResult:
    """DDIM inversion of clean `latents` over ascending `timesteps`.

    Step i feeds the latent at timesteps[i], reads attention there, then moves the latent to
    timesteps[i + 1] with the guided prediction. As coded (Vilouras): both halves every step, the
    whole schedule (334 x 2 = 668 sample-evals).
    """
    loop = _Loop(runner, timesteps, steps, conditioning, capture, read_halves, as_coded)
    if any(b <= a for a, b in zip(loop.timesteps, loop.timesteps[1:])):
        raise ValueError("inversion walks ascending timesteps")
    drive = _driving_halves(guidance)
    z = latents
    for i in range(loop.end):
        halves = {"uncond", "cond"} if as_coded else drive | (loop.read_halves if loop.is_read(i) else set())
        outputs = loop.call(i, z, halves)
        if i + 1 < len(loop.timesteps):
            z = schedule.move(_guided(outputs, guidance), z, loop.timesteps[i], loop.timesteps[i + 1])
    return loop.result(z)


def noise_gt(runner: UNetRunner, schedule: NoiseSchedule, clean: CleanLatents, conditioning: Conditioning,
             timesteps: Sequence[int], steps: StepSelection, generators: Sequence[torch.Generator],
             capture: CrossAttentionCapture | None = None, read_halves: Sequence[str] = ("cond",),
             guidance: float = 1.0, as_coded: bool = False) -> ProcessResult:
    """Independent q-samples of the ground-truth latent, one per step, in loop order.

    `clean` is a tensor (fixed latent, e.g. the posterior mean) or a function of the per-sample
    generators returning a fresh latent (a new posterior sample every step, as Nützel). Each step
    draws its clean latent and then its noise, read or not, so the noise of a step does not depend
    on which steps are read. Unread steps run no U-Net; read steps run only the halves read. As
    coded, every step runs, with both halves when guidance != 1 (Nützel: 50 x 2 = 100; Dombrowski,
    no CFG: 50).
    """
    loop = _Loop(runner, timesteps, steps, conditioning, capture, read_halves, as_coded)
    coded_halves = {"uncond", "cond"} if guidance != 1 else {"cond"}
    z = None
    for i in range(loop.end):
        z0 = clean(generators) if callable(clean) else clean
        noise = randn_per_sample(z0.shape[1:], generators, z0.dtype)
        if not (as_coded or loop.is_read(i)):
            continue
        z = schedule.add_noise(z0, noise, loop.timesteps[i])
        loop.call(i, z, (coded_halves | loop.read_halves) if as_coded else loop.read_halves)
    return loop.result(z)


def sample(runner: UNetRunner, schedule: NoiseSchedule, shape: Sequence[int], conditioning: Conditioning,
           timesteps: Sequence[int], steps: StepSelection, generators: Sequence[torch.Generator],
           capture: CrossAttentionCapture | None = None, guidance: float = 7.5,
           read_halves: Sequence[str] = ("cond",), init_noise_sigma: float = 1.0,
           as_coded: bool = False) -> ProcessResult:
    """DDIM sampling (eta = 0) with classifier-free guidance from per-sample seeded noise of `shape`
    (one sample's latent shape) over descending `timesteps`. As coded (Nützel BBM pass 2) the loop
    runs to the end: 50 x 2 = 100 sample-evals."""
    loop = _Loop(runner, timesteps, steps, conditioning, capture, read_halves, as_coded)
    if any(b >= a for a, b in zip(loop.timesteps, loop.timesteps[1:])):
        raise ValueError("sampling walks descending timesteps")
    z = randn_per_sample(shape, generators) * init_noise_sigma
    drive = _driving_halves(guidance)
    for i in range(loop.end):
        halves = drive | loop.read_halves if loop.is_read(i) else drive
        outputs = loop.call(i, z, halves)
        t_to = loop.timesteps[i + 1] if i + 1 < len(loop.timesteps) else None
        z = schedule.move(_guided(outputs, guidance), z, loop.timesteps[i], t_to)
    return loop.result(z)
