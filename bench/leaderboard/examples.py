"""The overlay example of a run: one downscaled image with the method's map and the GT boxes.

A box method's example shows its boxes rasterised as the map (`boxes_to_heatmap`) with the boxes
themselves drawn (`pred_boxes`); a heatmap method's example under a box protocol also draws the
boxes the protocol's conversion made of its map.

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
from ..evaluation.box_scoring import heatmap_boxes
from ..evaluation.conversions import prediction_heatmap
from ..evaluation.protocols import Protocol
from ..running.box_files import read_prediction
from ..running.rundir import RunDir, file_name, record_backend, record_output
from ..viewer.thumbnails import example_arrays, stored_heatmap


def make_example(run: RunDir, record: dict, protocol: Protocol, out: Path) -> bool:
    """Write the run's example to `out`; False (nothing written) when heatmaps or images are missing."""
    from ..core.errors import SampleError
    from ..datasets import get_dataset

    samples = run.read_samples()
    if samples.empty:
        return False
    sample_id = sorted(samples["sample_id"])[0]
    boxes_run = record_output(record) == "boxes"
    heatmap = None if boxes_run else stored_heatmap(run, record, sample_id)
    if heatmap is None and not boxes_run:
        return False
    config = record.get("config", {}).get("dataset", {})
    try:
        dataset = get_dataset(config.get("name") or record["dataset"], config.get("data_root"), config.get("options"),
                              bool(config.get("allow_outside_root")))
        sample = next((s for s in dataset.samples() if s.sample_id == sample_id), None)
        if sample is None:
            return False
        image = dataset.load_image(sample)
        predicted = None
        if boxes_run:
            pred = read_prediction(run.boxes / f"{file_name(sample_id)}.json", sample)
            heatmap, predicted = prediction_heatmap(pred, sample.height, sample.width, protocol.boxes_to_heatmap), pred
    except (BenchError, SampleError, OSError):
        return False
    backend = record_backend(record)
    if predicted is None and protocol.scores_boxes:
        predicted = heatmap_boxes(heatmap, protocol, backend)
    arrays = example_arrays(image, heatmap, [list(b) for b in sample.boxes], protocol, backend,
                            pred_boxes=None if predicted is None else [list(b) for b in predicted.boxes])
    row = samples[samples["sample_id"] == sample_id].iloc[0]

    def writer(fh) -> None:
        np.savez_compressed(fh, **arrays, sample_id=np.array(sample_id), phrase=np.array(str(row["phrase"])),
                            boxes_original=np.array(json.dumps([list(b) for b in sample.boxes])))

    atomic.write_with(out, writer)
    return True
