"""What `bench view` costs on 1,000 samples: the seconds to write the viewer and the size of its folder.

Two finished phantom runs of N samples (`oracle_gaussian`, `uniform`; N = 1,000 by default) are
made in a temporary folder with a fresh BENCH_CACHE, and the phantom's images drawn into it
(`bench dataset`; timed apart: the baselines never read pixels, so their runs draw none, and the
images of a real dataset are on disk already). Then three `bench view` builds are timed, each a
whole process:

1. one run, no overlay cached yet (every overlay made);
2. both runs side by side, the first run's overlays cached (the second's made);
3. both runs again into the same folder, everything cached (a rebuild).

Printed: seconds, the folder's size in MB, and whether each stays within what the README promises
(under a minute, under 100 MB for 1,000 samples).
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
LIMIT_S = 60.0
LIMIT_MB = 100.0


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _timed(args: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([*BENCH, *args], env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000, help="phantom test samples per run [default: 1000]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = {**os.environ, "BENCH_CACHE": str(base / "cache"), "BENCH_QUIET": "1", "HF_HUB_OFFLINE": "1"}
        options = ["-O", f"n_test={args.samples}", "-O", "n_train=16"]
        for method in ("oracle_gaussian", "uniform"):
            subprocess.run([*BENCH, "run", "-m", method, "-d", "phantom", *options, "--out", str(base / method)],
                           env=env, check=True, capture_output=True, text=True)
        drawing = _timed(["dataset", "phantom", *options, "--out", str(base / "samples.csv")], env)
        steps = [("1 run, overlays made", [str(base / "oracle_gaussian")], base / "one"),
                 ("2 runs, the second's overlays made", [str(base / "oracle_gaussian"), str(base / "uniform")],
                  base / "two"),
                 ("2 runs again, all cached", [str(base / "oracle_gaussian"), str(base / "uniform")], base / "two")]
        print(f"bench view on {args.samples} phantom samples (limits for 1,000: {LIMIT_S:.0f} s, {LIMIT_MB:.0f} MB)")
        print(f"(drawing the phantom images first, not part of the viewer: {drawing:.1f} s)")
        print(f"{'build':<40} {'seconds':>8} {'MB':>7}  within limits", flush=True)
        for label, runs, out in steps:
            seconds = _timed(["view", *runs, "--out", str(out)], env)
            size = _size_mb(out)
            ok = seconds < LIMIT_S and size < LIMIT_MB
            print(f"{label:<40} {seconds:8.1f} {size:7.1f}  {'yes' if ok else 'NO'}", flush=True)


if __name__ == "__main__":
    main()
