"""What a whole `bench score` process costs besides the per-sample scoring: the start-up breakdown.

Measured on the phantom under `dombrowski2024` (a GMM protocol: PyTorch for the GT resize,
scikit-learn for the mixture) and `vilouras2024`:

1. imports, each in a fresh interpreter: the CLI, the scoring stack (`bench.running.runner`:
   NumPy, pandas, SciPy), PyTorch, scikit-learn's mixture;
2. the dataset: its samples, the protocol's sample set and the run's dataset fingerprint;
3. the first sample (lazy imports included) against the mean of the next ones;
4. whole `bench score` processes on a run of N = 10 and N = 100 samples: seconds and seconds per
   sample, and from the two the per-sample slope and the start (the intercept).

Every timing is the best of three: on a shared machine the load moves single timings by 2x.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = [sys.executable, "-m", "bench.cli"]


REPEATS = 3  # every timing is the best of this many: the machine may be shared


def _fresh(code: str) -> float:
    """Seconds `code` takes in a new interpreter (timed inside it, interpreter start excluded)."""
    times = []
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, "-c", f"import time; t = time.perf_counter(); {code}; "
                              "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def _process(args: list[str], out: str) -> float:
    """Seconds of a whole process writing into the fresh folder `out` (best of REPEATS)."""
    times = []
    for k in range(REPEATS):
        t = time.perf_counter()
        subprocess.run([*args, "--out", f"{out}_{k}"], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def _steady(pairs: list, protocol) -> float:
    """Seconds per sample of `score` in this process once warm (best of REPEATS passes)."""
    from bench.evaluation.scoring import score

    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        for m, s in pairs:
            score(m, s, protocol)
        times.append((time.perf_counter() - t) / len(pairs))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100", help="sample counts of the whole-process runs")
    args = parser.parse_args()
    os.environ.setdefault("BENCH_QUIET", "1")
    print("start-up of a bench score process (phantom)")
    print("  imports (fresh interpreter each):")
    for label, code in (("bench.cli", "import bench.cli"), ("bench.running.runner", "import bench.running.runner"),
                        ("torch", "import torch"), ("sklearn.mixture", "import sklearn.mixture")):
        print(f"    {label:<24} {_fresh(code):7.3f} s")

    from bench.datasets import get_dataset
    from bench.evaluation.protocols import load_protocol
    from bench.evaluation.scoring import score

    t = time.perf_counter()
    ds = get_dataset("phantom")
    from bench.running.runner import dataset_identity, eval_samples
    for name in ("dombrowski2024", "vilouras2024"):
        protocol = load_protocol(name)
        _, chosen = eval_samples(ds, protocol, None)
        dataset_identity(ds, protocol)
    print(f"  dataset: samples, protocol sets, fingerprints {time.perf_counter() - t:7.3f} s ({len(chosen)} samples)")

    with tempfile.TemporaryDirectory() as tmp:
        sizes = [int(n) for n in args.sizes.split(",")]
        for n in sizes:
            subprocess.run([*BENCH, "run", "-m", "box_prior", "-d", "phantom", "--limit", str(n), "--out",
                            f"{tmp}/run{n}"], capture_output=True, check=True)
        from bench.core.heatmap import Heatmap
        from bench.running.rundir import RunDir

        rundir = RunDir(Path(f"{tmp}/run{max(sizes)}"))
        ids = {p.stem for p in rundir.heatmaps.iterdir()}
        pairs = [(Heatmap.load(rundir.heatmap_path(s.sample_id)), s) for s in chosen if s.sample_id in ids][:40]
        for name in ("dombrowski2024", "vilouras2024"):
            protocol = load_protocol(name)
            t = time.perf_counter()
            score(*pairs[0], protocol)
            first = time.perf_counter() - t
            steady = _steady(pairs[1:], protocol)
            print(f"  {name}: first sample {first:7.3f} s, then {steady:7.4f} s per sample")
            wholes = {}
            for n in sizes:
                wholes[n] = _process([*BENCH, "score", "--heatmaps", f"{tmp}/run{n}", "-d", "phantom", "-p", name],
                                     f"{tmp}/score_{name}_{n}")
                print(f"    whole process, {n:4d} samples: {wholes[n]:7.2f} s = {wholes[n] / n:7.4f} s per sample")
            lo, hi = min(sizes), max(sizes)
            if hi > lo:
                slope = (wholes[hi] - wholes[lo]) / (hi - lo)
                print(f"    from the two: {slope:7.4f} s per sample, start {wholes[lo] - lo * slope:6.2f} s")


if __name__ == "__main__":
    main()
