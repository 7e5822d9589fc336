"""What a whole `bench score` process costs besides the per-sample scoring: the start-up breakdown.

Measured on the phantom under `dombrowski2024` (a GMM protocol: PyTorch for the GT resize,
scikit-learn for the mixture) and `vilouras2024`:

1. imports, each in a fresh interpreter: the CLI, the scoring stack (`bench.running.runner`:
   NumPy, no pandas), pandas, PyTorch, scikit-learn's mixture, and the packages the published
   `vilouras2024` scorer imports (PyTorch, torchvision, scikit-learn's metrics, MONAI, scikit-image,
   SciPy; torcheval where installed): the least its own start costs;
   and, per command, which packages of the model stack (PyTorch, scikit-learn, transformers,
   diffusers) and pandas a whole process imports and what they cost (`python -X importtime`);
2. the dataset: its samples, the protocol's sample set and the run's dataset fingerprint; the image
   checks of `bench run` on the ChestX-ray14 sample (`BENCH_NIH_ROOT`, else `shared/data/nih-cxr14-bbox`
   above the checkout): cold (every image decoded) and warm (cached: one `stat` per image);
3. the first sample (lazy imports included) against the mean of the next ones;
4. whole `bench score` processes on a run of N = 10 and N = 100 samples: seconds and seconds per
   sample, from the two the per-sample slope and the start (the intercept), and the share of the
   whole process spent scoring (N x the in-process seconds per sample / the whole). With the
   published script's start taken as zero, whole ratio >= share x per-sample ratio, so a share of
   0.5 or more meets "a whole-process ratio of at least half the per-sample ratio" whatever their
   start costs; below that, the aim holds when the published script's own start S_pub is at least
   R/2 (S - N s) (R: the per-sample ratio measured against it, S and s: this start and slope),
   printed beside the least its imports cost. `bench run -m box_prior` is timed the same way.
5. side by side, where BENCH_VILOURAS_CODE names a checkout of vios-s/ldm-phrase-grounding (the
   published scorer is not part of this repository): whole processes of its metric functions on the
   same maps (`published_vilouras.py`) at N = 10 and 100, and the whole-process ratio.

Every timing is the best of three: on a shared machine the load moves single timings by 2x.
"""

from __future__ import annotations

import argparse
import os
import re
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


#: top-level packages of the model stack (and pandas) whose import a light command should not pay for
HEAVY = ("torch", "torchvision", "transformers", "diffusers", "health_multimodal", "monai", "sklearn", "pandas")

#: per-sample speed-up of the scorer over the published scorers, median seconds per sample on the same maps
#: and machine (2544 x 3056 MS-CXR-format phantom sets; the vilouras2024 figure is for native maps)
PER_SAMPLE_RATIO = {"vilouras2024": 38.8, "dombrowski2024": 12.6, "nutzel2025": 8.9}

#: what the published vilouras2024 scorer's modules import (metrics/eval_metrics.py, metrics/utils.py)
PUBLISHED_IMPORTS = ("torch", "torchvision.ops", "sklearn.metrics", "torcheval.metrics.functional",
                     "monai.transforms", "skimage.filters", "scipy.ndimage")
HERE = Path(__file__).resolve().parent


def _heavy_imports(args: list[str]) -> str:
    """The model-stack packages a whole `bench ARGS` process imports, with their cumulative import seconds."""
    out = subprocess.run([sys.executable, "-X", "importtime", *args[1:]], capture_output=True, text=True, check=True)
    found = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)$", line)
        if m and m.group(3).split(".")[0] in HEAVY and "." not in m.group(3):
            found[m.group(3)] = max(found.get(m.group(3), 0), int(m.group(1)) / 1e6)
    return ", ".join(f"{k} {v:.2f} s" for k, v in sorted(found.items())) or "none"


