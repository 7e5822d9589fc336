"""Tuning the location-token codebook of `anatomy_ldm` (Vilouras et al. 2025, section 3.3).

The method's own model is loaded frozen (autoencoder, U-Net, text encoder); the only trainable
tensor is the codebook, R x D, one row per (sub-)token of the location names (`codebook.py`),
initialised from the text encoder's own embeddings of those tokens, so training starts exactly at
the plain-word prompt. An embedding hook puts the codebook rows in place of the table's rows of
those tokens, so gradients reach them through the text encoder. Per training image:

1. the latent (posterior mean) and the latents of the read steps, under no gradient: independent
   q-samples for `noise_gt`, the guidance-driven DDIM walk for `invert` and `sample` (with the
   unconditional drive of g = 0 it does not depend on the codebook);
2. one U-Net call per read step on the conditional half, the chosen layers read through the
   capture engine (`CrossAttentionCapture`), with the gradient kept;
3. per (step, layer), heads averaged, the attention A of the prompt's location and pathology
   tokens (special tokens excluded): the diversity loss mean_{i != j} cos^2(A_i, A_j) (eq. 2) and
   the localisation loss 1 - cos(A_sp, trg), A_sp the token mean and
   trg = 1[G > eps] * sg(A_sp) + alpha * G (eqs. 3-4), G the prior table's Gaussian(s) on the
   layer's grid, jittered by +-5 % of the image per training step;
4. the step's loss is backpropagated to the text context at once (memory of one U-Net call), the
   context's gradient to the codebook at the end, then one optimiser step.

Seeded throughout: data order, jitter and noise are functions of (seed, step), so a resumed run
continues exactly where a checkpoint left it. The output folder holds the codebook in the format
`anatomy_ldm` reads (with the training provenance inside), `losses.csv`, `loss_curve.png`,
`tune.json` and `checkpoints/`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ....core import atomic
from ....core.errors import BenchError
from ....datasets.anatomy import load_rules
from ....datasets.anatomy_lut import PHANTOM_LUT_FILE, AnatomyLut, load_lut
from ....datasets.images import read_grayscale
from ...base import RunContext
from ..capture import AttentionEvent, CrossAttentionCapture
from ..preprocess import crop_geometry, image_tensor, posterior
from ..process import randn_per_sample
from ..steps import BatchLayout, StepInfo
from .codebook import (
    Codebook,
    anatomy_prompt,
    initial_codebook,
    inject_codebook,
    random_codebook,
    save_codebook,
)
from .triplets import Triplet, curate, make_parser, read_reports, reports_from_samples
from .tune_spec import TuneSpec

LOSSES = ("loss", "diversity", "localisation")


# ---- the losses (pure functions of the attention) ----------------------------------------------

def diversity_loss(attention: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for one (step, layer): attention (positions, tokens) of the non-special tokens;
    the mean over ordered pairs i != j of the squared cosine of their maps (0 for one token)."""
    n = attention.shape[1]
    if n < 2:
        return attention.sum() * 0.0
    unit = F.normalize(attention, dim=0)
    cos = unit.T @ unit
    off = ~torch.eye(n, dtype=torch.bool, device=attention.device)
    return (cos[off] ** 2).mean()


def localisation_loss(attention: torch.Tensor, gaussian: torch.Tensor, alpha: float, epsilon: float) -> torch.Tensor:
    """Eqs. 3-4 for one (step, layer): 1 - cos(A_sp, 1[G > eps] * sg(A_sp) + alpha * G), A_sp the
    token mean of attention (positions, tokens), G (positions,) the target Gaussian."""
    a_sp = attention.mean(dim=1)
    target = (gaussian > epsilon).to(a_sp.dtype) * a_sp.detach() + alpha * gaussian
    return 1.0 - F.cosine_similarity(a_sp, target, dim=0)


# ---- data ---------------------------------------------------------------------------------------

