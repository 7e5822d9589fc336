"""Maps and scores of the diffusion methods at bf16 / fp16 against fp32, on the phantom test split.

    python benchmarks/precision_parity.py [--limit 48] [--device cpu] [--out DIR]

For the shipped `phantom_ldm` (trained weights) and the tiny real-architecture replicas of
`cxrbert_ldm`, `clip_ldm` and `ldm_frozen` (random weights, the tiny `--set` overrides of the README's
smoke run), each run once per precision with `bench run` (default protocol, `--limit` samples of the
phantom test split taken from every category in turn). Printed as one Markdown table: the largest
absolute difference of a map against its fp32 map after min-max over the field of view, and the
change of every metric's macro mean (reduced minus fp32), the largest shown with its metric.
A precision the device cannot run is reported as such.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("BENCH_QUIET", "1")

from bench.core.errors import BenchError  # noqa: E402
from bench.core.heatmap import Heatmap  # noqa: E402
from bench.running.rundir import file_name  # noqa: E402
from bench.running.runner import RunRequest, run  # noqa: E402

TINY_SD = ["resize=64", "crop=64", "num_inference_steps=4", "steps=-2:", "grid=8", "architecture=tiny_sd"]
TINY_MONAI = ["resize=64", "crop=64", "num_inference_steps=10", "steps=3:5", "grid=0", "output_size=32",
              "architecture=tiny_monai", "text_config=ldm_config/text/tiny_clip.json",
              'layers=["down_blocks.2.attentions.0", "middle_block.attention"]']
#: method -> (random weights, --set overrides)
METHODS = {
    "phantom_ldm": (False, []),
    "cxrbert_ldm": (True, [*TINY_SD, "text_config=ldm_config/text/tiny_bert.json"]),
    "clip_ldm": (True, [*TINY_SD, "text_config=ldm_config/text/tiny_clip.json"]),
    "ldm_frozen": (True, TINY_MONAI),
}
METRICS = ("miou", "cnr", "auc_roc", "pointing_game")


def _minmax(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.nanmin(v), np.nanmax(v)
    return (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)


def one_run(method: str, precision: str, limit: int, device: str, root: Path):
    random_weights, overrides = METHODS[method]
    out = root / f"{method}-{precision}"
    result = run(RunRequest(method=method, dataset="phantom", limit=limit, device=device, out=out,
                            random_weights=random_weights, overrides=list(overrides), precision=precision))
    maps = {sid: Heatmap.load(out / "heatmaps" / f"{file_name(sid)}.npz").values
            for sid in result.samples["sample_id"]}
    summary = pd.read_csv(out / "summary.csv")
    macro = summary[summary["group"] == "macro"].set_index("metric")["mean"]
    return maps, macro, result.record["timings"]["heatmaps_s"] / len(maps)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=48)
    p.add_argument("--device", default="cpu")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--out", type=Path, default=None, help="keep the runs here [default: a temporary folder]")
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for method in args.methods.split(","):
            base_maps, base, base_s = one_run(method, "fp32", args.limit, args.device, root)
            metrics = [m for m in base.index if m in METRICS or m.startswith(("iou@", "cnr_abs"))]
            metrics = [m for m in base.index if m in set(metrics)]
            rows.append(f"| `{method}` | fp32 | {len(base_maps)} | {base_s:.2f} | 0 | " + " | ".join("0" for _ in METRICS)
                        + " | 0 |")
            for precision in ("bf16", "fp16"):
                try:
                    maps, macro, secs = one_run(method, precision, args.limit, args.device, root)
                except BenchError as exc:
                    rows.append(f"| `{method}` | {precision} | not run: {exc} |")
                    continue
                diff = max(float(np.nanmax(np.abs(_minmax(maps[k]) - _minmax(base_maps[k])))) for k in maps)
                delta = {m: float(macro[m] - base[m]) for m in metrics}
                worst = max(delta, key=lambda m: abs(delta[m]))
                rows.append(f"| `{method}` | {precision} | {len(maps)} | {secs:.2f} | {diff:.4f} | "
                            + " | ".join(f"{delta[m]:+.4f}" for m in METRICS)
                            + f" | {delta[worst]:+.4f} (`{worst}`) |")
    print("| method | precision | samples | s / sample | max abs map diff | " + " | ".join(f"Δ macro `{m}`" for m in METRICS)
          + " | largest Δ macro, any metric |")
    print("| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in METRICS) + " | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
