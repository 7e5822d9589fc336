"""MAIRA-2's architecture from transformers' own LLaVA classes, and its checkpoint under their names.

MAIRA-2 is a LLaVA: a vision tower, a projector and a LLaMA (Vicuna-7B) language model. Its remote
code (`modeling_maira2.py`) differs from transformers' `LlavaForConditionalGeneration` in three
places, reproduced here as small subclasses instead of running that code:

- the vision tower is a `Dinov2Backbone` (Rad-DINO-MAIRA-2), and the image features are its
  `feature_maps[vision_feature_layer]` (hidden states with the backbone's LayerNorm applied), the
  CLS token dropped under the "default" strategy, not LLaVA's raw `hidden_states`;
- the projector is `projector_n_layers` Linear layers with the activation between them
  (`multi_modal_projector.layers.{0,2,4,...}`), not LLaVA's two named layers;
- the remote model sets `vision_tower`, `multi_modal_projector` and `language_model` (a causal LM)
  on itself, the transformers 4.46-4.51 layout. transformers 5's LLaVA keeps them under `model`
  with the LM head beside it, and its inherited forward calls `self.model`, which the remote
  `__init__` never builds: the remote code cannot run under transformers 5.

The checkpoint's tensors keep their published names on disk and are renamed on loading
(`checkpoint_name`), every tensor accounted for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from transformers import Dinov2Config, LlamaConfig, LlavaConfig
from transformers.activations import ACT2FN
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.dinov2.modeling_dinov2 import Dinov2Backbone
from transformers.models.llama.modeling_llama import LlamaModel
from transformers.models.llava.modeling_llava import (
    LlavaForConditionalGeneration,
    LlavaModel,
    LlavaPreTrainedModel,
)

from ...core.errors import BenchError

#: published name prefix -> transformers 5 LLaVA name prefix (first match wins)
RENAMES = (
    ("language_model.lm_head.", "lm_head."),
    ("language_model.model.", "model.language_model."),
    ("vision_tower.", "model.vision_tower."),
    ("multi_modal_projector.", "model.multi_modal_projector."),
)


def checkpoint_name(key: str) -> str:
    """The transformers 5 name of a tensor of the published checkpoint (unchanged when it has none)."""
    for old, new in RENAMES:
        if key.startswith(old):
            return new + key[len(old):]
    return key


def published_name(key: str) -> str:
    """The inverse of `checkpoint_name`: the name the published checkpoint gives a model tensor."""
    for old, new in RENAMES:
        if key.startswith(new):
            return old + key[len(new):]
    return key


class Maira2Projector(nn.Module):
    """`projector_n_layers` Linear layers (vision width -> text width, then text -> text) with the
    projector activation between them, under the published names `layers.<i>`."""

    def __init__(self, config: LlavaConfig) -> None:
        super().__init__()
        n = int(getattr(config, "projector_n_layers", 0))
        if n < 1:
            raise BenchError(f"MAIRA-2 config: projector_n_layers = {n}, expected at least 1")
        text, vision = config.text_config.hidden_size, config.vision_config.hidden_size
        layers: list[nn.Module] = [nn.Linear(vision, text, bias=True)]
        for _ in range(n - 1):
            layers += [ACT2FN[config.projector_hidden_act], nn.Linear(text, text, bias=True)]
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


class Maira2Model(LlavaModel):
    """transformers' `LlavaModel` with MAIRA-2's backbone tower, projector and feature selection."""

    def __init__(self, config: LlavaConfig) -> None:
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = Dinov2Backbone(config.vision_config)
        self.multi_modal_projector = Maira2Projector(config)
        self.language_model = LlamaModel(config.text_config)
        self.post_init()

    def get_image_features(self, pixel_values: torch.Tensor, vision_feature_layer: int | None = None,
                           vision_feature_select_strategy: str | None = None, **kwargs: Any
                           ) -> BaseModelOutputWithPooling:
        """The projected `feature_maps[vision_feature_layer]` of the backbone, one tensor per image in
        `pooler_output` (what transformers 5's `LlavaModel.forward` reads)."""
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        strategy = (self.config.vision_feature_select_strategy if vision_feature_select_strategy is None
                    else vision_feature_select_strategy)
        out = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
        selected = out.feature_maps[layer]
        if selected.dim() != 3:
            raise BenchError("MAIRA-2 vision tower returned reshaped feature maps: its config needs "
                             "reshape_hidden_states = false")
        if strategy == "default":
            selected = selected[:, 1:]
        elif strategy != "full":
            raise BenchError(f"MAIRA-2 config: unknown vision_feature_select_strategy {strategy!r}")
        features = self.multi_modal_projector(selected)
        return BaseModelOutputWithPooling(last_hidden_state=selected, pooler_output=list(features),
                                          hidden_states=out.hidden_states)


class Maira2ForConditionalGeneration(LlavaForConditionalGeneration):
    """transformers' `LlavaForConditionalGeneration` around `Maira2Model` (untied LM head)."""

    _tied_weights_keys: dict = {}

    def __init__(self, config: LlavaConfig) -> None:
        LlavaPreTrainedModel.__init__(self, config)
        self.model = Maira2Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


#: fields of the published config.json read into the LLaVA config (model_type "maira2")
TOP_FIELDS = ("image_token_index", "projector_hidden_act", "vision_feature_select_strategy", "vision_feature_layer",
              "projector_n_layers")


def build_config(raw: Mapping[str, Any], source: str = "config.json") -> LlavaConfig:
    """A LLaVA config with MAIRA-2's fields from the published config.json's content."""
    missing = [k for k in (*TOP_FIELDS, "text_config", "vision_config") if k not in raw]
    if missing:
        raise BenchError(f"{source} lacks MAIRA-2 field {missing[0]!r}")
    if raw.get("model_type") not in ("maira2", None):
        raise BenchError(f"{source} has model_type {raw.get('model_type')!r}, expected 'maira2'")
    text = {k: v for k, v in raw["text_config"].items() if k not in ("architectures", "_name_or_path")}
    vision = {k: v for k, v in raw["vision_config"].items() if k not in ("architectures", "_name_or_path")}
    text["tie_word_embeddings"] = False
    config = LlavaConfig(vision_config=Dinov2Config(**vision), text_config=LlamaConfig(**text),
                         image_token_index=raw["image_token_index"],
                         projector_hidden_act=raw["projector_hidden_act"],
                         vision_feature_select_strategy=raw["vision_feature_select_strategy"],
                         vision_feature_layer=raw["vision_feature_layer"],
                         image_seq_length=raw.get("image_seq_length", 576),
                         pad_token_id=raw.get("pad_token_id"), tie_word_embeddings=False)
    config.projector_n_layers = int(raw["projector_n_layers"])
    return config


def read_config(path: Path) -> LlavaConfig:
    """`build_config` of a config.json file."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchError(f"cannot read the MAIRA-2 config {path}: {exc}") from None
    return build_config(raw, str(path))


def tiny_config_dict(vocab_size: int, image_size: int = 28, patch_size: int = 14) -> dict:
    """A published-style config.json content of the same structure at toy size: DINOv2 backbone of two
    layers, four-layer projector, two-layer LLaMA."""
    return {
        "model_type": "maira2", "architectures": ["Maira2ForConditionalGeneration"],
        "image_token_index": vocab_size - 3, "projector_hidden_act": "gelu", "projector_n_layers": 4,
        "vision_feature_select_strategy": "default", "vision_feature_layer": -1,
        "image_seq_length": (image_size // patch_size) ** 2, "pad_token_id": 0,
        "text_config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": vocab_size,
                        "max_position_embeddings": 512, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
                        "rope_scaling": {"type": "linear", "factor": 1.5}},
        "vision_config": {"model_type": "dinov2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                          "mlp_ratio": 2, "image_size": image_size, "patch_size": patch_size, "apply_layernorm": True,
                          "reshape_hidden_states": False, "out_features": ["stage2"], "out_indices": [2],
                          "layerscale_value": 1.0},
    }


def build_model(config: LlavaConfig, seed: int | None = None) -> Maira2ForConditionalGeneration:
    """The model of `config` in eval mode; weights drawn from `seed` when given (random-weight runs)."""
    if seed is None:
        return Maira2ForConditionalGeneration(config).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Maira2ForConditionalGeneration(config).eval()


def published_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's tensors under the published checkpoint's names (for tests and conversions)."""
    return {published_name(k): v for k, v in model.state_dict().items()}


__all__ = ["Maira2ForConditionalGeneration", "Maira2Model", "Maira2Projector", "RENAMES", "build_config", "build_model",
           "checkpoint_name", "published_name", "published_state", "read_config", "tiny_config_dict"]
