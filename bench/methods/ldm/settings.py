"""The `ldm` backend's spec fields, checked: every choice of a diffusion grounding method is data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import BenchError
from ...core.params import REQUIRED, Param, check_params
from ..weights import Component, parse_component
from .lexicon import spacy_model
from .precision import ATTENTION_PRECISIONS, PRECISIONS, Precision
from .steps import StepSelection
from .tokens import ALIGNMENTS, STRATEGIES, WEIGHTINGS

FORMATS = ("diffusers", "monai")
TEXT_ENCODERS = ("clip", "cxr_bert", "bert")
INTENSITIES = ("unit", "symmetric")
LATENTS = ("mean", "sample", "resample")
PROCESSES = ("invert", "noise_gt", "sample")
SPACINGS = ("scheduler", "trailing")
HALVES = ("cond", "uncond", "cond_minus_uncond")

#: the `[params]` fields of an `ldm` spec, with their types and ranges (fields with a default may be left out)
PARAMS: dict[str, Param] = {
    "model_format": Param(str, REQUIRED, choices=FORMATS),
    "architecture": Param(str, REQUIRED),
    "text_encoder": Param(str, REQUIRED, choices=TEXT_ENCODERS),
    "text_config": Param(str, REQUIRED),
    "random_tokenizer": Param(str, REQUIRED),
    "text_max_length": Param(int, REQUIRED, ge=2),
    "text_attention_mask": Param(bool, REQUIRED),
    "text_pad_token": Param(str, "", help="the pad token the tokenizer must have after loading ('': not checked)"),
    "prompt": Param(str, REQUIRED),
    "image_channels": Param(int, REQUIRED, choices=(1, 3)),
    "intensity": Param(str, REQUIRED, choices=INTENSITIES),
    "resize": Param(int, REQUIRED, ge=1, le=8192),
    "crop": Param(int, REQUIRED, ge=1, le=8192),
    "antialias": Param(bool, REQUIRED),
    "latent": Param(str, REQUIRED, choices=LATENTS),
    "scale_factor": Param(float, REQUIRED, gt=0),
    "process": Param(str, REQUIRED, choices=PROCESSES),
    "num_inference_steps": Param(int, REQUIRED, ge=1, le=100_000),
    "timestep_spacing": Param(str, REQUIRED, choices=SPACINGS),
    "steps": Param((str, list), REQUIRED, items=int),
    "step_timesteps": Param(list, [], items=int),
    "guidance_scale": Param(float, REQUIRED),
    "read_half": Param(str, REQUIRED, choices=HALVES),
    "layers": Param(list, REQUIRED, items=(int, str)),
    "tokens": Param(str, REQUIRED, choices=STRATEGIES),
    "token_alignment": Param(str, REQUIRED, choices=ALIGNMENTS),
    "token_indices": Param(list, [], items=int),
    "token_weighting": Param(str, "token", choices=WEIGHTINGS),
    "lexical_tagger": Param(str, "builtin"),
    "per_map_minmax": Param(bool, REQUIRED),
    "grid": Param(int, REQUIRED, ge=0, le=4096, help="0: the layers' native size"),
    "output_size": Param(int, REQUIRED, ge=0, le=8192, help="0: no resizing"),
    "sigma": Param(float, REQUIRED, ge=0),
    "normalize": Param(bool, REQUIRED),
    "otsu": Param(bool, REQUIRED),
    "seed": Param(int, REQUIRED, ge=0),
    "bbm": Param(bool, False),
    "bbm_guidance_scale": Param(float, 16.0),
    "as_coded": Param(bool, False),
    "precision": Param(str, "fp32", choices=PRECISIONS,
                       help="U-Net and text encoder under autocast at fp16 / bf16 (fp32: no autocast)"),
    "attention_precision": Param(str, "fp32", choices=ATTENTION_PRECISIONS,
                                 help="captured probabilities: fp32 logits and softmax, or as diffusers under autocast"),
}
METHODS_DIR = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = METHODS_DIR.parent.parent


@dataclass(frozen=True)
class LdmSettings:
    """Checked fields of an `ldm` spec (see adapters/cxrbert_ldm.toml for what each one means)."""

    name: str
    model_format: str
    architecture: str
    text_encoder: str
    text_config: str
    random_tokenizer: str
    text_max_length: int
    text_attention_mask: bool
    text_pad_token: str
    prompt: str
    image_channels: int
    intensity: str
    resize: int
    crop: int
    antialias: bool
    latent: str
    scale_factor: float
    process: str
    num_inference_steps: int
    timestep_spacing: str
    steps: Any
    step_timesteps: tuple[int, ...]
    guidance_scale: float
    read_half: str
    layers: tuple
    tokens: str
    token_alignment: str
    token_indices: tuple[int, ...]
    token_weighting: str
    lexical_tagger: str
    per_map_minmax: bool
    grid: int
    output_size: int
    sigma: float
    normalize: bool
    otsu: bool
    seed: int
    bbm: bool
    bbm_guidance_scale: float
    as_coded: bool
    precision: Precision = field(default_factory=Precision)
    unet: Component = field(default_factory=Component)
    vae: Component = field(default_factory=Component)
    text: Component = field(default_factory=Component)
    tokenizer: Component = field(default_factory=Component)
    local_dir: Path | None = None
    package_dir: Path | None = None
    missing_hint: str = ""

    def step_selection(self) -> StepSelection:
        """The steps read, from `steps` ("a:b" slice of loop indices, "-n:" = last n, list, "all")
        or `step_timesteps` (by t)."""
        if self.step_timesteps:
            return StepSelection.at_timesteps(self.step_timesteps)
        return parse_steps(self.steps, self.name)


def parse_steps(value: Any, name: str = "?") -> StepSelection:
    """A StepSelection from a spec value: "all", "a:b", "-n:" (last n) or a list of loop indices."""
    if isinstance(value, list):
        return StepSelection.at_indices(int(v) for v in value)
    if isinstance(value, str):
        text = value.strip()
        if text == "all":
            return StepSelection.every()
        if ":" in text:
            start, _, stop = text.partition(":")
            try:
                a = int(start) if start.strip() else 0
                b = int(stop) if stop.strip() else None
            except ValueError:
                pass
            else:
                if a < 0 and b is None:
                    return StepSelection.last_n(-a)
                if a >= 0 and b is not None and b > a:
                    return StepSelection.at_indices(range(a, b))
    raise BenchError(f"adapters/{name}.toml: params.steps = {value!r}: expected \"all\", \"start:stop\" "
                     "(loop indices), \"-n:\" (last n) or a list of loop indices")


def tokenizer_component(weights: dict, text: Component, source: str) -> Component:
    """The tokenizer's source: `weights.tokenizer` when the spec has one, else the text encoder's
    repository at its `tokenizer_subfolder`."""
    if weights.get("tokenizer") is not None:
        return parse_component(weights["tokenizer"], "tokenizer", source)
    return Component(repo=text.repo, revision=text.revision, subfolder=text.tokenizer_subfolder,
                     local_dir=text.local_dir)


def parse_settings(spec: dict) -> LdmSettings:
    """LdmSettings from a parsed spec; BenchError naming the first bad field."""
    name = spec.get("name", "?")
    source = f"adapters/{name}.toml"
    weights = spec.get("weights", {})
    given = spec.get("params", {})
    # fields of a backend built on this one (anatomy_ldm's) are checked by method_backend
    p = check_params({k: v for k, v in given.items() if k in PARAMS}, PARAMS, source)

    def folder(key: str, root: Path | None = None) -> Path | None:
        value = weights.get(key) or ""
        if not value:
            return None
        path = Path(value).expanduser()
        return path if root is None or path.is_absolute() else root / path

    settings = LdmSettings(
        name=name,
        model_format=p["model_format"],
        architecture=p["architecture"],
        text_encoder=p["text_encoder"],
        text_config=p["text_config"],
        random_tokenizer=p["random_tokenizer"],
        text_max_length=p["text_max_length"],
        text_attention_mask=p["text_attention_mask"],
        text_pad_token=p["text_pad_token"],
        prompt=p["prompt"],
        image_channels=p["image_channels"],
        intensity=p["intensity"],
        resize=p["resize"],
        crop=p["crop"],
        antialias=p["antialias"],
        latent=p["latent"],
        scale_factor=p["scale_factor"],
        process=p["process"],
        num_inference_steps=p["num_inference_steps"],
        timestep_spacing=p["timestep_spacing"],
        steps=p["steps"],
        step_timesteps=tuple(p["step_timesteps"]),
        guidance_scale=p["guidance_scale"],
        read_half=p["read_half"],
        layers=tuple(p["layers"]),
        tokens=p["tokens"],
        token_alignment=p["token_alignment"],
        token_indices=tuple(p["token_indices"]),
        token_weighting=p["token_weighting"],
        lexical_tagger=p["lexical_tagger"],
        per_map_minmax=p["per_map_minmax"],
        grid=p["grid"],
        output_size=p["output_size"],
        sigma=p["sigma"],
        normalize=p["normalize"],
        otsu=p["otsu"],
        seed=p["seed"],
        bbm=p["bbm"],
        bbm_guidance_scale=p["bbm_guidance_scale"],
        as_coded=p["as_coded"],
        precision=Precision(p["precision"], p["attention_precision"]),
        unet=parse_component(weights.get("unet"), "unet", source),
        vae=parse_component(weights.get("vae"), "vae", source),
        text=parse_component(weights.get("text"), "text", source),
        tokenizer=tokenizer_component(weights, parse_component(weights.get("text"), "text", source), source),
        local_dir=folder("local_dir"),
        package_dir=folder("package_dir", PACKAGE_ROOT),
        missing_hint=str(weights.get("missing_hint", "")),
    )
    if settings.crop > settings.resize:
        raise BenchError(f"{source}: params.crop = {settings.crop} is not in 1..resize ({settings.resize})")
    try:
        spacy_model(settings.lexical_tagger)
    except BenchError as exc:
        raise BenchError(f"{source}: params.{exc}") from None
    if "{phrase}" not in settings.prompt:
        raise BenchError(f"{source}: params.prompt must contain {{phrase}}")
    settings.step_selection()
    return settings


__all__ = ["Component", "LdmSettings", "METHODS_DIR", "PACKAGE_ROOT", "PARAMS", "parse_settings", "parse_steps",
           "tokenizer_component"]