def load_triplets(spec: TuneSpec) -> tuple[list[Triplet], dict, Callable]:
    """The curated triplets of the spec's data, the curation record, and an image reader."""
    data = spec.data
    parser = make_parser(data["parser"])
    if data["source"] == "reports":
        if not data["reports"]:
            raise BenchError(f"{spec.source}: data.source = \"reports\" needs data.reports (a CSV path)")
        reports = read_reports(Path(data["reports"]).expanduser())

        def reader(sample):
            return read_grayscale(sample.image_path, sample.sample_id)
        origin = {"reports": str(data["reports"])}
    else:
        from ....datasets import get_dataset

        root = Path(data["data_root"]).expanduser() if data["data_root"] else None
        dataset = get_dataset(data["dataset"], root, {k: str(v) for k, v in data["options"].items()})
        samples = [s for s in dataset.samples() if s.split == data["split"]]
        if not samples:
            raise BenchError(f"{spec.source}: dataset {data['dataset']} has no {data['split']!r} samples")
        reports = reports_from_samples(samples)
        reader = dataset.load_image
        origin = {"dataset": data["dataset"], "split": data["split"], "options": data["options"]}
    if data["limit"]:
        reports = reports[: data["limit"]]
    triplets, counts = curate(reports, parser)
    if not triplets:
        raise BenchError(f"{spec.source}: curation left no training triplet ({counts['reports']} reports)")
    return triplets, {**origin, "parser": parser.name, "counts": counts}, reader


