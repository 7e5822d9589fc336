"""BioViL and BioViL-T (hi-ml-multimodal): the cosine map of projected patch and phrase embeddings.

The published pipeline (hi-ml `ImageTextInferenceEngine.get_similarity_map_from_raw_data`) is
reproduced on arrays instead of files: min-max remap to uint8, PIL short-side resize and centre
crop, [0, 1] tensor without normalisation on 3 channels; phrase without trailing "!?."; CLS
projection; cosine of L2-normalised embeddings per patch; Gaussian smoothing on the patch grid.
The map is returned on its native patch grid with the crop's footprint as geometry, so the
protocol decides how it reaches the original image.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from transformers.utils import logging as hf_logging

from ..core.errors import BenchError, SampleError
from ..core.geometry import Geometry
from ..core.heatmap import Heatmap
from ..core.params import REQUIRED, Param, check_params
from ..core.samples import Sample
from ..datasets.base import Dataset
from .artifacts import verify_part
from .base import Method, RunContext
from .ldm.precision import PRECISIONS, Precision
from .state_dicts import check_loading_info, load_exact, read_state_dict
from .weights import Component, WeightFile, parse_component, resolve_files

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # hi-ml imports timm.models.layers
    from health_multimodal.image.data.io import remap_to_uint8
    from health_multimodal.image.data.transforms import create_chest_xray_transform_for_inference
    from health_multimodal.image.model.model import ImageModel
    from health_multimodal.image.model.pretrained import JOINT_FEATURE_SIZE
    from health_multimodal.image.model.types import ImageEncoderType
    from health_multimodal.text.model import CXRBertConfig, CXRBertModel, CXRBertTokenizer

CONFIG_DIR = Path(__file__).resolve().parent / "biovil_config"
#: the text model files of a checkpoint folder: vocabulary as published (vocab.txt) or as transformers 5
#: saves it (tokenizer.json); weights as safetensors or as the published .bin
TEXT_FILES = ("config.json", ("vocab.txt", "tokenizer.json"), ("model.safetensors", "pytorch_model.bin"))


@dataclass(frozen=True)
class Variant:
    """What differs in code between the two models: the image encoder and the shipped BERT config."""

    image_encoder: ImageEncoderType
    text_config: str


VARIANTS = {
    "biovil": Variant(ImageEncoderType.RESNET50, "cxr_bert_specialized.json"),
    "biovil_t": Variant(ImageEncoderType.RESNET50_MULTI_IMAGE, "biovil_t_bert.json"),
}


@dataclass(frozen=True)
class Settings:
    """The adapter spec's fields, checked."""

    variant: str
    resize: int
    crop: int
    sigma: float
    text: Component
    image: Component
    local_dir: Path | None

    def text_files(self) -> tuple:
        """The text model's files relative to its repository (weights as alternatives)."""
        sub = self.text.subfolder.strip("/")
        return tuple(tuple(f"{sub}/{n}" if sub else n for n in f) if isinstance(f, tuple) else (f"{sub}/{f}" if sub else f)
                     for f in TEXT_FILES)


#: the `[params]` fields of a `biovil` spec
PARAMS = {
    "variant": Param(str, REQUIRED, choices=tuple(VARIANTS), help="image encoder and text configuration"),
    "resize": Param(int, REQUIRED, ge=1, le=4096, help="short side resized to this"),
    "crop": Param(int, REQUIRED, ge=1, le=4096, help="central crop x crop square, at most resize"),
    "sigma": Param(float, REQUIRED, ge=0, help="Gaussian smoothing on the patch grid, in patches"),
    "precision": Param(str, "fp32", choices=PRECISIONS,
                       help="image and text model under autocast at fp16 / bf16 (fp32, as hi-ml: no autocast)"),
}


def parse_settings(spec: dict) -> Settings:
    """Settings from a parsed adapter spec; BenchError naming the first bad field."""
    source = f"adapters/{spec.get('name', '?')}.toml"
    weights = spec.get("weights", {})
    p = check_params(spec.get("params", {}), PARAMS, source)
    text = parse_component(weights.get("text"), "text", source)
    image = parse_component(weights.get("image"), "image", source)
    if not (text.repo and image.repo and image.file):
        raise BenchError(f"{source}: [weights.text] needs repo and [weights.image] repo and file")
    settings = Settings(p["variant"], p["resize"], p["crop"], p["sigma"], text, image,
                        Path(weights["local_dir"]).expanduser() if weights.get("local_dir") else None)
    if settings.crop > settings.resize:
        raise BenchError(f"{source}: params.crop = {settings.crop} is not in 1..resize ({settings.resize})")
    return settings


