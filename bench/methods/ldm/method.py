"""The `ldm` backend: cross-attention heatmaps of a latent diffusion model, every choice from the spec.

Per batch of samples: each radiograph is resized and cropped as the paper did and encoded by the
autoencoder; the prompt is built from the phrase and encoded by the frozen text encoder; the
diffusion loop of the spec (`invert`, `noise_gt` or `sample`) drives the U-Net while the chosen
cross-attention layers hand their probabilities to a streaming aggregator (chosen steps, chosen
tokens per sample, optional per-map min-max); the mean map is post-processed (resize, sigma,
min-max, Otsu) and returned on its grid with the crop's geometry, so the protocol maps it back.

With `bbm = true` (Nützel's Bimodal Bias Merging) pass 1 also keeps the start-token maps and a
second pass samples from seeded noise with guidance; the parts (activation map, image bias, text
bias, product) go to the BBM merge in `bbm.py`.

Extension points for derived methods: `prompt_for` (the prompt of a sample), `tokens_for` (its
context positions) and `contexts` (its text conditioning), and `bbm_merge` (the merge function).
Every sample has its own seed (spec seed, run seed and sample id), so its map does not depend on
the batch it runs in.
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np
import torch

from ...core.errors import BenchError, SampleError
from ...core.heatmap import Heatmap
from ...core.samples import Sample
from ...datasets.base import Dataset
from ..base import Method, RunContext
from . import memory
from .aggregate import AttentionAggregator
from .bbm import SSIM_WINDOW, BbmCollector, BbmMaps
from .capture import CrossAttentionCapture
from .layers import cross_attention_layers, select_layers
from .lexicon import make_tagger
from .loading import LoadedModels, checkpoint_records, load_models, use_fused_attention
from .postprocess import postprocess
from .preprocess import crop_geometry, image_tensor, latent_source, posterior
from .process import Conditioning, ProcessResult, UNetRunner, invert, noise_gt, sample, sample_generators
from .schedule import NoiseSchedule, scheduler_timesteps, trailing_timesteps
from .settings import PARAMS, LdmSettings, parse_settings
from .steps import BatchLayout, StepInfo, StepSelection
from .tokens import select_tokens, word_weights

#: merges the four streamed maps of `BbmCollector.maps()` (`BbmMaps`) into (samples, H, W) maps
BbmMerge = Callable[[BbmMaps, LdmSettings], torch.Tensor]


def default_bbm_merge() -> BbmMerge:
    """The merge of `bench.methods.ldm.bbm` (`merge(maps, settings) -> (samples, H, W)`)."""
    from . import bbm

    return bbm.merge


def sample_seed(spec_seed: int, run_seed: int, sample_id: str) -> int:
    """A sample's own seed: stable across runs, batches and batch positions."""
    return zlib.crc32(f"{spec_seed}:{run_seed}:{sample_id}".encode()) & 0x7FFFFFFF


def _device(name: str) -> torch.device:
    from ..biovil import torch_device

    return torch_device(name)


