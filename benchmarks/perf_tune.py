"""Cost of one location-codebook tuning step (`bench tune anatomy`) on random-weight MONAI U-Nets.

One tuning step at batch 1: for each read step, a U-Net forward with the gradient kept, the four
16x16-class cross-attention layers read through the capture engine, the diversity and
localisation losses (eqs. 2-4) and the backward pass to the text context, as `CodebookTuner.step`
runs them (the text encoder's own forward and backward, a small share, are left out). Printed: the
median wall time per step, the time per read step, and the peak memory of one step above the level
before it (CUDA: torch.cuda.max_memory_allocated; CPU: peak resident set size sampled every
millisecond). U-Nets: the tiny MONAI configuration of perf_ldm.py and the real-size MONAI CXR LDM
one, random weights, fp32, the real 64x64 latent and 77 x 1024 context. Real-size on a CPU is slow:
one step of one read step by default there.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time

import torch
from perf_ldm import _rss_bytes, _trim_heap, build_unet, context_dim, latent_channels, table

from bench.methods.ldm import CrossAttentionCapture, cross_attention_layers, select_layers
from bench.methods.ldm.anatomy.tune import diversity_loss, localisation_loss
from bench.methods.ldm.process import UNetRunner
from bench.methods.ldm.steps import BatchLayout, StepInfo

ARCH = "monai_cxr_ldm"
LATENT = 64
TOKENS = 77
READ = [3, 4, 6, 7]  # Vilouras' layer indices (down 2.1, middle, up 0.1, up 0.2 on the real U-Net)


class Step:
    """One tuning step of `read_steps` U-Net calls on a fixed latent and a trainable context."""

    def __init__(self, size: str, device: str) -> None:
        self.device = device
        self.unet = build_unet(ARCH, size, device)
        layers = cross_attention_layers(self.unet)
        try:
            self.layers = select_layers(layers, READ)
        except ValueError:  # the tiny U-Net has fewer layers: read them all
            self.layers = layers
        self.runner = UNetRunner(self.unet)
        g = torch.Generator().manual_seed(0)
        self.latent = torch.randn(1, latent_channels(ARCH), LATENT, LATENT, generator=g).to(device)
        self.context = torch.randn(1, TOKENS, context_dim(ARCH, size), generator=g).to(device)
        self.positions = [1, 2, 3]  # a location token and a two-token pathology

    def run(self, read_steps: int) -> None:
        leaf = self.context.clone().requires_grad_(True)
        events = []
        with CrossAttentionCapture(self.unet, self.layers, [events.append]) as capture:
            for i in range(read_steps):
                t = 300 + 10 * i
                with torch.enable_grad(), capture.reading(StepInfo(i, t, 100, BatchLayout(1, ("cond",)))):
                    self.runner(self.latent, t, leaf)
                    loss = 0.0
                    for e in events:
                        a = e.per_head().mean(dim=1)[0].reshape(e.height * e.width, -1)[:, self.positions]
                        gaussian = torch.exp(-torch.linspace(-3, 3, e.height * e.width, device=a.device) ** 2)
                        loss = loss + diversity_loss(a) + localisation_loss(a, gaussian, 0.1, 1e-5)
                    events.clear()
                    (loss / (read_steps * len(self.layers))).backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(step: Step, read_steps: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step.run(read_steps)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak(step: Step, read_steps: int) -> int:
    gc.collect()
    _trim_heap()
    if step.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step.run(read_steps)
        return torch.cuda.max_memory_allocated() - base
    base = _rss_bytes()
    top = [base]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            top[0] = max(top[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    step.run(read_steps)
    done.set()
    thread.join()
    return max(top[0], _rss_bytes()) - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,real", help="tiny, real or both [tiny,real]")
    parser.add_argument("--read-steps", type=int, default=None, help="read steps per tuning step [tiny 30; real: 1 on cpu, 30 on cuda]")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps [tiny 3; real: 1 on cpu, 3 on cuda]")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    rows = []
    for size in [s for s in ("tiny", "real") if s in args.sizes.split(",")]:
        slow = size == "real" and not cuda
        read_steps = args.read_steps or (1 if slow else 30)
        repeats = args.repeats or (1 if slow else 3)
        step = Step(size, device)
        step.run(1)  # warm-up
        seconds = timed(step, read_steps, repeats)
        memory = peak(step, read_steps)
        rows.append([size, str(len(step.layers)), str(read_steps), f"{seconds:.3f}", f"{seconds / read_steps:.3f}",
                     f"{memory / 2 ** 20:.1f}"])
        print(f"{size}: {seconds:.3f} s per tuning step of {read_steps} read steps, peak {memory / 2 ** 20:.1f} MiB",
              flush=True)
        del step
    table(f"Tuning step (batch 1, {device}, random-weight MONAI U-Nets)",
          ["U-Net", "layers read", "read steps", "s / step", "s / read step", "peak MiB"], rows)


if __name__ == "__main__":
    main()