def load_spec_lut(spec: TuneSpec) -> tuple[AnatomyLut, dict]:
    """The prior table named by the spec ("phantom" = the shipped exact one) and its record."""
    path = PHANTOM_LUT_FILE if spec.lut["file"] == "phantom" else Path(spec.lut["file"]).expanduser()
    lut = load_lut(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return lut, {"file": str(path), "sha256": digest, "provenance": dict(lut.provenance)}


# ---- the tuner ----------------------------------------------------------------------------------

@dataclass
class TuneResult:
    out: Path
    codebook: Path
    steps: int
    final: dict[str, float]
    seconds: float


class CodebookTuner:
    """Trains the codebook of `spec.method`'s model on the spec's triplets (see the module docstring)."""

    def __init__(self, spec: TuneSpec, out: Path, device: str = "auto", random_weights: bool = False,
                 weights: Path | None = None, triplets: Sequence[Triplet] | None = None,
                 reader: Callable | None = None) -> None:
        self.spec = spec
        self.out = Path(out)
        self.rules = load_rules()
        self.lut, self.lut_record = load_spec_lut(spec)
        if triplets is None:
            triplets, self.data_record, reader = load_triplets(spec)
        else:
            self.data_record = {"triplets": "given in memory", "counts": {"triplets": len(triplets)}}
        self.triplets, self.reader = list(triplets), reader
        name = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        self.random_weights = random_weights
        self.method = self._method(name, random_weights, weights)
        self._latents: dict[str, tuple[torch.Tensor, object]] = {}

    # ---------------------------------------------------------------- setup

    def _method(self, device: str, random_weights: bool, weights: Path | None):
        from ...specs import load_method_spec
        from .method import AnatomyLdmMethod

        spec = load_method_spec(self.spec.method)
        if spec.get("backend") != "anatomy_ldm":
            raise BenchError(f"tuning spec {self.spec.source}: method {self.spec.method!r} is not an anatomy_ldm method")
        params = dict(spec.get("params", {}))
        d = self.spec.diffusion
        params.update({"location_tokens": "words", "num_inference_steps": d["num_inference_steps"],
                       "steps": d["steps"], "step_timesteps": []})
        if d["timestep_spacing"]:
            params["timestep_spacing"] = d["timestep_spacing"]
        if d["layers"]:
            params["layers"] = list(d["layers"])
        method = AnatomyLdmMethod({**spec, "params": params},
                                  RunContext(device=device, random_weights=random_weights, weights=weights,
                                             seed=self.spec.train["seed"]))
        self.codebook_name = Path(str(spec.get("weights", {}).get("codebook") or "location_codebook.safetensors")).name
        method.prepare()
        self.device = method.device
        models = method.models
        for part in (models.unet, models.vae, models.text.model):
            part.requires_grad_(False)
            part.eval()
        text = models.text
        self.initial = self._initial_codebook(text)
        self.ids = inject_codebook(text.tokenizer, text.model, self.initial, self.rules)
        self.embedding = text.model.get_input_embeddings()
        self.codebook = torch.nn.Parameter(self.initial.embeddings.clone().to(self.device))
        lookup = torch.full((self.embedding.num_embeddings,), -1, dtype=torch.long)
        for row, token in enumerate(self.initial.tokens):
            lookup[self.ids[token]] = row
        self.lookup = lookup.to(self.device)
        self.embedding.register_forward_hook(self._substitute)
        self.read = method.settings.step_selection().resolve(method._loop_timesteps())
        self.timesteps = method._loop_timesteps()
        return method

    def _initial_codebook(self, text) -> Codebook:
        """The text encoder's own rows of the location tokens (`initial_codebook`), or seeded
        N(0, 0.02^2) rows."""
        init = initial_codebook(text.tokenizer, text.model, self.rules)
        if self.spec.train["init"] == "random":
            return random_codebook(init.tokens, init.dim, seed=self.spec.train["seed"])
        return init

    def _substitute(self, module, inputs, output):
        ids = inputs[0]
        rows = self.lookup[ids]
        mask = rows >= 0
        if not bool(mask.any()):
            return output
        sub = self.codebook[rows.clamp(min=0)].to(output.dtype)
        return torch.where(mask.unsqueeze(-1), sub, output)

    # ---------------------------------------------------------------- one step

    def batch_indices(self, step: int) -> list[int]:
        """Triplet indices of optimisation step `step`: epochs of seeded permutations."""
        n, batch, seed = len(self.triplets), self.spec.train["batch"], self.spec.train["seed"]
        out = []
        for j in range(batch):
            epoch, r = divmod(step * batch + j, n)
            out.append(int(np.random.default_rng([seed, 17, epoch]).permutation(n)[r]))
        return out

    def _latent(self, triplet: Triplet) -> tuple[torch.Tensor, object]:
        key = triplet.sample.sample_id + "|" + triplet.sample.image_path
        if key not in self._latents:
            s = self.method.settings
            array = self.reader(triplet.sample)
            image = image_tensor(array, s.resize, s.crop, s.antialias, s.intensity, s.image_channels)
            with torch.no_grad():
                mean, std = posterior(self.method.models.vae, image[None].to(self.device))
            if len(self._latents) > 4096:
                self._latents.clear()
            self._latents[key] = (mean, std, crop_geometry(array, s.resize, s.crop))
        return self._latents[key]

    def _trajectory(self, clean: torch.Tensor, cond: torch.Tensor, step: int) -> dict[int, torch.Tensor]:
        """Latents at the read loop indices, under no gradient."""
        m, s = self.method, self.method.settings
        seed = self.spec.train["seed"]
        gens = [torch.Generator(device=self.device).manual_seed(int(seed * 1_000_003 + step * 7919 + b))
                for b in range(clean.shape[0])]
        last = self.read[-1]
        out = {}
        with torch.no_grad():
            if s.process == "noise_gt":
                for i in range(last + 1):
                    noise = randn_per_sample(clean.shape[1:], gens, clean.dtype)
                    if i in self.read:
                        out[i] = m.schedule.add_noise(clean, noise, self.timesteps[i])
                return out
            uncond = m.models.text.empty().to(self.device).expand(clean.shape[0], -1, -1)
            z = clean if s.process == "invert" else randn_per_sample(clean.shape[1:], gens, clean.dtype) * float(
                getattr(m.models.scheduler, "init_noise_sigma", 1.0))
            g = s.guidance_scale
            for i in range(last + 1):
                if i in self.read:
                    out[i] = z
                if i == last:
                    break
                t = self.timesteps[i]
                if g == 0:
                    pred = m.runner(z, t, uncond)
                elif g == 1:
                    pred = m.runner(z, t, cond)
                else:
                    u, c = m.runner(z, t, uncond), m.runner(z, t, cond)
                    pred = u + g * (c - u)
                z = m.schedule.move(pred, z, t, self.timesteps[i + 1])
        return out

    def _event_losses(self, event: AttentionEvent, positions: list[list[int]],
                      targets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        probs = event.per_head().mean(dim=1)  # (rows, h, w, tokens), rows: the conditional half
        div, loc = [], []
        tr = self.spec.train
        for b, pos in enumerate(positions):
            attention = probs[b].reshape(event.height * event.width, -1)[:, pos]
            gaussian = targets[b][(event.height, event.width)]
            div.append(diversity_loss(attention))
            loc.append(localisation_loss(attention, gaussian, tr["alpha"], tr["epsilon"]))
        return torch.stack(div).mean(), torch.stack(loc).mean()

    def step(self, step: int, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One optimisation step on the batch of `step`; the losses averaged over steps and layers."""
        m, s, tr = self.method, self.method.settings, self.spec.train
        batch = [self.triplets[i] for i in self.batch_indices(step)]
        text = m.models.text
        prompts, positions, gaussians = [], [], []
        rng = np.random.default_rng([tr["seed"], 29, step])
        latents = []
        for t in batch:
            prompt, pos = anatomy_prompt(s.prompt, t.locations, t.pathology, text.tokenizer, s.text_max_length,
                                         self.rules)
            prompts.append(prompt)
            positions.append(pos["location"] + pos["pathology"])  # the losses leave out the binding "and"
            mean, std, geometry = self._latent(t)
            latents.append(mean)
            grids = {layer.resolution(tuple(mean.shape[-2:])) for layer in m.layers}
            seed_state = rng.bit_generator.state
            maps = {}
            for grid in sorted(grids):
                rng.bit_generator.state = seed_state  # the same jittered Gaussian on every grid
                target = self.lut.target(t.locations, geometry, grid, rng=rng, jitter=tr["jitter"])
                maps[grid] = torch.from_numpy(target.reshape(-1))
            gaussians.append({k: v.to(self.device) for k, v in maps.items()})
        enc = text.tokenizer(prompts, padding="max_length", max_length=s.text_max_length, truncation=True,
                             return_tensors="pt")
        mask = enc["attention_mask"].to(self.device) if text.phrase_mask and text.kind != "clip" else None
        context = text._forward(enc["input_ids"].to(self.device), mask).float()
        leaf = context.detach().requires_grad_(True)
        clean = torch.cat(latents) * s.scale_factor
        path = self._trajectory(clean, leaf.detach(), step)
        events: list[AttentionEvent] = []
        totals = {"diversity": 0.0, "localisation": 0.0}
        n_terms = len(self.read) * len(m.layers)
        with CrossAttentionCapture(m.models.unet, m.layers, [events.append]) as capture:
            for i in self.read:
                info = StepInfo(i, self.timesteps[i], len(self.timesteps), BatchLayout(len(batch), ("cond",)))
                with torch.enable_grad(), capture.reading(info):
                    m.runner(path[i], self.timesteps[i], leaf)
                    div = loc = 0.0
                    for event in events:
                        d, lo = self._event_losses(event, positions, gaussians)
                        div, loc = div + d, loc + lo
                    events.clear()
                    loss = (tr["diversity_weight"] * div + tr["localisation_weight"] * loc) / n_terms
                    loss.backward()
                totals["diversity"] += float(div.detach()) / n_terms
                totals["localisation"] += float(loc.detach()) / n_terms
        optimizer.zero_grad(set_to_none=True)
        context.backward(leaf.grad)
        optimizer.step()
        totals["loss"] = tr["diversity_weight"] * totals["diversity"] + tr["localisation_weight"] * totals["localisation"]
        return {k: totals[k] for k in LOSSES}

    # ---------------------------------------------------------------- the run

    def optimizer(self) -> torch.optim.Optimizer:
        tr = self.spec.train
        kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
        return kinds[tr["optimizer"]]([self.codebook], lr=tr["lr"], weight_decay=tr["weight_decay"])

    def _checkpoint_path(self, step: int) -> Path:
        return self.out / "checkpoints" / f"step-{step:07d}.pt"

    def _resume(self, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
        found = sorted((self.out / "checkpoints").glob("step-*.pt")) if (self.out / "checkpoints").is_dir() else []
        if not found:
            return 0, []
        try:  # tensors, numbers, strings, lists and dicts only: a planted pickle never runs
            state = torch.load(found[-1], map_location=self.device, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, TypeError) as exc:
            raise BenchError(f"{found[-1]} is not a checkpoint of `bench tune anatomy` (it holds more than tensors, "
                             f"numbers and lists, or is broken: {type(exc).__name__}); it was not loaded, choose a "
                             "new --out") from None
        if not isinstance(state, dict) or state.get("spec_digest") != self.spec.digest:
            raise BenchError(f"{self.out} holds checkpoints of another tuning spec; choose a new --out")
        with torch.no_grad():
            self.codebook.copy_(state["codebook"].to(self.device))
        optimizer.load_state_dict(state["optimizer"])
        return int(state["step"]), list(state["history"])

    def _save_checkpoint(self, step: int, optimizer: torch.optim.Optimizer, history: list[dict]) -> None:
        buf = io.BytesIO()
        torch.save({"step": step, "codebook": self.codebook.detach().cpu(), "optimizer": optimizer.state_dict(),
                    "history": history, "spec_digest": self.spec.digest}, buf)
        atomic.write_bytes(self._checkpoint_path(step), buf.getvalue())
        for old in sorted((self.out / "checkpoints").glob("step-*.pt"))[:-2]:
            old.unlink()

    def provenance(self, steps: int, history: list[dict], seconds: float) -> dict:
        import diffusers
        import transformers

        from .... import __version__

        m = self.method
        final = _running(history, 50)[-1] if history else {}
        return {
            "tool": "bench tune anatomy", "spec": self.spec.to_dict(), "spec_file": self.spec.source,
            "spec_digest": self.spec.digest, "method": self.spec.method, "random_weights": self.random_weights,
            "model_sources": dict(m.models.sources), "data": self.data_record, "lut": self.lut_record,
            "steps": steps, "seed": self.spec.train["seed"], "device": str(self.device),
            "layers": [layer.name for layer in m.layers], "timesteps_read": [self.timesteps[i] for i in self.read],
            "process": m.settings.process, "final_losses_mean_last_50": final, "seconds": round(seconds, 1),
            "versions": {"bench": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
                         "transformers": transformers.__version__, "python": sys.version.split()[0]},
        }

    def run(self, progress: bool = True) -> TuneResult:
        """Train (resuming from the latest checkpoint in the output folder), then write the outputs."""
        spec, tr, out_cfg = self.spec, self.spec.train, self.spec.output
        torch.manual_seed(tr["seed"])
        optimizer = self.optimizer()
        start, history = self._resume(optimizer)
        began = time.perf_counter()
        with _Progress(tr["steps"], start, progress, out_cfg["log_every"]) as bar:
            for k in range(start, tr["steps"]):
                history.append({"step": k + 1, **self.step(k, optimizer)})
                bar.update(k + 1, _running(history, 20)[-1])
                if (k + 1) % out_cfg["checkpoint_every"] == 0 or k + 1 == tr["steps"]:
                    self._save_checkpoint(k + 1, optimizer, history)
        seconds = time.perf_counter() - began
        record = self.provenance(tr["steps"], history, seconds)
        codebook_path = self.out / self.codebook_name
        save_codebook(Codebook(self.initial.tokens, self.codebook.detach().cpu()), codebook_path, record)
        write_losses(history, self.out / "losses.csv")
        plot_losses(history, self.out / "loss_curve.png", f"{spec.name}: {spec.method}")
        atomic.write_text(self.out / "tune.json", json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        return TuneResult(self.out, codebook_path, tr["steps"], record["final_losses_mean_last_50"], seconds)


def _running(history: list[dict], window: int) -> list[dict]:
    """Trailing means of the losses over `window` steps."""
    out = []
    for i in range(len(history)):
        part = history[max(0, i - window + 1): i + 1]
        out.append({k: float(np.mean([h[k] for h in part])) for k in LOSSES})
    return out


class _Progress:
    """A rich bar with the running losses on a terminal; a line every `every` steps otherwise;
    nothing under BENCH_QUIET."""

    def __init__(self, total: int, done: int, enabled: bool, every: int) -> None:
        from rich.console import Console

        self.total, self.done, self.every = total, done, every
        self.console = Console(stderr=True)
        self.quiet = not enabled or bool(os.environ.get("BENCH_QUIET"))
        self.bar = None

    def __enter__(self) -> "_Progress":
        if not self.quiet and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("tune"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.description}"), console=self.console, transient=False)
            self.bar.__enter__()
            self.task = self.bar.add_task("", total=self.total, completed=self.done)
        return self

    def update(self, step: int, losses: dict[str, float]) -> None:
        text = f"loss {losses['loss']:.4f} (diversity {losses['diversity']:.4f}, localisation {losses['localisation']:.4f})"
        if self.bar is not None:
            self.bar.update(self.task, completed=step, description=text)
        elif not self.quiet and (step % self.every == 0 or step == self.total):
            print(f"step {step}/{self.total}: {text}", file=sys.stderr, flush=True)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def write_losses(history: list[dict], path: Path) -> None:
    """One row per optimisation step."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", *LOSSES])
    writer.writeheader()
    for row in history:
        writer.writerow({"step": row["step"], **{k: f"{row[k]:.6g}" for k in LOSSES}})
    atomic.write_text(path, buf.getvalue())


def plot_losses(history: list[dict], path: Path, title: str) -> None:
    """The loss curves (per step, faint, and their running means) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [h["step"] for h in history]
    smooth = _running(history, max(1, len(history) // 20))
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for key, colour in zip(LOSSES, ("black", "tab:blue", "tab:orange")):
        ax.plot(steps, [h[key] for h in history], color=colour, alpha=0.2, linewidth=0.8)
        ax.plot(steps, [h[key] for h in smooth], color=colour, label=key, linewidth=1.6)
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=10)
    ax.legend(frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    atomic.write_bytes(path, buf.getvalue())


__all__ = ["CodebookTuner", "TuneResult", "diversity_loss", "load_spec_lut", "load_triplets", "localisation_loss",
           "plot_losses", "write_losses"]