class LdmMethod(Method):
    """Diffusion-model phrase grounding (Vilouras 2024, Dombrowski 2024, Nützel 2025), from the spec."""

    known_params = PARAMS

    def __init__(self, spec: dict, context: RunContext) -> None:
        super().__init__(spec, context)
        self.settings = parse_settings(spec)
        self.models: LoadedModels | None = None
        self.bbm_merge: BbmMerge | None = None
        self.sample_evals: list[float] = []

    # ------------------------------------------------------------ setup

    def prepare(self, dataset: Dataset | None = None) -> None:
        """Check the device and checkpoints, build the model, fix the schedule and layers."""
        if self.models is not None:
            return
        s = self.settings
        self.device = _device(self.context.device)
        s.precision.check(self.device)
        models = load_models(s, self.context.random_weights, self.context.weights, self.context.seed)
        models.unet.to(self.device)
        models.vae.to(self.device)
        models.text.model.to(self.device)
        # every attention on the fused SDPA path; the capture swaps in its own only where it reads
        use_fused_attention(models.unet)
        self.schedule = NoiseSchedule.from_scheduler(models.scheduler)
        if s.timestep_spacing == "trailing":
            self.timesteps = trailing_timesteps(self.schedule.num_train_timesteps, s.num_inference_steps)
        else:
            self.timesteps = scheduler_timesteps(models.scheduler, s.num_inference_steps)
        try:
            everything = cross_attention_layers(models.unet)
            self.layers = select_layers(everything, list(s.layers) or None)
            s.step_selection().resolve(self._loop_timesteps())
        except ValueError as exc:
            raise BenchError(f"adapters/{s.name}.toml: {exc}") from None
        if s.bbm and s.grid == 0 and len({layer.downsampling for layer in self.layers}) > 1:
            raise BenchError(f"adapters/{s.name}.toml: BBM over layers of several resolutions needs params.grid")
        self.runner = UNetRunner(models.unet, lambda: s.precision.autocast(self.device))
        self.tagger = make_tagger(s.lexical_tagger) if s.tokens == "lexical" else None
        self.models = models
        if s.bbm and self.bbm_merge is None:
            self.bbm_merge = default_bbm_merge()

    # ------------------------------------------------------------ batch memory

    def fitting_batch_size(self) -> int | None:
        """The largest batch the free memory of a CUDA device holds (`memory.py`); None elsewhere."""
        if self.device.type != "cuda":
            return None
        return self.batch_fit(memory.cuda_free(self.device),
                              lambda n: memory.cuda_peak(self.device, lambda: self._probe(n)))

    def batch_fit(self, free: int, peak_of: Callable[[int], int]) -> int:
        """`memory.fitting_batch` from `free` bytes and `peak_of(n)`, the peak bytes of a probe of n samples."""
        return memory.fitting_batch(memory.measure(peak_of, free), str(self.device))

    def _probe(self, n: int) -> None:
        """The heaviest work of a batch of `n`: encoding n images, one U-Net call on both guidance
        halves with every chosen layer read, under the run's precision."""
        s = self.settings
        images = torch.zeros((n, s.image_channels, s.crop, s.crop), device=self.device)
        with torch.no_grad():
            mean, _ = posterior(self.models.vae, images)
            with s.precision.autocast(self.device):
                cond = self.models.text.phrases([""] * n).to(self.device, torch.float32)
            sink = AttentionAggregator(n, [[0]] * n, half="cond", per_map_minmax=s.per_map_minmax,
                                       grid=s.grid or None, steps=StepSelection.every())
            t = int(self.timesteps[0])
            with CrossAttentionCapture(self.models.unet, self.layers, [sink], **self._capture_precision()) as capture:
                with capture.reading(StepInfo(0, t, 1, BatchLayout(n, ("uncond", "cond")))):
                    self.runner(torch.cat([mean, mean]), t, torch.cat([cond, cond]))

    def _loop_timesteps(self, process: str | None = None) -> list[int]:
        """Timesteps in loop order: ascending for inversion, descending otherwise."""
        process = process or self.settings.process
        return sorted(self.timesteps) if process == "invert" else list(self.timesteps)

    # ------------------------------------------------------------ extension points

    def prompt_for(self, sample: Sample) -> str:
        """The prompt the text encoder reads for `sample`."""
        return self.settings.prompt.format(phrase=sample.phrase)

    def tokens_for(self, sample: Sample, prompt: str) -> list[int] | dict[int, float]:
        """Context positions averaged for `sample` (with weights when words weigh equally);
        SampleError when none qualifies."""
        s = self.settings
        tokenizer = self.models.text.tokenizer
        tokens = select_tokens(s.tokens, tokenizer, prompt, sample.category, s.text_max_length,
                               s.token_alignment, s.token_indices, tagger=self.tagger)
        if not tokens:
            raise SampleError(sample.sample_id, f"token strategy {s.tokens!r} selects no token of {prompt!r}")
        if s.token_weighting == "word":
            return word_weights(tokenizer, prompt, tokens, s.text_max_length)
        return tokens

    def contexts(self, samples: Sequence[Sample], prompts: Sequence[str]) -> Conditioning:
        """Text conditioning: the prompts' contexts and the empty prompt's."""
        text = self.models.text
        with self.settings.precision.autocast(self.device):
            cond, uncond = text.phrases(prompts), text.empty()
        return Conditioning(cond=cond.to(self.device, torch.float32), uncond=uncond.to(self.device, torch.float32))

    # ------------------------------------------------------------ heatmaps

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        self.prepare(dataset)
        out: list[Heatmap] = []
        size = max(1, self.context.batch_size)
        for i in range(0, len(samples), size):
            out.extend(self._batch(list(samples[i:i + size]), dataset))
        return out

    def _batch(self, samples: list[Sample], dataset: Dataset) -> list[Heatmap]:
        s = self.settings
        arrays = [dataset.load_image(x) for x in samples]
        for x, a in zip(samples, arrays):
            if a.ndim != 2:
                raise SampleError(x.sample_id, f"image has shape {a.shape}, expected a 2-D grey image")
        prompts = [self.prompt_for(x) for x in samples]
        tokens = [self.tokens_for(x, p) for x, p in zip(samples, prompts)]
        seeds = [sample_seed(s.seed, self.context.seed, x.sample_id) for x in samples]
        images = torch.stack([image_tensor(a, s.resize, s.crop, s.antialias, s.intensity, s.image_channels)
                              for a in arrays]).to(self.device)
        with torch.no_grad():
            mean, std = posterior(self.models.vae, images)
            conditioning = self.contexts(samples, prompts)
            maps, evals = self._maps(mean, std, conditioning, tokens, seeds)
        results = []
        for a, m, p, t, seed in zip(arrays, maps, prompts, tokens, seeds):
            values = postprocess(m, s.output_size, s.sigma, s.normalize, s.otsu)
            meta = {"prompt": p, "tokens": sorted(t), "seed": seed, "sample_evals": evals}
            if isinstance(t, dict):
                meta["token_weights"] = [t[k] for k in sorted(t)]
            results.append(Heatmap(values, crop_geometry(a, s.resize, s.crop), meta))
        self.sample_evals.append(evals)
        return results

    def _maps(self, mean: torch.Tensor, std: torch.Tensor, conditioning: Conditioning, tokens: list,
              seeds: list[int]) -> tuple[list[np.ndarray], float]:
        """Per-sample aggregated maps (before post-processing) and the U-Net sample-evals per sample."""
        s = self.settings
        n = len(seeds)
        grid = s.grid or None
        steps = s.step_selection()
        generators = sample_generators(seeds, self.device)
        if not s.bbm:
            activation = AttentionAggregator(n, tokens, half=s.read_half, per_map_minmax=s.per_map_minmax,
                                             grid=grid, steps=steps)
            first = self._run(s.process, [activation], mean, std, conditioning, generators, steps)
            result, evals = activation.result(), first.sample_evals
        else:
            result, evals = self._bbm(tokens, seeds, conditioning, grid, steps, mean, std, generators)
        maps = [row.detach().cpu().double().numpy() for row in result]
        return maps, evals / n

    def _run(self, process: str, sinks: list, mean: torch.Tensor, std: torch.Tensor, conditioning: Conditioning,
             generators: list[torch.Generator], steps: StepSelection, guidance: float | None = None) -> ProcessResult:
        """One diffusion loop with the capture hooks installed."""
        s = self.settings
        guidance = s.guidance_scale if guidance is None else guidance
        timesteps = self._loop_timesteps(process)
        halves = (s.read_half,)
        with CrossAttentionCapture(self.models.unet, self.layers, sinks, **self._capture_precision()) as capture:
            if process == "invert":
                clean = latent_source(mean, std, "mean" if s.latent == "mean" else "sample", s.scale_factor,
                                      generators)
                return invert(self.runner, self.schedule, clean, conditioning, timesteps, steps, capture,
                              guidance=guidance, read_halves=halves, as_coded=s.as_coded)
            if process == "noise_gt":
                clean = latent_source(mean, std, s.latent, s.scale_factor, generators)
                return noise_gt(self.runner, self.schedule, clean, conditioning, timesteps, steps, generators, capture,
                                read_halves=halves, guidance=guidance, as_coded=s.as_coded)
            shape = tuple(mean.shape[1:])
            sigma0 = float(getattr(self.models.scheduler, "init_noise_sigma", 1.0))
            return sample(self.runner, self.schedule, shape, conditioning, timesteps, steps, generators, capture,
                          guidance=guidance, read_halves=halves, init_noise_sigma=sigma0, as_coded=s.as_coded)

    def _capture_precision(self) -> dict:
        """The capture's dtype arguments: float32 logits and softmax, or as diffusers under autocast."""
        p = self.settings.precision
        if p.attention == "autocast" and p.reduced:
            return {"dtype": None, "autocast_dtype": p.dtype}
        return {"dtype": torch.float32}

    def _bbm(self, tokens: list, seeds: list[int], conditioning: Conditioning, grid: int | None,
             steps: StepSelection, mean: torch.Tensor, std: torch.Tensor,
             generators: list[torch.Generator]) -> tuple[torch.Tensor, float]:
        """Both BBM passes streamed into a `BbmCollector` (pass 1: the spec's process over every step;
        pass 2: sampling from seeded noise with guidance), merged; and the sample-evals of both."""
        s = self.settings
        n = len(seeds)
        side = s.grid or min(self.layers[0].resolution(tuple(mean.shape[-2:])))
        if side < SSIM_WINDOW:
            raise BenchError(f"adapters/{s.name}.toml: BBM compares maps with a {SSIM_WINDOW}x{SSIM_WINDOW} SSIM "
                             f"window, but its maps are {side}x{side}; set params.grid to {SSIM_WINDOW} or more")
        collector = BbmCollector(n, tokens, grid=grid, activation_steps=steps, half=s.read_half,
                                 per_map_minmax=s.per_map_minmax)
        first = self._run(s.process, collector.pass1_sinks, mean, std, conditioning, generators,
                          StepSelection.every())
        if s.process == "invert":
            collector.pair_by_timestep(len(self.timesteps))
        empty = torch.empty((n, *mean.shape[1:]), device=self.device)
        second = self._run("sample", collector.pass2_sinks, empty, empty, conditioning,
                           sample_generators([seed + 1 for seed in seeds], self.device), StepSelection.every(),
                           guidance=s.bbm_guidance_scale)
        return self.bbm_merge(collector.maps(), s), first.sample_evals + second.sample_evals

    def provenance(self) -> dict:
        s = self.settings
        record = {
            "backend": "ldm", "random_weights": self.context.random_weights, "model_format": s.model_format,
            "architecture": s.architecture, "text_encoder": s.text_encoder, "process": s.process,
            "timesteps": len(self.timesteps) if self.models else None,
            "steps_read": s.step_selection().resolve(self._loop_timesteps()) if self.models else None,
            "timesteps_read": ([self._loop_timesteps()[i] for i in s.step_selection().resolve(self._loop_timesteps())]
                               if self.models else None),
            "layers": [layer.name for layer in self.layers] if self.models else None,
            "tokens": s.tokens, "token_alignment": s.token_alignment, "bbm": s.bbm,
            **({"lexical_tagger": s.lexical_tagger} if s.tokens == "lexical" else {}),
            **self.settings.precision.record(),
            "seed_policy": "crc32(spec seed:run seed:sample id) per sample", "spec_seed": s.seed,
            "run_seed": self.context.seed,
            "sample_evals_per_sample": float(np.mean(self.sample_evals)) if self.sample_evals else None,
        }
        if self.models is not None:
            record["sources"] = dict(self.models.sources)
            if not self.context.random_weights:
                record["checkpoints"] = checkpoint_records(self.models)
                record["content_checks"] = list(self.models.checks)
                record["loading"] = dict(self.models.loading)
        return record


__all__ = ["BbmMerge", "LdmMethod", "default_bbm_merge", "sample_seed"]
