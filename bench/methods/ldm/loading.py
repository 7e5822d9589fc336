"""Building the U-Net, autoencoder, text encoder, tokenizer and scheduler of an `ldm` spec, offline.

Checkpoints come from (in this order) a folder shipped inside the package (`weights.package_dir`,
a diffusers pipeline layout), the user's folder (`--weights` or `weights.local_dir`, holding the
main checkpoint: the U-Net, and every part from the same repository; other repositories may sit
in `<folder>/<repo name>`), or the Hugging Face cache pinned to the revision. Models are always
built from local paths, so no downloader runs. `--random-weights` builds the real architectures
from the configurations shipped in `bench/methods/ldm_config/` (or the package folder's own).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...core.errors import BenchError
from ..state_dicts import check_loading_info, load_error_detail, mismatch_error
from ..weights import Component, WeightFile, file_sha256, resolve_files
from .formats import load_monai, load_original_unet, warn_replaced_text_encoder
from .settings import METHODS_DIR, LdmSettings
from .textenc import TextEncoder

CONFIG_DIR = METHODS_DIR / "ldm_config"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
TEXT_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
SINGLE_FILE_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".bin")


@dataclass
class LoadedModels:
    """The parts of one diffusion grounding model, ready for inference."""

    model_format: str
    unet: nn.Module
    vae: nn.Module
    text: TextEncoder
    scheduler: Any
    checkpoints: list[WeightFile] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    checks: list[dict] = field(default_factory=list)
    #: how the checkpoints were read (key names, which weights of a file, what of it was left aside)
    loading: dict[str, Any] = field(default_factory=dict)


def _source(files: list[WeightFile]) -> str:
    """Where a part was read: `repo@revision (hf-cache)` or the local folder."""
    first = files[0]
    if first.source == "local":
        return f"{first.repo_id}@{first.revision} from {first.path.parent}"
    return f"{first.repo_id}@{first.revision} ({first.source})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"cannot read configuration {path}: {_first_line(exc)}") from None


def _sub(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _quiet():
    """Silence library warnings and progress bars while models are built."""
    from contextlib import ExitStack

    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    stack = ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    for lib in (tlog, dlog):
        level = lib.get_verbosity()
        lib.set_verbosity_error()
        stack.callback(lib.set_verbosity, level)
    bars = tlog.is_progress_bar_enabled()
    tlog.disable_progress_bar()
    if bars:
        stack.callback(tlog.enable_progress_bar)
    return stack


# ---------------------------------------------------------------- architectures

def _diffusers_class(kind: str):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    return {"unet": UNet2DConditionModel, "vae": AutoencoderKL}[kind]


def monai_unet(config: dict) -> nn.Module:
    """A MONAI U-Net on PyTorch's fused attention (SDPA) unless the config says otherwise: the capture
    hooks compute their own softmax on the layers and steps they read, every other attention stays fused.
    The flag adds no parameter, so checkpoints load the same."""
    from monai.networks.nets import DiffusionModelUNet

    return DiffusionModelUNet(**{"use_flash_attention": True, **config})


def use_fused_attention(unet: nn.Module) -> None:
    """Put every attention of a diffusers U-Net on the fused SDPA processor (MONAI U-Nets are built so)."""
    if hasattr(unet, "set_attn_processor"):
        from diffusers.models.attention_processor import AttnProcessor2_0

        unet.set_attn_processor(AttnProcessor2_0())


def _monai_autoencoder(config: dict) -> nn.Module:
    from monai.networks.nets import AutoencoderKL

    return AutoencoderKL(**config)


def diffusers_scheduler(config: dict):
    """DDIM with the given (SD-style) scheduler configuration: every published SD method samples with DDIM."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config({k: v for k, v in config.items() if not k.startswith("_")})


def monai_scheduler(config: dict):
    from monai.networks.schedulers import DDIMScheduler

    return DDIMScheduler(**config)


