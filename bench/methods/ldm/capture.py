"""Hooks that hand the cross-attention probabilities of chosen layers to sinks.

Only the chosen modules are touched, per instance: a diffusers `Attention` gets its own processor
through `set_processor`, a MONAI `CrossAttentionBlock` gets an instance-level `forward`. Every other
attention keeps its default (fused SDPA) path, and so do the chosen ones on steps that are not read.
On a read step the hooked layer computes softmax(Q K^T * scale) explicitly, gives it to the sinks and
uses the same probabilities for its output, so the U-Net output is that of the default path.
Probabilities are never stored here: a sink reduces them and lets them go.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from .layers import CrossAttentionLayer
from .precision import attention_probs
from .steps import StepInfo


@dataclass(frozen=True)
class AttentionEvent:
    """The probabilities of one hooked layer in one U-Net call.

    `probs` has shape (rows * heads, height * width, tokens) and is batch-major: row r, head k is at
    r * heads + k (the layout of diffusers' head_to_batch_dim). Query positions are row-major over
    (height, width). Rows follow `step.layout`.
    """

    layer: CrossAttentionLayer
    step: StepInfo
    probs: torch.Tensor
    heads: int
    height: int
    width: int

    def per_head(self) -> torch.Tensor:
        """(rows, heads, height, width, tokens) view of `probs`."""
        rows = self.probs.shape[0] // self.heads
        return self.probs.view(rows, self.heads, self.height, self.width, self.probs.shape[-1])


Sink = Callable[[AttentionEvent], None]


def _grid(latent_hw: tuple[int, int], downsampling: int, positions: int) -> tuple[int, int]:
    h, w = math.ceil(latent_hw[0] / downsampling), math.ceil(latent_hw[1] / downsampling)
    if h * w != positions:
        raise RuntimeError(f"{positions} query positions do not form the expected {h}x{w} grid")
    return h, w


class CrossAttentionCapture:
    """Install capture hooks on `layers` of `unet` for the duration of a `with` block.

    Inside the block, `reading(step)` marks the U-Net calls whose probabilities the sinks receive;
    outside it the hooked layers run their default path. `dtype` is the precision of the logits and
    softmax (float32 as Vilouras and Dombrowski; None keeps the model's dtype), with autocast off for
    them; `autocast_dtype` instead computes them as diffusers does under autocast at that dtype
    (Nützel: float16 probabilities, see `precision.attention_probs`).
    """

    def __init__(self, unet: nn.Module, layers: Sequence[CrossAttentionLayer], sinks: Sequence[Sink],
                 dtype: torch.dtype | None = torch.float32, autocast_dtype: torch.dtype | None = None) -> None:
        if not layers:
            raise ValueError("capture needs at least one layer")
        self.unet = unet
        self.layers = list(layers)
        self.sinks = list(sinks)
        self.dtype = dtype
        self.autocast_dtype = autocast_dtype
        self.step: StepInfo | None = None
        self._latent_hw: tuple[int, int] | None = None
        self._undo: list[Callable[[], None]] = []

    @property
    def is_reading(self) -> bool:
        return self.step is not None

    @contextmanager
    def reading(self, step: StepInfo) -> Iterator[None]:
        """Hand the probabilities of the U-Net calls inside this block to the sinks, tagged with `step`."""
        if not self._undo:
            raise RuntimeError("enter the capture (`with CrossAttentionCapture(...)`) before reading")
        self.step = step
        try:
            yield
        finally:
            self.step = None

    def __enter__(self) -> "CrossAttentionCapture":
        if self._undo:
            raise RuntimeError("capture is already installed")
        try:
            handle = self.unet.register_forward_pre_hook(self._record_latent_size, with_kwargs=True)
            self._undo.append(handle.remove)
            for layer in self.layers:
                self._undo.append(self._install(layer))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        while self._undo:
            self._undo.pop()()
        self.step = None

    def _record_latent_size(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        sample = args[0] if args else kwargs.get("sample", kwargs.get("x"))
        self._latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))

    def _emit(self, layer: CrossAttentionLayer, probs: torch.Tensor) -> None:
        """probs: (rows, heads, positions, tokens)."""
        if self._latent_hw is None:
            raise RuntimeError("hooked layer ran outside a U-Net forward call")
        rows, heads, positions, tokens = probs.shape
        h, w = _grid(self._latent_hw, layer.downsampling, positions)
        event = AttentionEvent(layer, self.step, probs.reshape(rows * heads, positions, tokens), heads, h, w)
        for sink in self.sinks:
            sink(event)

    def _install(self, layer: CrossAttentionLayer) -> Callable[[], None]:
        from diffusers.models.attention_processor import Attention
        from monai.networks.blocks.crossattention import CrossAttentionBlock

        if isinstance(layer.module, Attention):
            return self._install_diffusers(layer)
        if isinstance(layer.module, CrossAttentionBlock):
            return self._install_monai(layer)
        raise TypeError(f"cannot hook {type(layer.module).__name__} at {layer.name}")

    def _install_diffusers(self, layer: CrossAttentionLayer) -> Callable[[], None]:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

        module = layer.module
        default = module.processor
        if not isinstance(default, (AttnProcessor, AttnProcessor2_0)):
            raise TypeError(f"{layer.name} uses {type(default).__name__}; capture reproduces only the "
                            "default AttnProcessor / AttnProcessor2_0 (call unet.set_default_attn_processor())")
        module.set_processor(_DiffusersCaptureProcessor(self, layer, default))
        return lambda: module.set_processor(default)

    def _install_monai(self, layer: CrossAttentionLayer) -> Callable[[], None]:
        module = layer.module
        if module.rel_positional_embedding is not None or module.causal:
            raise TypeError(f"{layer.name}: relative position embeddings and causal masks are not supported")
        if "forward" in module.__dict__:
            raise RuntimeError(f"{layer.name} already has an instance-level forward (hooked twice?)")
        default = type(module).forward.__get__(module)
        module.forward = _MonaiCaptureForward(self, layer, default)
        return lambda: module.__dict__.pop("forward", None)


class _DiffusersCaptureProcessor:
    """The default processor's computation with an explicit softmax on read steps."""

    def __init__(self, capture: CrossAttentionCapture, layer: CrossAttentionLayer, default: Callable) -> None:
        self.capture = capture
        self.layer = layer
        self.default = default

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None,
                 *args, **kwargs) -> torch.Tensor:
        if not self.capture.is_reading:
            return self.default(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (
            hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        )
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
            attention_mask = attention_mask.view(batch_size, attn.heads, -1, attention_mask.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        probs = attention_probs(query, key, attn.scale, attention_mask, self.capture.dtype, self.capture.autocast_dtype)
        self.capture._emit(self.layer, probs)
        hidden_states = torch.matmul(probs.to(value.dtype), value)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


class _MonaiCaptureForward:
    """`CrossAttentionBlock.forward` with an explicit softmax on read steps (instance-level)."""

    def __init__(self, capture: CrossAttentionCapture, layer: CrossAttentionLayer, default: Callable) -> None:
        self.capture = capture
        self.layer = layer
        self.default = default

    def __call__(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if not self.capture.is_reading:
            return self.default(x, context)
        block = self.layer.module
        batch, positions, _ = x.shape
        heads, head_dim = block.num_heads, block.head_dim
        kv = context if context is not None else x

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], heads, head_dim).transpose(1, 2)

        q, k, v = split(block.to_q(x)), split(block.to_k(kv)), split(block.to_v(kv))
        dtype = self.capture.dtype if self.capture.dtype is not None else block.attention_dtype
        probs = attention_probs(q, k, block.scale, None, dtype, self.capture.autocast_dtype)
        self.capture._emit(self.layer, probs)
        out = torch.matmul(block.drop_weights(probs).to(v.dtype), v)
        out = out.transpose(1, 2).reshape(batch, positions, heads * head_dim)
        return block.drop_output(block.out_proj(out))
