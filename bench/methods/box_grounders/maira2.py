"""MAIRA-2 phrase grounding (microsoft/maira-2) as a box method.

Per sample: the image through MAIRA-2's pre-processing (`maira2_image`), the published
phrase-grounding prompt (`maira2_text.grounding_prompt`) with the image placeholder repeated once
per image feature, greedy decoding of at most `max_new_tokens` tokens, and the generation parsed
by the published grammar; the boxes of the kept phrase go from the 100-bin grid of the centre
square back to original pixels. A generation that does not parse, or parses to no usable box, is
the sample's recorded failure.

The weights are gated on the Hugging Face Hub: accept the licence on the model page, log in
(`hf auth login`), then `bench weights maira2` fetches them; or point `--weights` at a folder
holding the files. `--random-weights` runs a toy model of the same structure with a toy tokenizer
(`maira2_tiny`), without any file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ...core.errors import BenchError, SampleError
from ...core.heatmap import Heatmap
from ...core.params import Param, check_params
from ...core.predictions import BoxPrediction
from ...core.samples import Sample
from ...datasets.base import Dataset
from ..base import Method, RunContext
from ..weights import Component, WeightFile, parse_component, resolve_files
from . import maira2_image, maira2_text

#: the `[params]` fields of a `maira2` spec
PARAMS = {
    "image_size": Param(int, 518, ge=14, le=4096, help="shortest edge and centre crop of the image processor"),
    "max_new_tokens": Param(int, 150, ge=1, le=4096, help="greedy decoding stops after this many new tokens"),
    "phrases": Param(str, "first", choices=("first", "all"),
                     help="boxes of the first grounded phrase of the generation, or of every phrase"),
    "dtype": Param(str, "bf16", choices=("fp32", "fp16", "bf16"), help="weights and activations of the model"),
}
#: the model files read before the weights (the weights: the shards the index names, or one file)
MODEL_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json", ("tokenizer.json", "tokenizer.model"),
               ("model.safetensors.index.json", "model.safetensors"))
#: the toy image side of random-weight runs (two 14-pixel patches a side)
TINY_IMAGE = 28
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Settings:
    """A `maira2` spec's fields, checked."""

    image_size: int
    max_new_tokens: int
    phrases: str
    dtype: str
    model: Component
    local_dir: Path | None


def parse_settings(spec: dict) -> Settings:
    """Settings from a parsed adapter spec; BenchError naming the first bad field."""
    source = f"adapters/{spec.get('name', '?')}.toml"
    p = check_params(spec.get("params", {}), PARAMS, source)
    weights = spec.get("weights", {})
    model = parse_component(weights.get("model"), "model", source)
    if not model.repo:
        raise BenchError(f"{source}: [weights.model] needs repo")
    local = Path(weights["local_dir"]).expanduser() if weights.get("local_dir") else None
    return Settings(p["image_size"], p["max_new_tokens"], p["phrases"], p["dtype"], model, local)


