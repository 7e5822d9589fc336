"""The arithmetic precision a diffusion method runs its U-Net and text encoder in (`params.precision`).

- `fp32`: everything in float32 (Vilouras et al., Dombrowski et al. as published).
- `fp16` / `bf16`: the U-Net and the text encoder run under `torch.autocast` at that dtype (Nützel et al.
  run their pipeline under `torch.autocast("cuda")`, float16). The autoencoder, the noise schedule
  arithmetic and the aggregation of the maps stay in float32 / float64.

Where the captured attention probabilities are computed (`params.attention_precision`):

- `fp32`: logits and softmax in float32 with autocast switched off for them (as the SD-2 code of
  Dombrowski et al. with `ATTN_PRECISION=fp32`); the layer's output uses the same probabilities.
- `autocast`: as diffusers' `get_attention_scores` runs under CUDA autocast (Nützel et al.): the scaled
  logits from one `baddbmm` at the autocast dtype, softmax in float32, the probabilities rounded to
  the autocast dtype, which is what the sinks receive.

`BATCH_ATOL` is the largest difference, after the method's min-max, between a sample's map computed in
a batch and alone, that a precision allows: reduced-precision matmuls may take other kernels (other
summation orders) for other batch shapes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from ...core.errors import BenchError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PRECISIONS = tuple(DTYPES)
ATTENTION_PRECISIONS = ("fp32", "autocast")
#: max abs difference of a min-max map between a batch and one sample at a time (tests/test_precision.py)
BATCH_ATOL = {"fp32": 1e-5, "fp16": 2e-2, "bf16": 5e-2}


@dataclass(frozen=True)
class Precision:
    """A method's precision: `name` in PRECISIONS, `attention` in ATTENTION_PRECISIONS."""

    name: str = "fp32"
    attention: str = "fp32"

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        return self.name != "fp32"

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The autocast region of the U-Net and text encoder calls (nothing at fp32)."""
        if not self.reduced:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def check(self, device: torch.device) -> None:
        """BenchError in one line when `device` cannot autocast to this precision."""
        if not self.reduced:
            return
        if not torch.amp.is_autocast_available(device.type):
            raise BenchError(f"--precision {self.name}: torch {torch.__version__} has no autocast on {device.type}")
        try:
            with torch.autocast(device_type=device.type, dtype=self.dtype):
                a = torch.ones(2, 2, device=device)
                torch.nn.functional.linear(a, a).softmax(-1).sum().item()
        except (RuntimeError, TypeError, ValueError) as exc:
            raise BenchError(f"--precision {self.name}: not supported on {device.type} by torch "
                             f"{torch.__version__} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                             ) from None

    def record(self) -> dict:
        """For run.json (`provenance.precision`)."""
        return {"precision": self.name, "attention_precision": self.attention,
                "autocast": [] if not self.reduced else ["unet", "text_encoder"],
                "float32": ["autoencoder", "schedule", "aggregation"] + ([] if self.reduced else ["unet", "text_encoder"])}


def attention_probs(q: torch.Tensor, k: torch.Tensor, scale: float, mask: torch.Tensor | None,
                    dtype: torch.dtype | None, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """softmax(q k^T * scale [+ additive mask]) over the last axis, q and k (..., positions, dim).

    `autocast_dtype` None: computed in `dtype` (None: q's dtype) with autocast off. Else as diffusers
    computes it under CUDA autocast: logits by `baddbmm` at `autocast_dtype`, softmax in float32,
    probabilities rounded to `autocast_dtype`.
    """
    if autocast_dtype is not None:
        lead = q.shape[:-2]
        q3 = q.reshape(-1, *q.shape[-2:]).to(autocast_dtype)
        k3 = k.reshape(-1, *k.shape[-2:]).to(autocast_dtype)
        with torch.autocast(device_type=q.device.type, enabled=False):
            base = torch.empty(q3.shape[0], q3.shape[1], k3.shape[1], dtype=autocast_dtype, device=q.device)
            scores = torch.baddbmm(base, q3, k3.transpose(-1, -2), beta=0, alpha=scale)
            scores = scores.reshape(*lead, *scores.shape[-2:])
            if mask is not None:
                scores = scores + mask.to(scores.dtype)
            return scores.float().softmax(dim=-1).to(autocast_dtype)
    with torch.autocast(device_type=q.device.type, enabled=False):
        if dtype is not None:
            q, k = q.to(dtype), k.to(dtype)
        scores = torch.matmul(q, k.transpose(-1, -2)) * scale
        if mask is not None:
            scores = scores + mask.to(scores.dtype)
        return scores.softmax(dim=-1)


__all__ = ["ATTENTION_PRECISIONS", "BATCH_ATOL", "DTYPES", "PRECISIONS", "Precision",
           "attention_probs"]