def _nih_root() -> Path | None:
    """The ChestX-ray14 box sample: BENCH_NIH_ROOT, else shared/data/nih-cxr14-bbox in a folder above the checkout."""
    if os.environ.get("BENCH_NIH_ROOT"):
        return Path(os.environ["BENCH_NIH_ROOT"])
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data" / "nih-cxr14-bbox" / "BBox_List_2017.csv").is_file():
            return parent / "shared" / "data" / "nih-cxr14-bbox"
    return None


def _image_checks(tmp: str) -> None:
    """Seconds of `bench run`'s image checks on the ChestX-ray14 sample, with an empty cache and a filled one."""
    from bench.datasets import get_dataset

    root = _nih_root()
    if root is None:
        print("  image checks: no ChestX-ray14 sample (set BENCH_NIH_ROOT)")
        return
    ds = get_dataset("chestx-ray14", data_root=root)
    samples = ds.samples()
    cold, warm = [], []
    for k in range(REPEATS):
        os.environ["BENCH_CACHE"] = f"{tmp}/cache_{k}"
        t = time.perf_counter()
        ds.check_images(samples)
        cold.append(time.perf_counter() - t)
        t = time.perf_counter()
        ds.check_images(samples)
        warm.append(time.perf_counter() - t)
    images = len({s.image_path for s in samples})
    print(f"  image checks, ChestX-ray14 sample ({images} images): cold {min(cold):6.3f} s (every image decoded), "
          f"warm {min(warm):6.3f} s (cached), {min(cold) / min(warm):5.0f}x")


