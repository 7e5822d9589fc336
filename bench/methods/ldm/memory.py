"""How many samples a batch can hold on a CUDA device, known before the run (`--batch-size auto`).

The memory a batch needs above the loaded models is measured, not guessed: one probe of the heaviest
work of a batch (autoencoder encoding, one U-Net call with both guidance halves and the capture
reading every hooked layer) at batch 1 and at batch 2, under the run's precision. Memory grows
linearly with the batch, so the two peaks give a fixed part and a part per sample, and the free
memory (less a `RESERVE` share for the allocator's fragmentation and the aggregation buffers) gives
the largest batch that fits. A size that does not fit is refused before any sample, in one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ...core.errors import BenchError

#: share of the free memory left unplanned
RESERVE = 0.15
GIB = 1024 ** 3


@dataclass(frozen=True)
class BatchMemory:
    """Measured peaks (bytes above what was allocated before): `fixed` + `per_sample` x batch."""

    fixed: int
    per_sample: int
    free: int

    @property
    def fits(self) -> int:
        """The largest batch whose estimate stays within the free memory less `RESERVE` (0: none)."""
        usable = self.free * (1 - RESERVE) - self.fixed
        return max(0, math.floor(usable / max(self.per_sample, 1)))

    def needed(self, batch: int) -> int:
        return self.fixed + self.per_sample * batch


def measure(peak_of: Callable[[int], int], free: int) -> BatchMemory:
    """BatchMemory from `peak_of(batch)` (peak bytes of one probe) at batches 1 and 2 and `free` bytes."""
    one, two = peak_of(1), peak_of(2)
    per_sample = max(two - one, 1)
    return BatchMemory(fixed=max(one - per_sample, 0), per_sample=per_sample, free=free)


def fitting_batch(memory: BatchMemory, device: str) -> int:
    """`memory.fits`, or BenchError when not even one sample fits."""
    if memory.fits < 1:
        raise BenchError(f"one sample needs about {memory.needed(1) / GIB:.1f} GiB on {device}, "
                         f"{memory.free / GIB:.1f} GiB are free: free memory or use a smaller precision")
    return memory.fits


def cuda_free(device: torch.device) -> int:
    """Free bytes on a CUDA device, as the driver reports them."""
    return int(torch.cuda.mem_get_info(device)[0])


def cuda_peak(device: torch.device, probe: Callable[[], None]) -> int:
    """Peak bytes allocated above the current allocation while `probe()` runs."""
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    torch.cuda.empty_cache()
    return int(peak)


__all__ = ["BatchMemory", "GIB", "RESERVE", "cuda_free", "cuda_peak", "fitting_batch", "measure"]
