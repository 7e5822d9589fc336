"""The cross-attention layers of a conditional U-Net, in execution order, and how specs pick them.

Layers are the modules named `...attn2` that attend to the text context: diffusers `Attention`
(cross-attention variant) in `UNet2DConditionModel`, MONAI `CrossAttentionBlock` in
`DiffusionModelUNet`. Their order is the order a forward pass runs them (down blocks, middle block,
up blocks), so layer indices mean what the published codes mean by them (Vilouras' [3, 4, 6, 7]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

_STAGES = {"down_blocks": 0, "mid_block": 1, "middle_block": 1, "up_blocks": 2}


@dataclass(frozen=True)
class CrossAttentionLayer:
    """One cross-attention module: traversal index, module name, heads, downsampling factor."""

    index: int
    name: str
    heads: int
    downsampling: int
    module: nn.Module = field(repr=False, compare=False)

    def resolution(self, latent_hw: int | tuple[int, int]) -> tuple[int, int]:
        """(h, w) of this layer's query grid for a latent of the given size (stride-2 convs round up)."""
        lat_h, lat_w = (latent_hw, latent_hw) if isinstance(latent_hw, int) else latent_hw
        return math.ceil(lat_h / self.downsampling), math.ceil(lat_w / self.downsampling)


def _is_cross_attention(module: nn.Module) -> bool:
    from diffusers.models.attention_processor import Attention
    from monai.networks.blocks.crossattention import CrossAttentionBlock

    if isinstance(module, CrossAttentionBlock):
        return True
    return isinstance(module, Attention) and bool(getattr(module, "is_cross_attention", False))


def _heads(module: nn.Module) -> int:
    return int(getattr(module, "heads", None) or module.num_heads)


def _position(name: str, levels: int) -> tuple[tuple[int, int], int]:
    """Execution-order key and downsampling factor of a module named `<stage>[.<block>].…`."""
    parts = name.split(".")
    stage = _STAGES.get(parts[0])
    if stage is None:
        raise ValueError(f"cannot place cross-attention layer {name!r}: not under down/mid/up blocks")
    if stage == 1:
        return (1, 0), 2 ** (levels - 1)
    block = int(parts[1])
    level = block if stage == 0 else levels - 1 - block
    return (stage, block), 2**level


def cross_attention_layers(unet: nn.Module) -> list[CrossAttentionLayer]:
    """Every cross-attention layer of a diffusers or MONAI U-Net, in the order a forward pass runs them."""
    levels = len(unet.down_blocks)
    found = []
    for order, (name, module) in enumerate(unet.named_modules()):
        if name.endswith("attn2") and _is_cross_attention(module):
            key, factor = _position(name, levels)
            found.append((key, order, name, module, factor))
    if not found:
        raise ValueError(f"{type(unet).__name__} has no cross-attention layers (was it built with conditioning?)")
    found.sort(key=lambda item: (item[0], item[1]))
    return [
        CrossAttentionLayer(index=i, name=name, heads=_heads(module), downsampling=factor, module=module)
        for i, (_, _, name, module, factor) in enumerate(found)
    ]


def _matches(layer: CrossAttentionLayer, key: str) -> bool:
    return layer.name == key or layer.name.startswith(key + ".")


def select_layers(
    layers: Sequence[CrossAttentionLayer],
    keys: Sequence[int | str] | None = None,
    downsampling: int | None = None,
) -> list[CrossAttentionLayer]:
    """The layers a spec names, in traversal order.

    `keys` holds traversal indices or module names; a name also selects the layers below it
    ("up_blocks.0.attentions.1" selects its `transformer_blocks.0.attn2`). `downsampling` keeps only
    layers at that factor (8 = the 16x16 layers of a 64x64 latent). Every key must select something.
    """
    chosen = list(layers)
    if keys is not None:
        picked: set[int] = set()
        for key in keys:
            if isinstance(key, int):
                if not 0 <= key < len(layers):
                    raise ValueError(f"layer index {key} outside 0..{len(layers) - 1}")
                picked.add(key)
            else:
                hits = [layer.index for layer in layers if _matches(layer, key)]
                if not hits:
                    raise ValueError(f"no cross-attention layer is named {key!r}")
                picked.update(hits)
        chosen = [layer for layer in layers if layer.index in picked]
    if downsampling is not None:
        chosen = [layer for layer in chosen if layer.downsampling == downsampling]
    if not chosen:
        raise ValueError("the layer selection is empty")
    return chosen


def describe_layers(unet: nn.Module, latent_hw: int | tuple[int, int]) -> list[tuple[int, str, tuple[int, int]]]:
    """(index, name, (h, w)) of every cross-attention layer for a latent of the given size."""
    return [(layer.index, layer.name, layer.resolution(latent_hw)) for layer in cross_attention_layers(unet)]