def _process(args: list[str], out: str) -> float:
    """Seconds of a whole process writing into the fresh folder `out` (best of REPEATS)."""
    times = []
    for k in range(REPEATS):
        t = time.perf_counter()
        subprocess.run([*args, "--out", f"{out}_{k}"], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
    return min(times)


def _published_imports() -> tuple[float, list[str]]:
    """Seconds to import what the published vilouras2024 scorer imports, and the packages missing here."""
    import importlib.util

    present, missing = [], []
    for name in PUBLISHED_IMPORTS:
        (present if importlib.util.find_spec(name.split(".")[0]) is not None else missing).append(name)
    return (_fresh("; ".join(f"import {name}" for name in present)) if present else 0.0), missing


def _published_data(rundir, chosen: list, folder: Path) -> None:
    """The maps and boxes of a run's scored samples, as published_vilouras.py reads them."""
    import json

    import numpy as np

    from bench.core.heatmap import Heatmap

    ids = {p.stem for p in rundir.heatmaps.iterdir()}
    samples = [s for s in chosen if s.sample_id in ids]
    folder.mkdir(parents=True)
    np.savez(folder / "maps.npz", **{f"m{k}": Heatmap.load(rundir.heatmap_path(s.sample_id)).values
                                     for k, s in enumerate(samples)})
    (folder / "samples.json").write_text(json.dumps([
        {"width": s.width, "height": s.height, "boxes": [[int(v) for v in b] for b in s.boxes]} for s in samples]))


def _side_by_side(code: str, sizes: list[int], wholes: dict[int, float], rundirs: dict, chosen: list,
                  tmp: str) -> None:
    """Whole processes of the published vilouras2024 scorer on the same maps, and the whole-process ratio
    against half the per-sample ratio (the two slopes: seconds per sample of each from the two sizes)."""
    published = {}
    for n in sizes:
        data = Path(tmp) / f"published_{n}"
        _published_data(rundirs[n], chosen, data)
        times = []
        for _ in range(REPEATS):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, str(HERE / "published_vilouras.py"), code, str(data)],
                                 capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - t)
            if out.returncode:
                print(f"    published scorer ({code}) failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
                return
        published[n] = min(times)
        print(f"    published scorer, whole process, {n:4d} samples: {published[n]:7.2f} s = "
              f"{published[n] / n:7.4f} s per sample")
    lo, hi = min(sizes), max(sizes)
    per_sample = None
    if hi > lo:
        ours, theirs = (wholes[hi] - wholes[lo]) / (hi - lo), (published[hi] - published[lo]) / (hi - lo)
        per_sample = theirs / ours
        print(f"    published: {theirs:7.4f} s per sample, start {published[lo] - lo * theirs:6.2f} s; per-sample "
              f"ratio on these maps {per_sample:5.1f}x")
    for n in sizes:
        whole = published[n] / wholes[n]
        verdict = "" if per_sample is None else (f" ({'meets' if whole >= per_sample / 2 else 'below'} half the "
                                                 f"per-sample {per_sample:.1f}x)")
        print(f"    {n:4d} samples: whole-process ratio {whole:5.1f}x{verdict}")


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
                        ("pandas", "import pandas"), ("torch", "import torch"), ("sklearn", "import sklearn"),
                        ("sklearn.mixture", "import sklearn.mixture")):
        print(f"    {label:<24} {_fresh(code):7.3f} s")
    published_start, missing = _published_imports()
    print(f"    {'published scorer imports':<24} {published_start:7.3f} s (vilouras2024's modules"
          f"{'; not installed here: ' + ', '.join(missing) if missing else ''})")

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
        cache = os.environ.get("BENCH_CACHE")
        _image_checks(tmp)
        if cache is None:
            os.environ.pop("BENCH_CACHE", None)
        else:
            os.environ["BENCH_CACHE"] = cache
        sizes = [int(n) for n in args.sizes.split(",")]
        print("  bench run -m box_prior (whole process):")
        for n in sizes:
            subprocess.run([*BENCH, "run", "-m", "box_prior", "-d", "phantom", "--limit", str(n), "--out",
                            f"{tmp}/run{n}"], capture_output=True, check=True)
            whole = _process([*BENCH, "run", "-m", "box_prior", "-d", "phantom", "--limit", str(n)], f"{tmp}/bp{n}")
            print(f"    {n:4d} samples: {whole:7.2f} s = {whole / n:7.4f} s per sample")
        print("  model-stack packages and pandas a whole process imports (cumulative import seconds):")
        print(f"    {'bench --help':<38} {_heavy_imports([*BENCH, '--help'])}")
        print(f"    {'bench run -m box_prior':<38} "
              f"{_heavy_imports([*BENCH, 'run', '-m', 'box_prior', '-d', 'phantom', '--limit', '10', '--out', f'{tmp}/imp_bp'])}")
        for name in ("default", "vilouras2024", "dombrowski2024", "nutzel2025"):
            label = f"bench score -p {name}"
            heavy = _heavy_imports([*BENCH, "score", "--heatmaps", f"{tmp}/run{min(sizes)}", "-d", "phantom", "-p", name,
                                    "--out", f"{tmp}/imp_{name}"])
            print(f"    {label:<38} {heavy}")
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
            start = None
            if hi > lo:
                slope = (wholes[hi] - wholes[lo]) / (hi - lo)
                start = wholes[lo] - lo * slope
                print(f"    from the two: {slope:7.4f} s per sample, start {start:6.2f} s")
            ratio = PER_SAMPLE_RATIO[name]
            for n in sizes:
                share = n * steady / wholes[n]
                print(f"    {n:4d} samples: scoring is {share:4.0%} of the whole process: whole-process ratio to a "
                      f"published scorer >= {share:.2f} x its per-sample ratio ({'meets' if share >= 0.5 else 'below'} "
                      "the aim of half)")
                if share < 0.5 and start is not None:
                    needed = ratio / 2 * (start - n * slope)
                    print(f"      half the per-sample {ratio}x needs this start at most {n * slope:5.2f} s, or the "
                          f"published script's own start at least {needed:5.1f} s (its imports: {published_start:.1f} s)")
            code = os.environ.get("BENCH_VILOURAS_CODE")
            if name == "vilouras2024" and code:
                _side_by_side(code, sizes, wholes, {n: RunDir(Path(f"{tmp}/run{n}")) for n in sizes}, chosen, tmp)
            elif name == "vilouras2024":
                print("    side by side: set BENCH_VILOURAS_CODE to a checkout of vios-s/ldm-phrase-grounding")


if __name__ == "__main__":
    main()