def _text_model(kind: str, config_path: Path) -> nn.Module:
    if kind == "clip":
        from transformers import CLIPTextConfig, CLIPTextModel

        return CLIPTextModel(CLIPTextConfig.from_json_file(str(config_path)))
    if kind == "cxr_bert":
        from health_multimodal.text.model import CXRBertConfig, CXRBertModel

        return CXRBertModel(CXRBertConfig.from_json_file(str(config_path)))
    from transformers import BertConfig, BertModel

    return BertModel(BertConfig.from_json_file(str(config_path)))


def _tokenizer(kind: str, folder: Path, pad_token: str = ""):
    """The tokenizer of `folder` (the published files or a `tokenizer.json` alone); with `pad_token`
    set, a one-line BenchError unless prompts are padded with that token of the vocabulary."""
    try:
        if kind == "clip":
            from transformers import CLIPTokenizer

            tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        elif kind == "cxr_bert":
            from health_multimodal.text.model import CXRBertTokenizer

            tokenizer = CXRBertTokenizer.from_pretrained(str(folder), local_files_only=True)
        else:
            from transformers import BertTokenizer

            tokenizer = BertTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"cannot load the {kind} tokenizer from {folder}: {_first_line(exc)}") from None
    if pad_token:
        expected = tokenizer.convert_tokens_to_ids(pad_token)
        if tokenizer.pad_token != pad_token or tokenizer.pad_token_id != expected or expected == tokenizer.unk_token_id:
            raise BenchError(f"the tokenizer in {folder} pads with {tokenizer.pad_token!r} (id "
                             f"{tokenizer.pad_token_id}), the model was trained with {pad_token!r} (id {expected}): "
                             "its special_tokens_map.json or tokenizer_config.json is not the published one")
    return tokenizer


def _weights_file(folder: Path, names: tuple[str, ...]) -> Path:
    """The weights file a library loader reads from `folder` (for messages)."""
    return next((folder / n for n in names if (folder / n).is_file()), folder)


def _pretrained_text(kind: str, folder: Path) -> nn.Module:
    """The text encoder of `folder`, every tensor from its weights file (allow-list aside)."""
    try:
        if kind == "clip":
            from transformers import CLIPTextModel as Model
        elif kind == "cxr_bert" or _read_json(folder / "config.json").get("model_type") == "cxr-bert":
            from health_multimodal.text.model import CXRBertModel as Model
        else:
            from transformers import BertModel as Model
        # mis-shaped tensors are reported in `info` (and refused below) rather than raised without their names
        model, info = Model.from_pretrained(str(folder), local_files_only=True, output_loading_info=True,
                                            ignore_mismatched_sizes=True)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise BenchError(f"cannot load the text encoder from {folder}: {_first_line(exc)}") from None
    check_loading_info(info, _weights_file(folder, TEXT_WEIGHTS), "text encoder")
    return model


# ---------------------------------------------------------------- random weights

def architecture_dir(settings: LdmSettings) -> Path:
    """The configurations the model is built from with random weights (or its single-file U-Net)."""
    if settings.package_dir is not None:
        return settings.package_dir
    folder = CONFIG_DIR / settings.architecture
    if not folder.is_dir():
        known = ", ".join(sorted(p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "text"))
        raise BenchError(f"adapters/{settings.name}.toml: params.architecture {settings.architecture!r} is not "
                         f"shipped (known: {known})")
    return folder


