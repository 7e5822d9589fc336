"""Scoring speed, every ratio measured side by side in one run on the same maps.

MIMIC-sized phantom samples (2544 x 3056). Five comparisons:

1. native 64 x 64 maps (a method's run), default protocol: the native-cell route against brute
   force, and the wall time of N samples with every metric plus 10,000-resample bootstrap CIs;
2. bring-your-own maps at the original size (NaN outside the model's centre crop, float32), under
   `default` and `vilouras2024`: the sorted-pixel route `score` takes now, against the route it took
   before (native cells with one cell per pixel, label mask at full resolution) and brute force;
3. GMM protocols (`nutzel2025`, `dombrowski2024`) on native 512 x 512 half-precision maps: the GMM
   fitted on the value histogram against scikit-learn's fit on every pixel, everything else equal,
   per sample and for the fit alone;
4. box dropping under `vilouras2024` (native maps of the model's 512 crop): the rule evaluated from
   crop geometry and boxes against the full-resolution label mask;
5. mask ground truth (the phantom's `gt=mask`) against box ground truth, default protocol, on the
   native maps of 1. and on original-size maps: what decoding the mask and the sorted-pixel route
   cost over the cell route (ratio = mask / boxes).

Each line prints seconds per sample of both sides, their ratio and the largest difference.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import pandas as pd

from bench.core.geometry import Geometry
from bench.core.heatmap import Heatmap
from bench.datasets import get_dataset
from bench.evaluation import scoring
from bench.evaluation.gmm_mask import fast_threshold, gmm_threshold
from bench.evaluation.label_crop import surviving_boxes, surviving_boxes_mask
from bench.evaluation.protocols import load_protocol
from bench.evaluation.scoring import score, score_cells, score_dense
from bench.evaluation.stats import summarise


def _timed(fn: Callable[[], object], repeats: int) -> tuple[float, list]:
    out = []
    t = time.perf_counter()
    for _ in range(repeats):
        out.append(fn())
    return (time.perf_counter() - t) / repeats, out


def _per_sample(fn: Callable, pairs: list) -> tuple[float, list]:
    """Seconds per (map, sample) pair after one untimed warm-up call (imports, first allocations)."""
    fn(*pairs[0])
    t = time.perf_counter()
    out = [fn(m, s) for m, s in pairs]
    return (time.perf_counter() - t) / len(pairs), out


def _worst(a: list[dict], b: list[dict]) -> float:
    return max((abs(x[k] - y[k]) for x, y in zip(a, b) for k in y if not (np.isnan(x[k]) and np.isnan(y[k]))),
               default=0.0)


def _line(label: str, new_s: float, old_s: float, new_name: str, old_name: str, worst: float | None = None) -> None:
    diff = "" if worst is None else f"   largest difference {worst:.1e}"
    print(f"  {label:<40} {new_name} {new_s:8.4f} s | {old_name} {old_s:8.4f} s | {old_s / new_s:7.1f}x{diff}")


def _byo_map(s, rng: np.random.Generator) -> Heatmap:
    """An original-size map as the published code saves it: NaN outside the model's 512 crop."""
    g = Geometry.short_side_crop(s.height, s.width, 512, 512)
    v = np.full((s.height, s.width), np.nan, dtype=np.float32)
    v[g.top:g.top + g.height, g.left:g.left + g.width] = rng.random((g.height, g.width), dtype=np.float32)
    return Heatmap.from_original(v)