def boxes_from_generation(text: str, width: int, height: int, which: str = "first") -> BoxPrediction:
    """The sample's prediction from a decoded generation: boxes (x, y, w, h) in original pixels in the
    order generated, no scores; a failure naming the problem when the text does not parse, holds no
    box, or a box has no area in original pixels."""
    try:
        phrases = maira2_text.parse_grounded(text)
    except maira2_text.GenerationError as exc:
        return BoxPrediction(boxes=(), failure=f"unparsable generation: {exc}")
    normalised = maira2_text.boxes_of(phrases, which)
    if not normalised:
        return BoxPrediction(boxes=(), failure="the grounded phrase came without a box")
    out = []
    for box in normalised:
        x0, y0, x1, y1 = maira2_text.to_pixels(box, width, height)
        if x1 <= x0 or y1 <= y0:
            return BoxPrediction(boxes=(), failure=f"box {list(box)} has no area in original pixels "
                                                   f"({x0}, {y0}, {x1}, {y1})")
        out.append((float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    return BoxPrediction(boxes=tuple(out))


class Maira2Method(Method):
    """MAIRA-2's phrase grounding: a box method (`output = "boxes"`)."""

    known_params = PARAMS

    def __init__(self, spec: dict, context: RunContext) -> None:
        super().__init__(spec, context)
        self.settings = parse_settings(spec)
        self.checkpoints: list[WeightFile] = []
        self.prepared = False

    # ---------------------------------------------------------------- loading

    def prepare(self, dataset: Dataset | None = None) -> None:
        """Check the device and the checkpoint, build the model and tokenizer (no sample is read)."""
        import torch

        from ..biovil import torch_device
        from .maira2_model import build_config, build_model, tiny_config_dict
        from .maira2_tiny import tiny_tokenizer, tiny_vocab

        self.device = torch_device(self.context.device)
        if self.context.random_weights:
            vocab = tiny_vocab()
            raw = tiny_config_dict(len(vocab), image_size=TINY_IMAGE)
            raw["image_token_index"] = vocab[maira2_text.IMAGE_TOKEN]
            config = build_config(raw, "the toy MAIRA-2 config")
            model = build_model(config, seed=self.context.seed)
            self.tokenizer = tiny_tokenizer()
            self.image_size = TINY_IMAGE
            dtype = torch.float32
        else:
            model, self.tokenizer = self._checkpoint_model()
            config = model.config
            self.image_size = self.settings.image_size
            dtype = getattr(torch, _DTYPES[self.settings.dtype])
        self.model = model.to(device=self.device, dtype=dtype).eval()
        self.dtype = dtype
        self.image_tokens = self._image_tokens(config)
        self.image_token_id = int(config.image_token_index)
        found = self.tokenizer.convert_tokens_to_ids(maira2_text.IMAGE_TOKEN)
        if found != self.image_token_id:
            raise BenchError(f"{self.name}: the tokenizer's {maira2_text.IMAGE_TOKEN} is id {found}, the model's "
                             f"image_token_index {self.image_token_id}")
        self.prepared = True

    def _image_tokens(self, config) -> int:
        """Image features per image: patches a side squared, plus the CLS token under "full"."""
        vision = config.vision_config
        if vision.image_size != self.image_size:
            raise BenchError(f"{self.name}: params.image_size = {self.image_size}, but the vision tower "
                             f"takes {vision.image_size} pixels")
        side = self.image_size // vision.patch_size
        return side * side + (1 if config.vision_feature_select_strategy == "full" else 0)

    def _files(self) -> tuple[list[WeightFile], Path]:
        s = self.settings
        own = s.model.folder()
        local = own or self.context.weights or s.local_dir
        files = resolve_files(s.model.repo, s.model.revision, list(MODEL_FILES), local,
                              what=f"{self.name} checkpoint (gated: accept its licence on the Hub and log in)",
                              part="model", method=self.name, exact_folder=own is not None)
        folder = files[0].path.parent
        index = files[-1]
        if index.filename.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(index.path.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as exc:
                raise BenchError(f"cannot read the shard list {index.path}: {exc}") from None
            files += resolve_files(s.model.repo, s.model.revision, shards, local, what=f"{self.name} checkpoint",
                                   part="model", method=self.name, exact_folder=own is not None)
        return files, folder

    def _check_preprocessor(self, path: Path) -> None:
        """The checkpoint's image processor must be the one `maira2_image` re-writes."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot read {path}: {exc}") from None
        size = self.settings.image_size
        expected = {"size": {"shortest_edge": size}, "crop_size": {"height": size, "width": size},
                    "do_center_crop": True, "do_resize": True, "do_rescale": True, "do_normalize": True,
                    "resample": 3, "image_mean": [maira2_image.MEAN] * 3, "image_std": [maira2_image.STD] * 3}
        for key, value in expected.items():
            if key in raw and raw[key] != value:
                raise BenchError(f"{path} has {key} = {raw[key]!r}; the {self.name} pre-processing uses {value!r} "
                                 f"(set params.image_size to the checkpoint's size)")
        scale = raw.get("rescale_factor", maira2_image.RESCALE)
        if abs(scale - maira2_image.RESCALE) > 1e-12:
            raise BenchError(f"{path} has rescale_factor = {scale}, expected 1/255")

    def _checkpoint_model(self):
        """The published model from its files: config, tokenizer, every tensor renamed and checked."""
        import torch
        from transformers import AutoTokenizer
        from transformers.initialization import no_init_weights

        from ..artifacts import verify_part
        from .maira2_model import Maira2ForConditionalGeneration, read_config

        files, folder = self._files()
        self.checkpoints = files
        self.checks = verify_part(self.name, "model", self.settings.model, files)
        by_name = {Path(f.filename).name: f.path for f in files}
        config = read_config(by_name["config.json"])
        self._check_preprocessor(by_name["preprocessor_config.json"])
        weights = [f.path for f in files if f.filename.endswith(".safetensors")]
        dtype = getattr(torch, _DTYPES[self.settings.dtype])
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with no_init_weights():
                model = Maira2ForConditionalGeneration(config)
        finally:
            torch.set_default_dtype(previous)
        load_published(model, weights)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise BenchError(f"cannot load the {self.name} tokenizer from {folder}: {exc}") from None
        return model, tokenizer

    # ---------------------------------------------------------------- inference

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        raise BenchError(f"{self.name} predicts boxes, not heatmaps (its spec says output = \"boxes\")")

    def boxes(self, samples: Sequence[Sample], dataset: Dataset) -> list[BoxPrediction]:
        """One prediction per sample, in order (one generation per sample)."""
        if not self.prepared:
            self.prepare(dataset)
        out = []
        for sample in samples:
            array = dataset.load_image(sample)
            if array.ndim != 2:
                raise SampleError(sample.sample_id, f"image has shape {array.shape}, expected a 2-D grey image")
            text = self.generate(array, self._prompt(sample))
            pred = boxes_from_generation(text, sample.width, sample.height, self.settings.phrases)
            self.generations[sample.sample_id] = text
            out.append(pred)
        return out

    @property
    def generations(self) -> dict[str, str]:
        """The decoded generation of every sample this process ran, by sample id."""
        if not hasattr(self, "_generations"):
            self._generations: dict[str, str] = {}
        return self._generations

    def _prompt(self, sample: Sample) -> str:
        reserved = [t for t in (maira2_text.IMAGE_TOKEN, *maira2_text.GROUNDING_TOKENS[:4]) if t in sample.phrase]
        if reserved:
            raise SampleError(sample.sample_id, f"phrase contains the model's token {reserved[0]}")
        prompt = maira2_text.grounding_prompt(sample.phrase)
        return prompt.replace(maira2_text.IMAGE_TOKEN, maira2_text.IMAGE_TOKEN * self.image_tokens)

    def generate(self, array: np.ndarray, prompt: str) -> str:
        """Greedy decoding on one image and prompt; the new tokens up to the end token, decoded."""
        import torch

        pixels = torch.from_numpy(maira2_image.pixel_values(array, self.image_size))[None]
        enc = self.tokenizer(prompt, return_tensors="pt")
        ids = enc["input_ids"].to(self.device)
        with torch.no_grad():
            out = self.model.generate(input_ids=ids, attention_mask=enc["attention_mask"].to(self.device),
                                      pixel_values=pixels.to(self.device, self.dtype),
                                      max_new_tokens=self.settings.max_new_tokens, do_sample=False, num_beams=1,
                                      eos_token_id=self.tokenizer.eos_token_id,
                                      pad_token_id=self.tokenizer.pad_token_id, use_cache=True)
        new = out[0, ids.shape[1]:].tolist()
        eos = self.tokenizer.eos_token_id
        if eos in new:
            new = new[:new.index(eos)]
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.decode([t for t in new if t != pad], skip_special_tokens=False)

    def provenance(self) -> dict:
        record = {"random_weights": self.context.random_weights, "image_size": getattr(self, "image_size", None),
                  "max_new_tokens": self.settings.max_new_tokens, "phrases": self.settings.phrases,
                  "decoding": "greedy", "prompt": maira2_text.grounding_prompt("{phrase}")}
        if self.context.random_weights:
            record.update({"seed": self.context.seed, "model": "toy MAIRA-2 structure (maira2_model.tiny_config_dict)",
                           "tokenizer": "toy character tokenizer with the grounding tokens (maira2_tiny)"})
        else:
            record["dtype"] = self.settings.dtype
            record["checkpoints"] = [f.record() for f in self.checkpoints]
            record["content_checks"] = list(getattr(self, "checks", []))
        if self.generations:
            record["generations"] = dict(sorted(self.generations.items()))
        return record


def load_published(model, paths: Sequence[Path]) -> None:
    """Load the published safetensors files into `model`, shard by shard, after checking that the
    renamed tensors and the model's match exactly (names and shapes); one line naming the first
    difference otherwise."""
    import torch
    from safetensors import safe_open

    from ..state_dicts import check_report, compare_keys, mismatch_error
    from .maira2_model import checkpoint_name

    found: dict[str, tuple] = {}
    for path in paths:
        try:
            with safe_open(str(path), framework="pt") as fh:
                for key in fh.keys():
                    found[checkpoint_name(key)] = tuple(fh.get_slice(key).get_shape())
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one line
            raise BenchError(f"cannot read the MAIRA-2 checkpoint {path} as plain tensors: {exc}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    where = paths[0].parent if paths else "?"
    check_report(compare_keys(expected, found), where, "MAIRA-2")
    for path in paths:
        with safe_open(str(path), framework="pt") as fh:
            part = {checkpoint_name(k): fh.get_tensor(k) for k in fh.keys()}
        with torch.no_grad():
            result = model.load_state_dict(part, strict=False)
        if result.unexpected_keys:
            raise mismatch_error(path, "MAIRA-2", f"unexpected tensor {result.unexpected_keys[0]}")


__all__ = ["MODEL_FILES", "Maira2Method", "PARAMS", "Settings", "boxes_from_generation", "load_published",
           "parse_settings"]
