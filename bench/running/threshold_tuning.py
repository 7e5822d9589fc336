"""`bench tune thresholds`: CheXlocalize's per-category thresholds tuned on a method's validation maps.

The maps (a run's folder, its `heatmaps/`, or a folder of maps as `bench score` reads them) of the
dataset's validation samples are put on the original grid and normalised as the base protocol
does, every candidate threshold is scored (`bench.evaluation.chexlocalize_tuning`), and the result
is written as a protocol file: the base protocol with `segmentation = "thresholds"` and the tuned
table, named by the file's stem, ready for `bench score --protocol FILE` on the test split.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

from ..core import atomic
from ..core.errors import BenchError, SampleError
from ..datasets import get_dataset
from ..evaluation.chexlocalize_tuning import protocol_toml, tune_thresholds, tuned_protocol
from ..evaluation.protocols import Protocol, load_protocol
from ..evaluation.resample import to_original
from ..evaluation.scoring import check_values, prepare_values, select_samples
from ..evaluation.segmentation_route import gt_mask
from .runner import _user_heatmap_loader


def tune_threshold_protocol(heatmaps: Path, dataset_name: str, out: Path, base: str = "chexlocalize2022",
                            split: str = "val", data_root: Path | None = None,
                            options: Mapping[str, str] | None = None) -> tuple[Protocol, dict[str, list[float]]]:
    """Tune, write `out` (a protocol TOML), and return the tuned protocol with each category's mean IoU per candidate."""
    out = Path(out)
    if out.suffix != ".toml":
        raise BenchError(f"--out {out}: the tuned protocol is a .toml file (its stem names the protocol)")
    protocol = load_protocol(base)
    if protocol.segmentation == "none":
        raise BenchError(f"protocol {protocol.name} makes no mask of the map (segmentation = \"none\"): nothing to tune")
    folder = Path(heatmaps)
    if (folder / "heatmaps").is_dir():
        folder = folder / "heatmaps"
    if not folder.is_dir():
        raise BenchError(f"--heatmaps {heatmaps} is not a folder")
    dataset = get_dataset(dataset_name, data_root, dict(options or {}))
    samples = select_samples(dataset.samples(), dataclasses.replace(protocol, split=split))
    if not samples:
        raise BenchError(f"dataset {dataset_name} has no {split} sample to tune on")
    load = _user_heatmap_loader(folder)

    def items():
        for s in samples:
            heatmap = load(s)
            check_values(heatmap, s.sample_id)
            yield s.category, prepare_values(to_original(heatmap, protocol.interpolation), protocol), gt_mask(s)

    try:
        chosen, curves = tune_thresholds(items())
    except SampleError as exc:
        raise BenchError(str(exc)) from None
    tuned = tuned_protocol(protocol, chosen, out.stem, f"{len(samples)} {split} maps of {dataset_name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out, protocol_toml(tuned))
    return tuned, curves


__all__ = ["tune_threshold_protocol"]