def _random_models(settings: LdmSettings, seed: int) -> LoadedModels:
    arch = architecture_dir(settings)
    packaged = settings.package_dir is not None
    text_config = arch / "text_encoder" / "config.json" if packaged else METHODS_DIR / settings.text_config
    tokenizer_dir = arch / "tokenizer" if packaged else METHODS_DIR / settings.random_tokenizer
    with _quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if settings.model_format == "diffusers":
            unet = _diffusers_class("unet").from_config(_read_json(arch / "unet" / "config.json"))
            vae = _diffusers_class("vae").from_config(_read_json(arch / "vae" / "config.json"))
            scheduler = diffusers_scheduler(_read_json(arch / "scheduler" / "scheduler_config.json"))
        else:
            unet = monai_unet(_read_json(arch / "unet.json"))
            vae = _monai_autoencoder(_read_json(arch / "autoencoder.json"))
            scheduler = monai_scheduler(_read_json(arch / "scheduler.json"))
        text_model = _text_model(settings.text_encoder, text_config)
    tokenizer = _tokenizer(settings.text_encoder, tokenizer_dir, settings.text_pad_token)
    text = TextEncoder(settings.text_encoder, text_model, tokenizer, settings.text_max_length,
                       settings.text_attention_mask)
    sources = {"architecture": str(arch.relative_to(METHODS_DIR) if arch.is_relative_to(METHODS_DIR) else arch),
               "text_config": str(text_config.relative_to(METHODS_DIR) if not packaged else text_config),
               "tokenizer": str(tokenizer_dir.relative_to(METHODS_DIR) if not packaged else tokenizer_dir)}
    return LoadedModels(settings.model_format, unet, vae, text, scheduler, [], sources)


# ---------------------------------------------------------------- checkpoints

#: what each part is called in messages
PART_NAMES = {"unet": "U-Net", "vae": "autoencoder", "text": "text encoder", "tokenizer": "tokenizer"}


def components(settings: LdmSettings) -> dict[str, Component]:
    """The source of each external part of an `ldm` spec (`[weights.<part>]`)."""
    return {"unet": settings.unet, "vae": settings.vae, "text": settings.text, "tokenizer": settings.tokenizer}


class _Finder:
    """Locates the files of each part: its own folder, the user's folder, or the Hugging Face cache."""

    def __init__(self, settings: LdmSettings, weights: Path | None) -> None:
        self.settings = settings
        self.main = weights if weights is not None else settings.local_dir
        self.found: list[WeightFile] = []

    def _hint(self) -> str:
        return f" ({self.settings.missing_hint})" if self.settings.missing_hint else ""

    def folder_for(self, comp: Component) -> Path | None:
        """The local folder to search for `comp`, or None for the Hugging Face cache."""
        if comp.folder() is not None:
            return comp.folder()
        if self.main is None:
            return None
        if comp.repo == self.settings.unet.repo:
            return self.main
        sub = self.main / comp.repo.split("/")[-1]
        return sub if comp.repo and sub.is_dir() else None

    def files(self, comp: Component, names: list, what: str, part: str = "") -> list[WeightFile]:
        folder = self.folder_for(comp)
        if folder is None and not comp.on_hub():
            raise BenchError(f"{self.settings.name} needs its {what} checkpoint ({comp.repo or 'unnamed'}), which is not "
                             f"on the Hugging Face Hub: pass its folder or file with --weights PATH or set "
                             f"weights.local_dir{self._hint()}")
        if folder is not None and not folder.is_dir():
            raise BenchError(f"{self.settings.name}: weights folder {folder} does not exist{self._hint()}")
        found = resolve_files(comp.repo or "local", comp.revision, names, folder,
                              what=f"{self.settings.name} {what} checkpoint", part=part, method=self.settings.name,
                              exact_folder=comp.folder() is not None)
        self.found.extend(found)
        return found


def single_file_unet(settings: LdmSettings, weights: Path | None) -> Path | None:
    """The U-Net checkpoint file when `--weights` (or weights.local_dir) names one file of a diffusers model."""
    main = weights if weights is not None else settings.local_dir
    if settings.model_format != "monai" and main is not None and main.is_file() and main.suffix in SINGLE_FILE_SUFFIXES:
        return main
    return None


def part_files(settings: LdmSettings) -> dict[str, list]:
    """The files each part reads, relative to its repository (alternatives as tuples, preferred first)."""
    def diffusers(comp: Component) -> list:
        return [_sub(comp.subfolder, "config.json"), tuple(_sub(comp.subfolder, n) for n in DIFFUSERS_WEIGHTS)]

    if settings.model_format == "monai":
        unet, vae = [settings.unet.file], [settings.vae.file]
    else:
        unet, vae = diffusers(settings.unet), diffusers(settings.vae)
    model, tok = _text_files(settings)
    return {"unet": unet, "vae": vae, "text": model, "tokenizer": tok}


