"""Cost of the diffusion methods: U-Net evaluations, capture overhead, memory, on random-weight U-Nets.

Three tables, for each method configuration of adapters/ (ldm_frozen, cxrbert_ldm, cxrbert_ldm+bbm,
clip_ldm):

1. U-Net sample-evaluations per sample over the full schedules (a counting stand-in for the U-Net):
   the engine run as the published codes run them (`as_coded`) against the published counts
   (668, 100, 200, 50), and the engine's own minimal loops against the reference's minimal
   faithful counts.
2. Capture overhead: the method's loop on the same steps with the cross-attention capture and its
   aggregation, and without (plain U-Net forwards of the same batch halves), alternated in one run;
   printed as the ratio of median wall times (target: under 1.15).
3. Peak memory per sample (batch 1) of the capturing loop at 10 and at 50 read steps (target: the
   same, since maps are aggregated as they stream). On CUDA: torch.cuda.max_memory_allocated above
   the allocation before the loop. On the CPU: peak resident set size above the one before the loop,
   sampled every millisecond in a fresh process per measurement (so freed memory of an earlier
   measurement cannot hide a peak), with glibc's mmap threshold fixed (otherwise heap fragmentation,
   not live memory, sets the peak); on the CPU only the tiny U-Nets are measured unless --real-memory.

4. Precision and batch: seconds per sample and peak memory of the capturing loop at fp32 and bf16
   (and fp16 on CUDA, or with --precisions), batch 1 against batch 8, with the U-Net under autocast
   and the capture at each method's spec `attention_precision`. Seconds per sample are projected to the
   method's whole engine loop (seconds per U-Net sample-evaluation x the engine's minimal count) and,
   for `--device cuda`, to all of MS-CXR (1,162 pairs); with `--device cuda` the table is also
   written to benchmarks/results/perf_ldm_<gpu>.md with the machine named. On the CPU memory is
   the peak RSS above the level before the loop in the same process (a lower bound); on CUDA
   torch.cuda.max_memory_allocated above the allocation before the loop.

U-Nets: tiny ones (a few layers, the real 64x64 latent and 77 tokens) and real-size ones (the SD-1.5
and SD-2 UNet2DConditionModel configurations and the MONAI CXR LDM one from bench/methods/ldm_config,
or the same numbers built in here when that folder is absent), all with random weights, fp32 unless table 4 says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.methods.ldm import (
    AttentionAggregator,
    Conditioning,
    CrossAttentionCapture,
    NoiseSchedule,
    StepSelection,
    UNetRunner,
    cross_attention_layers,
    invert,
    noise_gt,
    sample,
    sample_generators,
    scheduler_timesteps,
    select_layers,
    trailing_timesteps,
)
from bench.methods.ldm.loading import monai_unet, use_fused_attention

CONFIG_DIR = Path(__file__).resolve().parents[1] / "bench" / "methods" / "ldm_config"
LATENT = 64
TOKENS = 77
READ_TOKENS = [[1, 2, 3, 4, 5]]  # a five-token phrase


@dataclass(frozen=True)
class MethodConfig:
    """What drives the cost of one published method (mirrors its adapters/*.toml)."""

    name: str
    arch: str  # monai_cxr_ldm, sd15, sd2_base
    process: str  # invert or noise_gt
    schedule_steps: int
    read: str  # loop indices "a:b" or the last n "-n:"
    guidance: float
    grid: int
    layers: tuple[str, ...]
    per_map_minmax: bool
    bbm: bool
    published: int
    faithful: int  # the reference's minimal faithful count


DEFAULT_METHODS = [
    MethodConfig("ldm_frozen", "monai_cxr_ldm", "invert", 300, "120:180", 0.0, 16,
                 ("down_blocks.2.attentions.1", "middle_block.attention", "up_blocks.0.attentions.1",
                  "up_blocks.0.attentions.2"), True, False, 668, 360),
    MethodConfig("cxrbert_ldm", "sd15", "noise_gt", 50, "-40:", 16.0, 64, (), False, False, 100, 40),
    MethodConfig("cxrbert_ldm+bbm", "sd15", "noise_gt", 50, "-40:", 16.0, 64, (), False, True, 200, 150),
    MethodConfig("clip_ldm", "sd2_base", "noise_gt", 50, "-40:", 1.0, 64, (), False, False, 50, 40),
]


def methods_from_specs() -> list[MethodConfig]:
    """The configurations above, with the fields the adapter specs hold taken from them when present."""
    out = []
    for m in DEFAULT_METHODS:
        try:
            from bench.methods.specs import load_method_spec

            p = load_method_spec(m.name)["params"]
        except Exception:  # the spec is not there: keep the published configuration
            out.append(m)
            continue
        out.append(MethodConfig(
            m.name, p.get("architecture", m.arch), p.get("process", m.process),
            int(p.get("num_inference_steps", m.schedule_steps)), str(p.get("steps", m.read)),
            float(p.get("guidance_scale", m.guidance)), int(p.get("grid", m.grid)),
            tuple(p.get("layers", m.layers)), bool(p.get("per_map_minmax", m.per_map_minmax)), m.bbm,
            m.published, m.faithful))
    return out


def parse_read(text: str) -> StepSelection:
    """"a:b" -> loop indices a..b-1; "-n:" -> the last n steps."""
    start, _, stop = text.partition(":")
    if start.startswith("-") and not stop:
        return StepSelection.last_n(-int(start))
    return StepSelection.at_indices(range(int(start), int(stop)))


# ---------------------------------------------------------------- models and schedules

TINY = {
    "monai_cxr_ldm": {"spatial_dims": 2, "in_channels": 3, "out_channels": 3, "channels": [16, 32, 32],
                      "num_res_blocks": 1, "attention_levels": [False, True, True], "with_conditioning": True,
                      "cross_attention_dim": 1024, "num_head_channels": [0, 32, 32], "norm_num_groups": 8},
    "sd15": {"block_out_channels": [32, 64], "layers_per_block": 1, "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
             "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": [2, 4],
             "norm_num_groups": 8, "sample_size": LATENT},
    "sd2_base": {"block_out_channels": [32, 64], "layers_per_block": 1, "cross_attention_dim": 1024,
                 "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
                 "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "attention_head_dim": [2, 4],
                 "norm_num_groups": 8, "sample_size": LATENT, "use_linear_projection": True},
}
REAL = {  # used when bench/methods/ldm_config is absent (numbers of the published configurations)
    "monai_cxr_ldm": {"spatial_dims": 2, "in_channels": 3, "out_channels": 3, "channels": [256, 512, 768],
                      "num_res_blocks": 2, "attention_levels": [False, True, True], "with_conditioning": True,
                      "cross_attention_dim": 1024, "num_head_channels": [0, 512, 768]},
    "sd15": {"cross_attention_dim": 768, "sample_size": LATENT},
    "sd2_base": {"cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True,
                 "sample_size": LATENT},
}
REAL_FILES = {"monai_cxr_ldm": "monai_cxr_ldm/unet.json", "sd15": "sd15/unet/config.json",
              "sd2_base": "sd2_base/unet/config.json"}


def unet_config(arch: str, size: str) -> tuple[dict, str]:
    """(config, where it came from) of a tiny or real-size U-Net."""
    if size == "tiny":
        return TINY[arch], "tiny"
    path = CONFIG_DIR / REAL_FILES[arch]
    if path.is_file():
        return json.loads(path.read_text()), str(path.relative_to(CONFIG_DIR.parents[2]))
    return REAL[arch], "built-in"


def build_unet(arch: str, size: str, device: str) -> torch.nn.Module:
    """A random-weight U-Net with the attention set-up the methods run with (fused SDPA everywhere)."""
    config, _ = unet_config(arch, size)
    torch.manual_seed(0)
    if arch == "monai_cxr_ldm":
        unet = monai_unet(config)
    else:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_config({k: v for k, v in config.items() if not k.startswith("_")})
        use_fused_attention(unet)
    return unet.to(device).eval().requires_grad_(False)


def latent_channels(arch: str) -> int:
    return 3 if arch == "monai_cxr_ldm" else 4


def context_dim(arch: str, size: str) -> int:
    return int(unet_config(arch, size)[0].get("cross_attention_dim", 1280))


def noise_schedule(arch: str) -> NoiseSchedule:
    from diffusers import DDIMScheduler

    if arch == "monai_cxr_ldm":
        s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.0015,
                          beta_end=0.0205, prediction_type="v_prediction", clip_sample=False)
    else:
        s = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                          beta_end=0.012, steps_offset=1, set_alpha_to_one=False, clip_sample=False)
    return NoiseSchedule.from_scheduler(s)


def full_timesteps(m: MethodConfig) -> list[int]:
    """The loop's timesteps in loop order (inversion ascending, the others descending)."""
    if m.process == "invert":
        return trailing_timesteps(1000, m.schedule_steps)[::-1]
    from diffusers import DDIMScheduler

    return scheduler_timesteps(DDIMScheduler(num_train_timesteps=1000, steps_offset=1), m.schedule_steps)


def window(m: MethodConfig, steps: int) -> list[int]:
    """`steps` consecutive timesteps the method reads (from the start of its read window)."""
    full = full_timesteps(m)
    first = parse_read(m.read).resolve(full)[0]
    if m.process == "invert":
        return full[first:first + steps]
    return full[-steps:] if steps <= len(full) else full


# ---------------------------------------------------------------- 1. evaluations per sample

def count_evals(m: MethodConfig, as_coded: bool) -> float:
    """Sample-evaluations per sample over the full schedule, the U-Net replaced by a counter."""
    runner = UNetRunner(lambda latents, t, context: torch.zeros_like(latents))
    schedule = noise_schedule(m.arch)
    cond = Conditioning(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    shape = (latent_channels(m.arch), 4, 4)
    z0 = torch.zeros(1, *shape)
    full = full_timesteps(m)
    if m.process == "invert":
        invert(runner, schedule, z0, cond, full, parse_read(m.read), guidance=m.guidance, as_coded=as_coded)
    elif not m.bbm:
        noise_gt(runner, schedule, z0, cond, full, parse_read(m.read), sample_generators([0]),
                 guidance=m.guidance, as_coded=as_coded)
    else:  # pass 1 reads every step (image bias, product), pass 2 samples with CFG and reads every step
        noise_gt(runner, schedule, z0, cond, full, StepSelection.every(), sample_generators([0]),
                 guidance=m.guidance, as_coded=as_coded)
        sample(runner, schedule, shape, cond, full, StepSelection.every(), sample_generators([0]),
               guidance=m.guidance, as_coded=as_coded)
    return runner.sample_evals


# ---------------------------------------------------------------- 2/3. the method's loop on a U-Net

class Setup:
    """A U-Net with the inputs and layers one method configuration needs."""

    def __init__(self, m: MethodConfig, unet: torch.nn.Module, size: str, device: str) -> None:
        self.m, self.unet, self.device = m, unet, device
        g = torch.Generator().manual_seed(0)
        dim = context_dim(m.arch, size)
        self.cond = Conditioning(torch.randn(1, TOKENS, dim, generator=g).to(device),
                                 torch.randn(1, TOKENS, dim, generator=g).to(device))
        self.shape = (latent_channels(m.arch), LATENT, LATENT)
        self.z0 = torch.randn(1, *self.shape, generator=g).to(device)
        self.schedule = noise_schedule(m.arch)
        every = cross_attention_layers(unet)
        try:
            self.layers = select_layers(every, list(m.layers) or None)
        except ValueError:  # a tiny U-Net lacks the named layers: take those at the method's grid
            self.layers = select_layers(every, None, downsampling=LATENT // m.grid)

    def _sinks(self, m: MethodConfig) -> list:
        return [AttentionAggregator(1, READ_TOKENS, per_map_minmax=m.per_map_minmax, grid=m.grid)]

    def run(self, steps: int, capture: bool) -> float:
        """Seconds for the method's loop over `steps` read steps, with or without capture."""
        m, runner = self.m, UNetRunner(self.unet)
        timesteps = window(m, steps)
        every = StepSelection.every()

        def hooks(sinks: list):
            return CrossAttentionCapture(self.unet, self.layers, sinks) if capture else nullcontext()

        sync()
        start = time.perf_counter()
        with torch.no_grad():
            if m.bbm:
                from bench.methods.ldm.bbm import BbmCollector

                bbm = BbmCollector(1, READ_TOKENS, grid=m.grid)
                with hooks(bbm.pass1_sinks) as cap:
                    noise_gt(runner, self.schedule, self.z0, self.cond, timesteps, every,
                             sample_generators([0], self.device), capture=cap, guidance=m.guidance)
                with hooks(bbm.pass2_sinks) as cap:
                    sample(runner, self.schedule, self.shape, self.cond, timesteps, every,
                           sample_generators([1], self.device), capture=cap, guidance=m.guidance)
                if capture:
                    bbm.maps()
            else:
                sinks = self._sinks(m)
                with hooks(sinks) as cap:
                    if m.process == "invert":
                        invert(runner, self.schedule, self.z0, self.cond, timesteps, every, capture=cap,
                               guidance=m.guidance)
                    else:
                        noise_gt(runner, self.schedule, self.z0, self.cond, timesteps, every,
                                 sample_generators([0], self.device), capture=cap, guidance=m.guidance)
                if capture:
                    sinks[0].result()
        sync()
        return time.perf_counter() - start


def precision_loop(setup: Setup, steps: int, batch: int, precision: str) -> tuple[float, int, int]:
    """(seconds, U-Net sample-evaluations, peak bytes) of the method's capturing loop over `steps` read
    steps for `batch` samples at `precision` (autocast of the U-Net; attention as the method's spec)."""
    from bench.methods.ldm.precision import Precision

    m = setup.m
    attention = spec_attention(m.name)
    p = Precision(precision, attention)
    device = torch.device(setup.device)
    runner = UNetRunner(setup.unet, lambda: p.autocast(device))
    kwargs = {"dtype": None, "autocast_dtype": p.dtype} if attention == "autocast" and p.reduced else {}
    cond = Conditioning(setup.cond.cond.expand(batch, -1, -1).contiguous(), setup.cond.uncond)
    z0 = setup.z0.expand(batch, -1, -1, -1).contiguous()
    timesteps = window(m, steps)
    every = StepSelection.every()
    sinks = [AttentionAggregator(batch, READ_TOKENS * batch, per_map_minmax=m.per_map_minmax, grid=m.grid)]
    gc.collect()
    _trim_heap()
    cuda = setup.device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    with contextlib.nullcontext() if cuda else _PeakRss() as rss:
        sync()
        start = time.perf_counter()
        with torch.no_grad(), CrossAttentionCapture(setup.unet, setup.layers, sinks, **kwargs) as cap:
            if m.process == "invert":
                invert(runner, setup.schedule, z0, cond, timesteps, every, capture=cap, guidance=m.guidance)
            else:
                noise_gt(runner, setup.schedule, z0, cond, timesteps, every,
                         sample_generators(list(range(batch)), setup.device), capture=cap, guidance=m.guidance)
            sinks[0].result()
        sync()
        seconds = time.perf_counter() - start
    used = torch.cuda.max_memory_allocated() - base if cuda else rss.used
    return seconds, runner.sample_evals, used


def spec_attention(name: str) -> str:
    """The method spec's `attention_precision` (fp32 when the spec or the field is absent)."""
    try:
        from bench.methods.specs import load_method_spec

        return str(load_method_spec(name.removesuffix("+bbm"))["params"].get("attention_precision", "fp32"))
    except Exception:
        return "fp32"


def machine_name(device: str) -> str:
    """The GPU's name (CUDA) or the CPU's model name, for the results file."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return "cpu"


MS_CXR_SAMPLES = 1162  # image-phrase pairs of MS-CXR (Boecking et al. 2022)


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def overhead(setup: Setup, steps: int, repeats: int, warm_up: bool) -> tuple[float, float]:
    """(median plain seconds, median capture seconds), the two alternated (after one warm-up each)."""
    if warm_up:
        setup.run(1, False)
        setup.run(1, True)
    plain, hooked = [], []
    for i in range(repeats):
        order = (False, True) if i % 2 == 0 else (True, False)
        for capture in order:
            (hooked if capture else plain).append(setup.run(steps, capture))
    return statistics.median(plain), statistics.median(hooked)


def _trim_heap() -> None:
    """Hand freed heap pages back to the system (glibc), so the pre-loop RSS is a steady baseline."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

class _PeakRss:
    """The process's resident memory above its level at start, polled every millisecond in a thread."""

    def __enter__(self) -> "_PeakRss":
        self.base = _rss_bytes()
        self.peak = self.base
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.used = max(self.peak, _rss_bytes()) - self.base



def peak_memory(setup: Setup, steps: int) -> int:
    """Bytes above the pre-loop level at the peak of one capturing loop of `steps` read steps."""
    setup.run(1, True)  # warm-up: lazily created buffers and thread pools are not the loop's cost
    gc.collect()
    _trim_heap()
    if setup.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        setup.run(steps, True)
        return torch.cuda.max_memory_allocated() - base
    with _PeakRss() as rss:
        setup.run(steps, True)
    return rss.used


def memory_child(name: str, size: str, steps: int, device: str) -> None:
    """Entry point of a fresh process measuring one (method, size, steps): prints the bytes."""
    m = next(x for x in methods_from_specs() if x.name == name)
    setup = Setup(m, build_unet(m.arch, size, device), size, device)
    print(json.dumps({"bytes": peak_memory(setup, steps)}))


#: glibc raises its mmap threshold after the first large free, so later large temporaries come from the
#: heap, where the small maps a loop keeps pin their pages; a fixed threshold (and trim) hands every
#: freed large block back, so the RSS follows the memory that is live
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def memory_in_fresh_process(name: str, size: str, steps: int, device: str) -> int:
    cmd = [sys.executable, __file__, "--memory-child", f"{name},{size},{steps}", "--device", device]
    env = {**os.environ, **MALLOC_ENV}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return int(json.loads(out.strip().splitlines()[-1])["bytes"])


# ---------------------------------------------------------------- printing

def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))


def mib(n: int) -> str:
    return f"{n / 2**20:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny U-Nets only (same as --sizes tiny)")
    parser.add_argument("--sizes", default="tiny,real", help="U-Net sizes to time: tiny, real or both [tiny,real]")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=None, help="timed read steps per loop [tiny 2; real: 1 on cpu, 5 on cuda]")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions of each variant [tiny 3; real: 1 on cpu, 5 on cuda]")
    parser.add_argument("--real-memory", action="store_true", help="also measure memory of the real-size U-Nets on the cpu (slow: 60 forwards each)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of the method configurations")
    parser.add_argument("--precisions", default=None, help="table 4's precisions [fp32,bf16 on cpu; fp32,fp16,bf16 on cuda]")
    parser.add_argument("--batches", default="1,8", help="table 4's batch sizes [1,8]")
    parser.add_argument("--precision-sizes", default=None, help="table 4's U-Net sizes [tiny on cpu, real on cuda]")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        name, size, steps = args.memory_child.split(",")
        memory_child(name, size, int(steps), args.device)
        return

    cuda = args.device.startswith("cuda")
    methods = methods_from_specs()
    if args.methods:
        wanted = set(args.methods.split(","))
        methods = [m for m in methods if m.name in wanted]
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch 1, fp32, "
          f"latent {LATENT}x{LATENT}, {TOKENS} tokens, random weights")

    rows = []
    for m in methods:
        coded, minimal = count_evals(m, True), count_evals(m, False)
        rows.append([m.name, m.process + (" + sample" if m.bbm else ""), m.published, int(coded),
                     "yes" if coded == m.published else "NO", m.faithful, int(minimal)])
    table("U-Net sample-evaluations per sample (full schedules)",
          ["method", "process", "published", "engine as coded", "match", "reference minimal", "engine minimal"], rows)

    sizes = ["tiny"] if args.quick else [s for s in ("tiny", "real") if s in args.sizes.split(",")]
    timing_rows, memory_rows = [], []
    for size in sizes:
        slow = size == "real" and not cuda  # one cold forward per U-Net, then one timed loop of each variant
        steps = args.steps or (1 if slow else (2 if size == "tiny" else 5))
        repeats = args.repeats or (1 if slow else (3 if size == "tiny" else 5))
        built: dict[str, torch.nn.Module] = {}
        for m in methods:
            if m.arch not in built:
                built.clear()
                gc.collect()
                t = time.perf_counter()
                built[m.arch] = build_unet(m.arch, size, args.device)
                params = sum(p.numel() for p in built[m.arch].parameters()) / 1e6
                print(f"{size} {m.arch}: {params:.1f} M parameters from {unet_config(m.arch, size)[1]} "
                      f"(built in {time.perf_counter() - t:.0f} s)", flush=True)
                if slow:
                    Setup(m, built[m.arch], size, args.device).run(1, False)
            setup = Setup(m, built[m.arch], size, args.device)
            plain, hooked = overhead(setup, steps, repeats, warm_up=not slow)
            timing_rows.append([size, m.name, len(setup.layers), steps, repeats, f"{plain:.3f}", f"{hooked:.3f}",
                                f"{hooked / plain:.3f}", "yes" if hooked / plain < 1.15 else "NO"])
            print(f"  {m.name}: plain {plain:.3f} s, capture {hooked:.3f} s", flush=True)
            if size == "real" and not (cuda or args.real_memory):
                continue
            if cuda:
                at10, at50 = peak_memory(setup, 10), peak_memory(setup, 50)
            else:
                del setup
                at10 = memory_in_fresh_process(m.name, size, 10, args.device)
                at50 = memory_in_fresh_process(m.name, size, 50, args.device)
            memory_rows.append([size, m.name, mib(at10), mib(at50), f"{(at50 - at10) / 2**20:+.1f}",
                                f"{(at50 - at10) / 40 / 2**20:+.2f}"])
            print(f"  {m.name}: peak {mib(at10)} MiB at 10 read steps, {mib(at50)} MiB at 50", flush=True)

    table("Capture overhead: the method's loop with capture and aggregation against plain forwards (median s)",
          ["unet", "method", "layers", "steps", "repeats", "plain", "capture", "ratio", "< 1.15"], timing_rows)
    how = ("torch.cuda.max_memory_allocated above the allocation before the loop" if cuda else
           "peak RSS above the RSS before the loop, sampled every 1 ms, one fresh process per cell, "
           "glibc mmap threshold 64 KiB")
    if memory_rows:
        table(f"Peak memory per sample of the capturing loop, MiB ({how})",
              ["unet", "method", "10 steps", "50 steps", "difference", "per extra step"], memory_rows)
    else:
        print("\nMemory: not measured (real-size U-Nets on the cpu need --real-memory)")
    precision_table(args, methods, cuda)
    if memory_rows and any(m.bbm for m in methods):
        print("\n+bbm keeps the pass-1 start-token map of every (step, layer) for pass 2, so its memory may grow "
              "with the steps; the others keep one running sum per sample.")



def precision_table(args: argparse.Namespace, methods: list[MethodConfig], cuda: bool) -> None:
    """Table 4: seconds per sample and peak memory, per precision and batch size."""
    precisions = (args.precisions or ("fp32,fp16,bf16" if cuda else "fp32,bf16")).split(",")
    batches = [int(b) for b in args.batches.split(",")]
    sizes = (args.precision_sizes or ("real" if cuda else "tiny")).split(",")
    steps = 2
    rows = []
    for size in sizes:
        for m in methods:
            if m.bbm:
                continue  # the same U-Net calls as the method without BBM, twice over
            setup = Setup(m, build_unet(m.arch, size, args.device), size, args.device)
            precision_loop(setup, 1, 1, "fp32")  # warm-up
            minimal = count_evals(m, False)
            for precision in precisions:
                for batch in batches:
                    seconds, evals, used = precision_loop(setup, steps, batch, precision)
                    per_sample = seconds / evals * minimal
                    row = [size, m.name, precision, str(batch), f"{per_sample:.3f}", mib(used)]
                    if cuda:
                        row.append(f"{per_sample * MS_CXR_SAMPLES / 3600:.2f}")
                    rows.append(row)
                    print(f"  {size} {m.name} {precision} batch {batch}: {per_sample:.3f} s/sample, "
                          f"{mib(used)} MiB", flush=True)
            del setup
    header = ["unet", "method", "precision", "batch", "s / sample (engine loop)", "peak MiB"]
    if cuda:
        header.append("h for MS-CXR")
    title = (f"Precision and batch ({machine_name(args.device)}, torch {torch.__version__}; s / sample = s per "
             f"U-Net sample-evaluation over {steps} read steps x the engine's minimal count per sample)")
    table(title, header, rows)
    if cuda:
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        name = "".join(c if c.isalnum() else "_" for c in machine_name(args.device)).strip("_").lower()
        lines = [f"# perf_ldm precision table on {machine_name(args.device)}", "",
                 f"torch {torch.__version__}, CUDA {torch.version.cuda}, random weights, written by "
                 "`python benchmarks/perf_ldm.py --device cuda`.", "",
                 "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                 *["| " + " | ".join(r) + " |" for r in rows], ""]
        (out / f"perf_ldm_{name}.md").write_text("\n".join(lines))
        print(f"\nwritten to {out / f'perf_ldm_{name}.md'}")


if __name__ == "__main__":
    main()