def torch_device(name: str) -> torch.device:
    """The torch device for `--device`, or a one-line BenchError when it cannot be used here."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise BenchError(f"--device {name!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"device {name} requested but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BenchError(f"device {name} requested but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"device {name} requested but MPS is not available")
    return device


def image_tensor(array: np.ndarray, transform) -> torch.Tensor:
    """hi-ml's `load_image` + transform on an array: min-max to uint8, PIL "L", resize, crop, [3, c, c].

    A constant image (whose min-max remap is 0/0 in hi-ml) becomes all zeros.
    """
    array = np.asarray(array)
    if array.min() == array.max():
        pixels = np.zeros(array.shape, dtype=np.uint8)
    else:
        pixels = remap_to_uint8(array)
    return transform(Image.fromarray(pixels).convert("L"))


def prompt_of(phrase: str) -> str:
    """The text hi-ml embeds: the phrase without trailing "!", "?" and "."."""
    return phrase.rstrip("!?.")


def smoothed_similarity(patches: torch.Tensor, text: torch.Tensor, sigma: float) -> np.ndarray:
    """Cosine map of normalised patch embeddings (h, w, d) and a normalised text embedding (d,),
    smoothed with a Gaussian of `sigma` patches (scipy, reflect), as float32."""
    h, w, d = patches.shape
    sim = (patches.reshape(-1, d) @ text.reshape(1, d).t()).reshape(h, w).cpu().numpy()
    return ndimage.gaussian_filter(sim, sigma=(sigma, sigma), order=0).astype(np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class BioVilMethod(Method):
    """BioViL (CXR-BERT + ResNet-50, crop 480, 15x15) and BioViL-T (crop 448, 14x14), per the spec."""

    known_params = PARAMS

    def __init__(self, spec: dict, context: RunContext) -> None:
        super().__init__(spec, context)
        self.settings = parse_settings(spec)
        self.variant = VARIANTS[self.settings.variant]
        self.checkpoints: list[WeightFile] = []
        self.checks: list[dict] = []
        self.prepared = False
        self._text_cache: dict[str, torch.Tensor] = {}

    def prepare(self, dataset: Dataset | None = None) -> None:
        """Check the device and the checkpoint files, then build both models (no sample is read)."""
        self.device = torch_device(self.context.device)
        self.precision = Precision(self.params["precision"])
        self.precision.check(self.device)
        if self.context.random_weights:
            image_model, text_model, tokenizer = self._random_models()
        else:
            image_model, text_model, tokenizer = self._checkpoint_models()
        self.image_model = image_model.float().to(self.device).eval()
        self.text_model = text_model.float().to(self.device).eval()
        self.tokenizer = tokenizer
        self.transform = create_chest_xray_transform_for_inference(self.settings.resize, self.settings.crop)
        self._text_cache.clear()
        self.prepared = True

    def _random_models(self) -> tuple[ImageModel, CXRBertModel, CXRBertTokenizer]:
        """The real architectures with weights drawn from `context.seed`, and the built-in vocabulary."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.context.seed)
            image_model = ImageModel(img_encoder_type=self.variant.image_encoder, joint_feature_size=JOINT_FEATURE_SIZE)
            text_model = CXRBertModel(CXRBertConfig.from_json_file(str(CONFIG_DIR / self.variant.text_config)))
        tokenizer = CXRBertTokenizer.from_pretrained(str(CONFIG_DIR / "tokenizer"), local_files_only=True)
        return image_model, text_model, tokenizer

    def _checkpoint_models(self) -> tuple[ImageModel, CXRBertModel, CXRBertTokenizer]:
        """Both models from the pinned checkpoint: local folder if given, else the Hugging Face cache."""
        s = self.settings
        local = self.context.weights or s.local_dir
        found = {}
        for part, comp, names in (("text", s.text, s.text_files()), ("image", s.image, (s.image.file,))):
            folder = comp.folder() or local
            found[part] = resolve_files(comp.repo, comp.revision, list(names), folder, what=f"{self.name} checkpoint",
                                        part=part, method=self.name, exact_folder=comp.folder() is not None)
        self.checkpoints = found["text"] + found["image"]
        self.checks = (verify_part(self.name, "text", s.text, found["text"], "cxr_bert")
                       + verify_part(self.name, "image", s.image, found["image"]))
        text_dir, image_path, text_weights = found["text"][0].path.parent, found["image"][0].path, found["text"][2].path
        image_model = ImageModel(img_encoder_type=self.variant.image_encoder, joint_feature_size=JOINT_FEATURE_SIZE)
        load_exact(image_model, read_state_dict(image_path, "image"), image_path, "image")
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the run has its own progress display
        # BioViL-T's config says model_type "bert" for a CXRBertModel: transformers warns about the type
        # on every load, harmlessly; what matters, every tensor loaded, is checked below
        hf_logging.set_verbosity_error()
        try:
            tokenizer = CXRBertTokenizer.from_pretrained(str(text_dir), local_files_only=True)
            text_model, info = CXRBertModel.from_pretrained(str(text_dir), local_files_only=True,
                                                            output_loading_info=True, ignore_mismatched_sizes=True)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise BenchError(f"cannot load text model from {text_dir}: {_first_line(exc)}") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        check_loading_info(info, text_weights, "text")
        return image_model, text_model, tokenizer

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        if not self.prepared:
            self.prepare(dataset)
        arrays = [dataset.load_image(s) for s in samples]
        for s, a in zip(samples, arrays):
            if a.ndim != 2:
                raise SampleError(s.sample_id, f"image has shape {a.shape}, expected a 2-D grey image")
        text = self._text_embeddings(samples)
        patches = self._patch_embeddings([image_tensor(a, self.transform) for a in arrays])
        out = []
        for s, a, p, t in zip(samples, arrays, patches, text):
            values = smoothed_similarity(p, t, self.settings.sigma)
            geometry = Geometry.short_side_crop(a.shape[0], a.shape[1], self.settings.resize, self.settings.crop)
            out.append(Heatmap(values, geometry, {"prompt": prompt_of(s.phrase)}))
        return out

    @torch.no_grad()
    def _patch_embeddings(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """L2-normalised projected patch embeddings (h, w, d) per image, `batch_size` images per forward."""
        out: list[torch.Tensor] = []
        size = max(1, self.context.batch_size)
        for i in range(0, len(images), size):
            batch = torch.stack(images[i:i + size]).to(self.device)
            with self.precision.autocast(self.device):
                emb = self.image_model.get_patchwise_projected_embeddings(batch, normalize=True)
            out.extend(emb.float())
        return out

    @torch.no_grad()
    def _text_embeddings(self, samples: Sequence[Sample]) -> list[torch.Tensor]:
        """L2-normalised projected CLS embedding per sample; each distinct prompt is embedded once."""
        prompts = [prompt_of(s.phrase) for s in samples]
        todo: dict[str, str] = {}
        for s, p in zip(samples, prompts):
            if p not in self._text_cache and p not in todo:
                self._check_prompt(s, p)
                todo[p] = s.sample_id
        pending = list(todo)
        size = max(1, self.context.batch_size)
        for i in range(0, len(pending), size):
            chunk = pending[i:i + size]
            tokens = self.tokenizer(chunk, add_special_tokens=True, padding="longest", return_tensors="pt")
            with self.precision.autocast(self.device):
                emb = self.text_model.get_projected_text_embeddings(
                    input_ids=tokens["input_ids"].to(self.device),
                    attention_mask=tokens["attention_mask"].to(self.device),
                    normalize_embeddings=True,
                )
            self._text_cache.update(zip(chunk, emb.float()))
        return [self._text_cache[p] for p in prompts]

    def _check_prompt(self, sample: Sample, prompt: str) -> None:
        """hi-ml's checks: no special token but [MASK] in the text, no more tokens than positions."""
        special = set(self.tokenizer.all_special_tokens) - {self.tokenizer.mask_token}
        found = sorted(t for t in special if t in sample.phrase)
        if found:
            raise SampleError(sample.sample_id, f"phrase contains the special token {found[0]}")
        length = len(self.tokenizer(prompt, add_special_tokens=True)["input_ids"])
        limit = self.text_model.config.max_position_embeddings
        if length > limit:
            raise SampleError(sample.sample_id, f"phrase has {length} tokens, more than the text model's {limit}")

    def provenance(self) -> dict:
        record = {"variant": self.settings.variant, "random_weights": self.context.random_weights,
                  "resize": self.settings.resize, "crop": self.settings.crop, "sigma": self.settings.sigma,
                  "precision": self.params["precision"]}
        if self.context.random_weights:
            record.update({"seed": self.context.seed, "text_config": self.variant.text_config,
                           "tokenizer": "built-in vocabulary (biovil_config/tokenizer)"})
        else:
            record["checkpoints"] = [f.record() for f in self.checkpoints]
            record["content_checks"] = list(self.checks)
        return record


__all__ = ["BioVilMethod", "Settings", "VARIANTS", "image_tensor", "parse_settings", "prompt_of",
           "smoothed_similarity", "torch_device"]
