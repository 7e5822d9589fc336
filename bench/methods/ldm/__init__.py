"""Cross-attention heatmaps from latent diffusion U-Nets (diffusers and MONAI).

`layers` lists and selects cross-attention layers, `capture` hooks them, `aggregate` reduces what
they see into one map per sample while the loops of `process` drive the U-Net, with the schedule
arithmetic of `schedule`.
"""

from .aggregate import AttentionAggregator, BbmProduct, MapStore, TokenSelection, token_maps, upsample_nearest
from .capture import AttentionEvent, CrossAttentionCapture
from .layers import CrossAttentionLayer, cross_attention_layers, describe_layers, select_layers
from .process import (
    Conditioning,
    ProcessResult,
    UNetRunner,
    invert,
    noise_gt,
    randn_per_sample,
    sample,
    sample_generators,
)
from .schedule import NoiseSchedule, scheduler_timesteps, trailing_timesteps
from .steps import BatchLayout, StepInfo, StepSelection

__all__ = [
    "AttentionAggregator",
    "AttentionEvent",
    "BatchLayout",
    "BbmProduct",
    "Conditioning",
    "CrossAttentionCapture",
    "CrossAttentionLayer",
    "MapStore",
    "NoiseSchedule",
    "ProcessResult",
    "StepInfo",
    "StepSelection",
    "TokenSelection",
    "UNetRunner",
    "cross_attention_layers",
    "describe_layers",
    "invert",
    "noise_gt",
    "randn_per_sample",
    "sample",
    "sample_generators",
    "scheduler_timesteps",
    "select_layers",
    "token_maps",
    "trailing_timesteps",
    "upsample_nearest",
]
