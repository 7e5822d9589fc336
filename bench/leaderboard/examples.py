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
from ..evaluation.protocols import Protocol
from ..running.rundir import RunDir, record_backend
from ..viewer.thumbnails import example_arrays, stored_heatmap


def make_example(run: RunDir, record: dict, protocol: Protocol, out: Path) -> bool:
    """Write the run's example to `out`; False (nothing written) when heatmaps or images are missing."""
    from ..core.errors import SampleError
    from ..datasets import get_dataset

    samples = run.read_samples()
    if samples.empty:
        return False
    sample_id = sorted(samples["sample_id"])[0]
    heatmap = stored_heatmap(run, record, sample_id)
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
