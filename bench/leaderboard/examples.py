"""The overlay example of a run: one downscaled image with the method's map and the GT boxes.

Stored with the run in the results folder, so the overlay figure can be redrawn anywhere
without the dataset's images or the run's heatmaps. Every method on a dataset shows the same
sample (the first sample id in sorted order), so their figures can be compared side by side.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core import atomic
from ..core.errors import BenchError
from ..core.heatmap import Heatmap, read_original_map
from ..evaluation.protocols import Protocol
from ..evaluation.resample import to_original
from ..evaluation.scoring import apply_policy
from ..running.rundir import RunDir, file_name, record_backend

THUMBNAIL = 256


def _thumbnail_index(size: int, scale: float) -> np.ndarray:
    out = max(1, int(round(size * scale)))
    return np.minimum(((np.arange(out) + 0.5) / scale).astype(np.int64), size - 1)


def _grey_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return np.round(scaled * 255).astype(np.uint8)


def example_arrays(image: np.ndarray, heatmap: Heatmap, boxes: list, protocol: Protocol,
                   backend: str | None) -> dict[str, np.ndarray]:
    """Image, scored map and boxes, downscaled so the longer side is at most THUMBNAIL pixels."""
    values = apply_policy(to_original(heatmap, protocol.interpolation), protocol.value_policy(backend))
    height, width = values.shape
    scale = min(1.0, THUMBNAIL / max(height, width))
    rows, cols = _thumbnail_index(height, scale), _thumbnail_index(width, scale)
    return {"image": _grey_uint8(image)[rows][:, cols],
            "heatmap": values[rows][:, cols].astype(np.float16),
            "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale}


def _stored_heatmap(run: RunDir, record: dict, sample_id: str) -> Heatmap | None:
    """The sample's map from the run's heatmaps/, or from the folder a `bench score` run scored."""
    scored = record.get("heatmaps")
    candidates = [run.heatmap_path(sample_id)]
    if scored:
        candidates += [Path(scored) / f"{file_name(sample_id)}.npz", Path(scored) / f"{file_name(sample_id)}.npy"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    try:
        return Heatmap.from_original(read_original_map(path)) if path.suffix == ".npy" else Heatmap.load(path)
    except ValueError as exc:
        raise BenchError(str(exc)) from None


def make_example(run: RunDir, record: dict, protocol: Protocol, out: Path) -> bool:
    """Write the run's example to `out`; False (nothing written) when heatmaps or images are missing."""
    from ..core.errors import SampleError
    from ..datasets import get_dataset

    samples = run.read_samples()
    if samples.empty:
        return False
    sample_id = sorted(samples["sample_id"])[0]
    heatmap = _stored_heatmap(run, record, sample_id)
    if heatmap is None:
        return False
    config = record.get("config", {}).get("dataset", {})
    try:
        dataset = get_dataset(config.get("name") or record["dataset"], config.get("data_root"), config.get("options"),
                              bool(config.get("allow_outside_root")))
        sample = next((s for s in dataset.samples() if s.sample_id == sample_id), None)
        if sample is None:
            return False
        image = dataset.load_image(sample)
    except (BenchError, SampleError, OSError):
        return False
    backend = record_backend(record)
    arrays = example_arrays(image, heatmap, [list(b) for b in sample.boxes], protocol, backend)
    row = samples[samples["sample_id"] == sample_id].iloc[0]

    def writer(fh) -> None:
        np.savez_compressed(fh, **arrays, sample_id=np.array(sample_id), phrase=np.array(str(row["phrase"])),
                            boxes_original=np.array(json.dumps([list(b) for b in sample.boxes])))

    atomic.write_with(out, writer)
    return True