def _old_original_route(protocol):
    """The route `score` took for original-size maps before: one native cell per pixel, full-resolution label mask."""
    def run(m, s):
        return scoring._score_cells(m, scoring.protocol_sample(m, s, protocol, reference=True), protocol, None)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1200, help="samples scored by the native-cell route")
    parser.add_argument("--dense-samples", type=int, default=6, help="samples scored by brute force")
    parser.add_argument("--byo-samples", type=int, default=3, help="original-size maps per protocol")
    parser.add_argument("--gmm-samples", type=int, default=6, help="512 x 512 maps per GMM protocol")
    args = parser.parse_args()

    protocol = load_protocol("default")
    dataset = get_dataset("phantom", options={"size": "mimic", "n_test": str(args.samples), "n_train": "0"})
    samples = [s for s in dataset.samples() if s.split == "test"][: args.samples]
    rng = np.random.default_rng(0)
    maps = [Heatmap(rng.random((64, 64)).astype(np.float32), Geometry.short_side_crop(s.height, s.width, 512, 512))
            for s in samples]
    print(f"image size {samples[0].width} x {samples[0].height}; seconds per sample, ratio = old / new")

    print("1. native 64 x 64 maps, default protocol")
    t = time.perf_counter()
    rows = [{"category": s.category, **score_cells(m, s, protocol)} for s, m in zip(samples, maps)]
    fast_s = time.perf_counter() - t
    pairs = list(zip(maps, samples))[: args.dense_samples]
    dense_s, dense_rows = _per_sample(lambda m, s: score_dense(m, s, protocol), pairs)
    _line("native cells vs brute force", fast_s / len(samples), dense_s, "cells", "brute force",
          _worst(rows[: len(dense_rows)], dense_rows))
    t = time.perf_counter()
    summarise(pd.DataFrame(rows), protocol.columns, protocol.groups, protocol.bootstrap_resamples,
              protocol.ci_level, protocol.seed)
    boot_s = time.perf_counter() - t
    print(f"  {len(samples)} samples, all metrics: {fast_s:.2f} s scoring + {boot_s:.2f} s for "
          f"{protocol.bootstrap_resamples} bootstrap resamples = {fast_s + boot_s:.2f} s")

    print("2. original-size maps (bring your own .npy, NaN outside the 512 crop)")
    byo = [(_byo_map(s, rng), s) for s in samples[: args.byo_samples]]
    for name in ("default", "vilouras2024"):
        p = load_protocol(name)
        new_s, new = _per_sample(lambda m, s, p=p: score(m, s, p), byo)
        old_s, old = _per_sample(_old_original_route(p), byo)
        brute_s, brute = _per_sample(lambda m, s, p=p: score_dense(m, s, p), byo)
        _line(f"{name}: sorted pixels vs before", new_s, old_s, "new", "before", _worst(new, old))
        _line(f"{name}: sorted pixels vs brute force", new_s, brute_s, "new", "brute force", _worst(new, brute))

    print("3. GMM protocols, native 512 x 512 half-precision maps")
    gmm_pairs = []
    for s in samples[: args.gmm_samples]:
        yy, xx = np.mgrid[:512, :512]
        blob = np.exp(-((xx - 512 * rng.random()) ** 2 + (yy - 512 * rng.random()) ** 2) / (2 * 60.0 ** 2))
        v = (blob + 0.2 * rng.random((512, 512))).astype(np.float16)
        gmm_pairs.append((Heatmap(v, Geometry.short_side_crop(s.height, s.width, 512, 512)), s))
    for name in ("nutzel2025", "dombrowski2024"):
        p = load_protocol(name)
        new_s, new = _per_sample(lambda m, s, p=p: score(m, s, p), gmm_pairs)
        old_s, old = _per_sample(lambda m, s, p=p: score_dense(m, s, p), gmm_pairs)
        _line(f"{name}: histogram vs per-pixel fit", new_s, old_s, "new", "before", _worst(new, old))
    values = [m.values.astype(np.float64) for m, _ in gmm_pairs]
    new_s, new = _timed(lambda: [fast_threshold(v, 0) for v in values], 1)
    old_s, old = _timed(lambda: [gmm_threshold(v, 0) for v in values], 1)
    _line("the GMM fit alone", new_s / len(values), old_s / len(values), "new", "before",
          max(abs(a - b) for a, b in zip(new[0], old[0])))

    print("4. box dropping under vilouras2024 (native maps of the 512 crop)")
    p = load_protocol("vilouras2024")
    boxes = [(s.boxes, m.geometry) for m, s in list(zip(maps, samples))[: args.dense_samples]]
    new_s, new = _timed(lambda: [surviving_boxes(b, g, p.model_input) for b, g in boxes], 1)
    old_s, old = _timed(lambda: [surviving_boxes_mask(b, g, p.model_input) for b, g in boxes], 1)
    _line("geometry vs full-resolution mask", new_s / len(boxes), old_s / len(boxes), "new", "before")
    print(f"  same boxes kept: {new == old}")
    native = list(zip(maps, samples))[: args.dense_samples]
    new_s, _ = _per_sample(lambda m, s: score(m, s, p), native)
    old_s, _ = _per_sample(lambda m, s: scoring._score_cells(m, scoring.protocol_sample(m, s, p, reference=True),
                                                              p, None), native)
    _line("whole sample, vilouras2024", new_s, old_s, "new", "before")

    print("5. mask against box ground truth, default protocol (ratio = mask / boxes)")
    masked = get_dataset("phantom", options={"size": "mimic", "n_test": str(args.samples), "n_train": "0",
                                             "gt": "mask"}).samples()
    by_id = {s.sample_id: s for s in masked}
    for label, pairs in (("native 64 x 64 maps", native), ("original-size maps", byo)):
        box_s, _ = _per_sample(lambda m, s: score(m, s, protocol), pairs)
        mask_s, _ = _per_sample(lambda m, s: score(m, by_id[s.sample_id], protocol), pairs)
        _line(f"{label}: mask vs boxes", box_s, mask_s, "boxes", "mask")


if __name__ == "__main__":
    main()
