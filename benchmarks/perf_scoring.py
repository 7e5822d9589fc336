"""Scoring speed: the exact native-cell route against the brute-force route, side by side.

MIMIC-sized phantom samples (2544 x 3056) with 64 x 64 native maps placed as a short-side-512
centre crop. Prints samples per second of both routes and their ratio, and the wall time of
scoring N samples with every metric plus 10,000-resample bootstrap CIs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.datasets import get_dataset
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score_cells, score_dense
from bench.evaluation.stats import summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1200, help="samples scored by the fast route")
    parser.add_argument("--dense-samples", type=int, default=6, help="samples scored by the brute-force route")
    args = parser.parse_args()

    protocol = load_protocol("default")
    dataset = get_dataset("phantom", options={"size": "mimic", "n_test": str(args.samples), "n_train": "0"})
    samples = [s for s in dataset.samples() if s.split == "test"][: args.samples]
    rng = np.random.default_rng(0)
    maps = [Heatmap(rng.random((64, 64)).astype(np.float32), Geometry.short_side_crop(s.height, s.width, 512, 512))
            for s in samples]

    t = time.perf_counter()
    rows = [{"category": s.category, **score_cells(m, s, protocol)} for s, m in zip(samples, maps)]
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    dense_rows = [score_dense(m, s, protocol) for s, m in zip(samples[: args.dense_samples], maps)]
    dense_s = time.perf_counter() - t
    worst = max(abs(rows[i][k] - dense_rows[i][k]) for i in range(len(dense_rows)) for k in dense_rows[i])

    t = time.perf_counter()
    table = pd.DataFrame(rows)
    summarise(table, protocol.columns, protocol.groups, protocol.bootstrap_resamples, protocol.ci_level, protocol.seed)
    boot_s = time.perf_counter() - t

    fast_rate = len(samples) / fast_s
    dense_rate = len(dense_rows) / dense_s
    print(f"image size                 : {samples[0].width} x {samples[0].height}, native map 64 x 64")
    print(f"native-cell route          : {fast_rate:10.1f} samples/s ({len(samples)} samples)")
    print(f"brute-force route          : {dense_rate:10.2f} samples/s ({len(dense_rows)} samples)")
    print(f"speed-up (same run)        : {fast_rate / dense_rate:10.1f} x")
    print(f"largest difference         : {worst:.2e}")
    print(f"{len(samples)} samples, all metrics : {fast_s:6.2f} s scoring + {boot_s:.2f} s for "
          f"{protocol.bootstrap_resamples} bootstrap resamples = {fast_s + boot_s:.2f} s")


if __name__ == "__main__":
    main()
