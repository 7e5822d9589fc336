"""One whole process of the published `vilouras2024` scorer over prepared maps (run by perf_startup.py).

Usage: python published_vilouras.py CODE DATA

CODE is a checkout of vios-s/ldm-phrase-grounding (the folder holding `metrics/`); its metric functions
are imported from there and called as its evaluation loop calls them after the model: the native map
nearest-upsampled to the image's short side, NaN-padded to the image size, then absolute CNR, signed
CNR, mIoU and the binned AUC. DATA is a folder written by perf_startup.py: `samples.json` (width,
height and boxes per sample) and `maps.npz` (one native map per sample, `m0`, `m1`, ...). Image sizes
come from the file instead of an image header, so this process does less than the published script.
Prints the number of samples and the mean of each metric.
"""

from __future__ import annotations

import json
import sys
from math import ceil, floor
from pathlib import Path


def main() -> None:
    code, data = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(code))
    import numpy as np
    import torch
    import torch.nn.functional as F
    from metrics import AUC_ROC, CNR, mIoU

    samples = json.loads((data / "samples.json").read_text())
    auc_roc = AUC_ROC()
    sums = np.zeros(4)
    with np.load(data / "maps.npz") as maps:
        for k, s in enumerate(samples):
            w, h, boxes = s["width"], s["height"], [tuple(b) for b in s["boxes"]]
            side = min(w, h)
            sim_map = torch.from_numpy(maps[f"m{k}"].astype(np.float32))
            sim_map = F.interpolate(sim_map[None, None], size=(side, side), mode="nearest")[0, 0]
            margin_w, margin_h = w - side, h - side
            sim_map = F.pad(sim_map, (floor(margin_w / 2), ceil(margin_w / 2), floor(margin_h / 2), ceil(margin_h / 2)),
                            value=float("nan"))
            sums += (CNR(sim_map, boxes), CNR(sim_map, boxes, non_absolute=True), mIoU(sim_map, boxes),
                     auc_roc(sim_map, boxes))
    print(len(samples), " ".join(f"{v / max(len(samples), 1):.6f}" for v in sums))


if __name__ == "__main__":
    main()