def _diffusers_part(kind: str, folder: Path, what: str) -> nn.Module:
    """A diffusers model folder, every tensor from its weights file (diffusers would fill gaps at random)."""
    weights = _weights_file(folder, DIFFUSERS_WEIGHTS)
    try:
        model, info = _diffusers_class(kind).from_pretrained(str(folder), local_files_only=True,
                                                             output_loading_info=True)
    except RuntimeError as exc:  # a tensor of another shape
        raise mismatch_error(weights, what, load_error_detail(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise BenchError(f"cannot load the {what} from {folder}: {_first_line(exc)}") from None
    check_loading_info(info, weights, what)
    return model


def _package_record(folder: Path) -> list[WeightFile]:
    """Provenance of a package folder: every weight file in it."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
    return [WeightFile(folder.name, "package", str(p.relative_to(folder)), p, "package") for p in files]


def _package_models(settings: LdmSettings) -> LoadedModels:
    folder = settings.package_dir
    if not folder.is_dir():
        raise BenchError(f"{settings.name}: the model folder {folder} is not part of this installation")
    missing = [p for p in ("unet", "vae", "text_encoder", "tokenizer", "scheduler") if not (folder / p).is_dir()]
    if missing:
        raise BenchError(f"{settings.name}: model folder {folder} has no {missing[0]}/ sub-folder")
    with _quiet():
        unet = _diffusers_part("unet", folder / "unet", "U-Net")
        vae = _diffusers_part("vae", folder / "vae", "autoencoder")
        text_model = _pretrained_text(settings.text_encoder, folder / "text_encoder")
        scheduler = diffusers_scheduler(_read_json(folder / "scheduler" / "scheduler_config.json"))
    tokenizer = _tokenizer(settings.text_encoder, folder / "tokenizer", settings.text_pad_token)
    text = TextEncoder(settings.text_encoder, text_model, tokenizer, settings.text_max_length,
                       settings.text_attention_mask)
    return LoadedModels("diffusers", unet, vae, text, scheduler, _package_record(folder), {"package_dir": str(folder)})


def _text_files(settings: LdmSettings) -> tuple[list, list]:
    """The text encoder's files and the tokenizer's published files."""
    comp, tok_dir = settings.text, settings.tokenizer.subfolder
    model = [_sub(comp.subfolder, "config.json"), tuple(_sub(comp.subfolder, n) for n in TEXT_WEIGHTS)]
    published = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json") \
        if settings.text_encoder == "clip" else ("vocab.txt",)
    return model, [_sub(tok_dir, n) for n in published]


def _find_tokenizer(finder: _Finder, comp: Component, names: list) -> list[WeightFile]:
    """The tokenizer's published files `names`, else the `tokenizer.json` with `tokenizer_config.json`
    that transformers 5 saves in their place (the error names the published files)."""
    try:
        return finder.files(comp, names, PART_NAMES["tokenizer"], "tokenizer")
    except BenchError as missing:
        single = [_sub(comp.subfolder, "tokenizer.json"), _sub(comp.subfolder, "tokenizer_config.json")]
        try:
            return finder.files(comp, single, PART_NAMES["tokenizer"], "tokenizer")
        except BenchError:
            raise missing from None


def _checkpoint_models(settings: LdmSettings, weights: Path | None) -> LoadedModels:
    from ..artifacts import verify_part

    finder = _Finder(settings, weights)
    arch = architecture_dir(settings)
    single = single_file_unet(settings, weights)
    comps = components(settings)
    found: dict[str, list[WeightFile]] = {}
    if single is not None:
        found["unet"] = [WeightFile(single.name, "local", single.name, single, "local", "unet")]
        finder.found.extend(found["unet"])
        finder.main = None
    for part, names in part_files(settings).items():
        if part == "tokenizer":
            found[part] = _find_tokenizer(finder, comps[part], names)
        elif part not in found:
            found[part] = finder.files(comps[part], names, PART_NAMES[part], part)
    checks = [check for part in comps for check in verify_part(settings.name, part, comps[part], found[part],
                                                               settings.text_encoder)]
    loading: dict[str, Any] = {}
    hint = settings.missing_hint
    with _quiet():
        if settings.model_format == "monai":
            unet_file, vae_file = found["unet"][0], found["vae"][0]
        else:
            unet_folder = found["unet"][0].path.parent
            vae_folder = found["vae"][0].path.parent
        text_folder = found["text"][0].path.parent
        tok_folder = found["tokenizer"][0].path.parent

        if settings.model_format == "monai":
            unet = monai_unet(_read_json(arch / "unet.json"))
            loading["unet_key_names"] = load_monai(unet, unet_file.path, "U-Net", hint)
            vae = _monai_autoencoder(_read_json(arch / "autoencoder.json"))
            loading["autoencoder_key_names"] = load_monai(vae, vae_file.path, "autoencoder", hint)
            scheduler = monai_scheduler(_read_json(arch / "scheduler.json"))
        else:
            if single is not None:
                unet, record = load_original_unet(single, _read_json(arch / "unet" / "config.json"))
                loading.update(record)
                warn_replaced_text_encoder(single, record, settings.name)
            else:
                unet = _diffusers_part("unet", unet_folder, "U-Net")
            vae = _diffusers_part("vae", vae_folder, "autoencoder")
            scheduler = diffusers_scheduler(_read_json(arch / "scheduler" / "scheduler_config.json"))
        text_model = _pretrained_text(settings.text_encoder, text_folder)
    tokenizer = _tokenizer(settings.text_encoder, tok_folder, settings.text_pad_token)
    text = TextEncoder(settings.text_encoder, text_model, tokenizer, settings.text_max_length,
                       settings.text_attention_mask)
    sources = {"scheduler_config": str(arch.relative_to(METHODS_DIR))}
    sources.update({part: _source(found[part]) for part in comps})
    return LoadedModels(settings.model_format, unet, vae, text, scheduler, finder.found, sources, checks, loading)


def cross_attention_dim(unet: nn.Module) -> int | None:
    config = getattr(unet, "config", None)
    value = getattr(config, "cross_attention_dim", None) if config is not None else None
    if value is None:
        value = getattr(unet, "cross_attention_dim", None)
    return int(value) if isinstance(value, int) else None


def load_models(settings: LdmSettings, random_weights: bool, weights: Path | None, seed: int) -> LoadedModels:
    """Every part of the model of `settings`, on CPU in float32, in eval mode; BenchError on anything missing."""
    if random_weights:
        models = _random_models(settings, seed)
    elif settings.package_dir is not None and weights is None:
        models = _package_models(settings)
    else:
        models = _checkpoint_models(settings, weights)
    for part in (models.unet, models.vae, models.text.model):
        part.float().eval().requires_grad_(False)
    dim = cross_attention_dim(models.unet)
    if dim is not None and dim != models.text.hidden_size:
        raise BenchError(f"{settings.name}: the text encoder gives {models.text.hidden_size}-d states but the U-Net "
                         f"attends to {dim}-d contexts")
    return models


def snapshot_commit(path: Path) -> str | None:
    """The commit a Hugging Face cache file belongs to (its `snapshots/<commit>/` folder), if any."""
    parts = Path(path).parts
    if "snapshots" in parts[:-1]:
        return parts[parts.index("snapshots") + 1]
    return None


def checkpoint_records(models: LoadedModels) -> list[dict]:
    """Provenance of every checkpoint file: identifiers, size, sha256 (and the cache commit)."""
    records = []
    for f in models.checkpoints:
        record = f.record()
        commit = snapshot_commit(f.path) if f.source == "hf-cache" else None
        if commit:
            record["commit"] = commit
        records.append(record)
    return records


__all__ = ["CONFIG_DIR", "LoadedModels", "PART_NAMES", "architecture_dir", "checkpoint_records", "components",
           "cross_attention_dim", "diffusers_scheduler", "file_sha256", "load_models", "monai_scheduler", "monai_unet",
           "part_files", "single_file_unet", "snapshot_commit", "use_fused_attention"]
