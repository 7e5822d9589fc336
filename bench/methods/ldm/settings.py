"""The `ldm` backend's spec fields, checked: every choice of a diffusion grounding method is data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...core.errors import BenchError
from .lexicon import spacy_model
from .steps import StepSelection
from .tokens import ALIGNMENTS, STRATEGIES, WEIGHTINGS

FORMATS = ("diffusers", "monai")
TEXT_ENCODERS = ("clip", "cxr_bert", "bert")
INTENSITIES = ("unit", "symmetric")
LATENTS = ("mean", "sample", "resample")
PROCESSES = ("invert", "noise_gt", "sample")
SPACINGS = ("scheduler", "trailing")
HALVES = ("cond", "uncond", "cond_minus_uncond")
#: fields a spec may leave out, with the value they then take
OPTIONAL = {"token_weighting": "token", "token_indices": [], "step_timesteps": [], "as_coded": False, "bbm": False,
            "bbm_guidance_scale": 16.0, "lexical_tagger": "builtin", "text_pad_token": ""}
METHODS_DIR = Path(__file__).resolve().parent.parent
PACKAGE_ROOT = METHODS_DIR.parent.parent


@dataclass(frozen=True)
class Component:
    """Where one model part comes from: a repository at a revision, and a sub-folder or a file in it."""

    repo: str = ""
    revision: str = "main"
    subfolder: str = ""
    file: str = ""
    tokenizer_subfolder: str = ""


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
    unet: Component = field(default_factory=Component)
    vae: Component = field(default_factory=Component)
    text: Component = field(default_factory=Component)
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


def _component(raw: Any, key: str, source: str) -> Component:
    if raw is None:
        return Component()
    if not isinstance(raw, dict):
        raise BenchError(f"{source}: weights.{key} must be a table")
    unknown = set(raw) - set(Component.__dataclass_fields__)
    if unknown:
        raise BenchError(f"{source}: weights.{key} has unknown field {sorted(unknown)[0]!r}")
    return Component(**{k: str(v) for k, v in raw.items()})


def parse_settings(spec: dict) -> LdmSettings:
    """LdmSettings from a parsed spec; BenchError naming the first bad field."""
    name = spec.get("name", "?")
    source = f"adapters/{name}.toml"
    params = spec.get("params", {})
    weights = spec.get("weights", {})

    def need(key: str, kind: type | tuple, choices: tuple = ()):
        if key not in params and key not in OPTIONAL:
            raise BenchError(f"{source}: missing params.{key}")
        value = params.get(key, OPTIONAL.get(key))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        if not ok:
            label = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise BenchError(f"{source}: params.{key} = {value!r} is not a {label}")
        if choices and value not in choices:
            raise BenchError(f"{source}: params.{key} = {value!r} is not one of {', '.join(map(str, choices))}")
        return value

    def folder(key: str, root: Path | None = None) -> Path | None:
        value = weights.get(key) or ""
        if not value:
            return None
        path = Path(value).expanduser()
        return path if root is None or path.is_absolute() else root / path

    settings = LdmSettings(
        name=name,
        model_format=need("model_format", str, FORMATS),
        architecture=need("architecture", str),
        text_encoder=need("text_encoder", str, TEXT_ENCODERS),
        text_config=need("text_config", str),
        random_tokenizer=need("random_tokenizer", str),
        text_max_length=need("text_max_length", int),
        text_attention_mask=need("text_attention_mask", bool),
        text_pad_token=need("text_pad_token", str),
        prompt=need("prompt", str),
        image_channels=need("image_channels", int, (1, 3)),
        intensity=need("intensity", str, INTENSITIES),
        resize=need("resize", int),
        crop=need("crop", int),
        antialias=need("antialias", bool),
        latent=need("latent", str, LATENTS),
        scale_factor=need("scale_factor", float),
        process=need("process", str, PROCESSES),
        num_inference_steps=need("num_inference_steps", int),
        timestep_spacing=need("timestep_spacing", str, SPACINGS),
        steps=need("steps", (str, list)),
        step_timesteps=tuple(int(t) for t in need("step_timesteps", list)),
        guidance_scale=need("guidance_scale", float),
        read_half=need("read_half", str, HALVES),
        layers=tuple(need("layers", list)),
        tokens=need("tokens", str, STRATEGIES),
        token_alignment=need("token_alignment", str, ALIGNMENTS),
        token_indices=tuple(int(i) for i in need("token_indices", list)),
        token_weighting=need("token_weighting", str, WEIGHTINGS),
        lexical_tagger=need("lexical_tagger", str),
        per_map_minmax=need("per_map_minmax", bool),
        grid=need("grid", int),
        output_size=need("output_size", int),
        sigma=need("sigma", float),
        normalize=need("normalize", bool),
        otsu=need("otsu", bool),
        seed=need("seed", int),
        bbm=need("bbm", bool),
        bbm_guidance_scale=need("bbm_guidance_scale", float),
        as_coded=need("as_coded", bool),
        unet=_component(weights.get("unet"), "unet", source),
        vae=_component(weights.get("vae"), "vae", source),
        text=_component(weights.get("text"), "text", source),
        local_dir=folder("local_dir"),
        package_dir=folder("package_dir", PACKAGE_ROOT),
        missing_hint=str(weights.get("missing_hint", "")),
    )
    if not 0 < settings.crop <= settings.resize:
        raise BenchError(f"{source}: params.crop must be in 1..resize ({settings.resize})")
    if settings.sigma < 0:
        raise BenchError(f"{source}: params.sigma must not be negative")
    if settings.num_inference_steps < 1 or settings.text_max_length < 2:
        raise BenchError(f"{source}: params.num_inference_steps and params.text_max_length must be positive")
    if settings.grid < 0 or settings.output_size < 0:
        raise BenchError(f"{source}: params.grid and params.output_size must be 0 (native) or positive")
    if not any(isinstance(x, (int, str)) and not isinstance(x, bool) for x in settings.layers) and settings.layers:
        raise BenchError(f"{source}: params.layers must list layer names or indices")
    try:
        spacy_model(settings.lexical_tagger)
    except BenchError as exc:
        raise BenchError(f"{source}: params.{exc}") from None
    if "{phrase}" not in settings.prompt:
        raise BenchError(f"{source}: params.prompt must contain {{phrase}}")
    settings.step_selection()
    return settings


__all__ = ["Component", "LdmSettings", "METHODS_DIR", "PACKAGE_ROOT", "parse_settings", "parse_steps"]
