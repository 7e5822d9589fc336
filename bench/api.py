"""The public Python API: score maps in memory, accumulate scores over a loop, load, compare and
re-score runs, export tables for papers.

Every function here calls the code the `bench` command line calls (the same scoring route,
samples table, summary and bootstrap, the same comparison and re-scoring), so a number computed
from a notebook is the number `bench score` writes. Results are pandas frames with the columns of
`samples.csv` and `summary.csv`.

    import bench
    samples = bench.protocol_samples("phantom")
    scores = bench.score_maps([my_model(s) for s in samples], samples, geometry="whole")
    scores.summary
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from .core.errors import BenchError, SampleError
from .core.geometry import Geometry
from .core.heatmap import Heatmap
from .core.samples import Sample, boxes_from
from .datasets import get_dataset
from .datasets.base import Dataset
from .evaluation import protocols as _protocols
from .evaluation.protocols import Protocol
from .evaluation.scoring import ExcludedSample, score_with_boxes
from .reporting import compare as _compare
from .reporting import sensitivity as _sensitivity
from .reporting.compare import LoadedRun
from .reporting.export import comparison_table as _comparison_table
from .running.runner import eval_samples, sample_row, samples_table, summary_table, validate_all

ProtocolLike = Union[str, Path, Protocol]
#: a map's placement: a Geometry, "whole" (the grid spans the whole image) or None (original size)
GeometryLike = Union[Geometry, str, None]


def load_protocol(protocol: ProtocolLike = "default") -> Protocol:
    """A protocol by name (shipped or on the spec search path), by spec file path, or as given."""
    if isinstance(protocol, Protocol):
        return protocol
    return _protocols.load_protocol(str(protocol))


def load_dataset(name: str, data_root: str | Path | None = None,
                 options: Mapping[str, Any] | None = None, allow_outside_root: bool = False) -> Dataset:
    """The dataset `name` (built in or from an installed package) with its data root and options.

    Images its table names outside the data root are refused unless `allow_outside_root`.
    """
    return get_dataset(name, Path(data_root) if data_root is not None else None,
                       {k: str(v) for k, v in (options or {}).items()}, allow_outside_root)


def protocol_samples(dataset: str | Dataset, protocol: ProtocolLike = "default", limit: int | None = None,
                     data_root: str | Path | None = None, options: Mapping[str, Any] | None = None) -> list[Sample]:
    """The samples a protocol scores on a dataset (its split, grouping and filters), as `bench run` does."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_root, options)
    return eval_samples(ds, load_protocol(protocol), limit)[1]


@dataclass
class Scores:
    """Scored maps: the per-sample table (as samples.csv), the summary with CIs (as summary.csv)."""

    samples: pd.DataFrame
    summary: pd.DataFrame
    protocol: Protocol
    #: sample_id -> reason, for samples the protocol leaves out (or bad ones, with skip_bad)
    skipped: dict[str, str] = field(default_factory=dict)

    def metric(self, name: str, group: str = "macro") -> tuple[float, float, float]:
        """(mean, ci_low, ci_high) of one metric on one group of the summary."""
        row = self.summary[(self.summary["group"] == group) & (self.summary["metric"] == name)]
        if row.empty:
            raise BenchError(f"no {name!r} on group {group!r} (metrics: {', '.join(self.protocol.columns)})")
        r = row.iloc[0]
        return float(r["mean"]), float(r["ci_low"]), float(r["ci_high"])


def _as_arrays(maps: Any) -> list[Any]:
    """A list of 2-D maps (NumPy, torch, Heatmap) from a list, or from one 2-D or batched 3-D array."""
    if isinstance(maps, Heatmap):
        return [maps]
    if hasattr(maps, "ndim") and not isinstance(maps, (list, tuple)):
        if maps.ndim == 2:
            return [maps]
        if maps.ndim == 3:
            return [maps[i] for i in range(maps.shape[0])]
        raise BenchError(f"maps must be 2-D maps or a (batch, height, width) array, got {maps.ndim} dimensions")
    return list(maps)


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().float().cpu().numpy() if str(value.dtype) == "torch.bfloat16" \
            else value.detach().cpu().numpy()
    return np.asarray(value)


def _heatmap(value: Any, sample: Sample, geometry: GeometryLike) -> Heatmap:
    if isinstance(value, Heatmap):
        return value
    values = _numpy(value)
    if values.ndim != 2:
        raise SampleError(sample.sample_id, f"map has shape {values.shape}, expected a 2-D map")
    if isinstance(geometry, Geometry):
        return Heatmap(values, geometry)
    if geometry == "whole":
        return Heatmap(values, Geometry.whole(sample.height, sample.width, f"{values.shape[0]}x{values.shape[1]} "
                                              "grid over the whole image"))
    if geometry is not None:
        raise BenchError(f"geometry {geometry!r}: give a bench.Geometry, \"whole\" or None (original size)")
    if values.shape != (sample.height, sample.width):
        raise SampleError(sample.sample_id, f"map has shape {values.shape} but the image is "
                          f"{sample.width}x{sample.height}; pass geometry=\"whole\" or a bench.Geometry")
    return Heatmap.from_original(values)


def _per_map(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise BenchError(f"{n} maps but {len(value)} {what} values")
        return list(value)
    return [value] * n


class Scorer:
    """Accumulates scores over batches (a training or validation loop), then summarises them.

    `update(maps, samples)` scores each map against its sample at once (per-sample scores do not
    depend on each other) and keeps the rows; `compute()` returns the table and the summary with
    bootstrap CIs, identical to `bench score` on the same maps and samples. Give `samples` as
    bench.Sample objects, or `boxes` (one list of [x, y, w, h] per map, original pixels) with maps at
    the original image size or an `image_size` (height, width). `model_crop` states the model's
    centre crop for protocols that drop boxes by it (`bench score --model-crop`).
    """

    def __init__(self, protocol: ProtocolLike = "default", backend: str | None = None, skip_bad: bool = False,
                 model_crop: int | None = None) -> None:
        self.protocol = load_protocol(protocol)
        self.backend = backend
        self.skip_bad = skip_bad
        self.model_crop = model_crop
        self.reset()

    def reset(self) -> None:
        """Forget every sample scored so far."""
        self._rows: dict[str, dict] = {}
        self._order: list[str] = []
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def _samples_from_boxes(self, maps: list[Any], boxes: Sequence, categories: Any, phrases: Any,
                            image_size: Any) -> list[Sample]:
        cats = _per_map(categories, len(maps), "categories")
        texts = _per_map(phrases, len(maps), "phrases")
        if image_size is None:
            sizes: list[Any] = [None] * len(maps)
        elif len(image_size) == 2 and all(isinstance(v, (int, np.integer)) for v in image_size):
            sizes = [tuple(image_size)] * len(maps)
        else:
            sizes = _per_map(list(image_size), len(maps), "image_size")
        if len(boxes) != len(maps):
            raise BenchError(f"{len(maps)} maps but {len(boxes)} box lists")
        out = []
        start = len(self._order) + len(self.skipped)
        for i, (m, b, cat, text, size) in enumerate(zip(maps, boxes, cats, texts, sizes)):
            height, width = size if size is not None else _numpy(m.values if isinstance(m, Heatmap) else m).shape
            if isinstance(m, Heatmap):
                height, width = m.geometry.image_height, m.geometry.image_width
            out.append(Sample(str(start + i), "", int(width), int(height), str(cat), str(text), boxes_from(b)))
        return out

    def update(self, maps: Any, samples: Sample | Sequence[Sample] | None = None, *,
               boxes: Sequence[Sequence[Sequence[float]]] | None = None, geometry: GeometryLike | Sequence = None,
               categories: str | Sequence[str] = "finding", phrases: str | Sequence[str] = "",
               image_size: tuple[int, int] | Sequence[tuple[int, int]] | None = None) -> None:
        """Score a batch: one map per sample (NumPy or torch, 2-D each or one (batch, h, w) array)."""
        arrays = _as_arrays(maps)
        if samples is None:
            if boxes is None:
                raise BenchError("give the maps' samples, or their boxes")
            samples = self._samples_from_boxes(arrays, boxes, categories, phrases, image_size)
        elif isinstance(samples, Sample):
            samples = [samples]
        samples = list(samples)
        if len(samples) != len(arrays):
            raise BenchError(f"{len(arrays)} maps but {len(samples)} samples")
        geometries = _per_map(geometry, len(arrays), "geometry")
        valid = {s.sample_id for s in validate_all(samples, self.skip_bad, self.skipped, protocol=self.protocol,
                                                  skip_option="skip_bad=True")}
        for value, sample, where in zip(arrays, samples, geometries):
            if sample.sample_id in self._rows:
                raise BenchError(f"sample {sample.sample_id!r} is scored twice; call reset() between evaluations")
            if sample.sample_id not in valid:
                continue
            try:
                values, scored = score_with_boxes(_heatmap(value, sample, where), sample, self.protocol, self.backend,
                                                  self.model_crop)
            except SampleError as exc:
                if not self.skip_bad and not isinstance(exc, ExcludedSample):
                    raise BenchError(f"{exc} (pass skip_bad=True to record it and go on)") from None
                self.skipped[sample.sample_id] = exc.reason
                continue
            self._rows[sample.sample_id] = sample_row(sample, values, self.protocol, scored.boxes_json())
            self._order.append(sample.sample_id)

    def compute(self) -> Scores:
        """The samples table (in update order) and its summary with bootstrap CIs."""
        table = samples_table([self._rows[k] for k in self._order], self.protocol)
        return Scores(table, summary_table(table, self.protocol), self.protocol, dict(self.skipped))


def score_maps(maps: Any, samples: Sample | Sequence[Sample] | None = None, *, protocol: ProtocolLike = "default",
               boxes: Sequence[Sequence[Sequence[float]]] | None = None, geometry: GeometryLike | Sequence = None,
               categories: str | Sequence[str] = "finding", phrases: str | Sequence[str] = "",
               image_size: tuple[int, int] | Sequence[tuple[int, int]] | None = None,
               backend: str | None = None, skip_bad: bool = False, model_crop: int | None = None) -> Scores:
    """Score maps in memory under a protocol: the per-sample table and the summary with CIs.

    Maps are NumPy arrays or torch tensors at the original image size (NaN outside the field of
    view), or on a native grid with `geometry` ("whole", or a bench.Geometry per map), or
    bench.Heatmap objects. `backend` picks a protocol's per-backend value policy, if it has one;
    `model_crop` states the model's centre crop for protocols that drop boxes by it (vilouras2024).
    """
    scorer = Scorer(protocol, backend, skip_bad, model_crop)
    scorer.update(maps, samples, boxes=boxes, geometry=geometry, categories=categories, phrases=phrases,
                  image_size=image_size)
    return scorer.compute()


def load_run(path: str | Path, allow_modified: bool = False) -> LoadedRun:
    """A finished run directory: `.name`, `.record` (run.json), `.samples`, `.summary`, `.protocol`.

    Its tables are checked against the digests run.json records: a table edited since the run was
    written is a BenchError, or with `allow_modified=True` read anyway and listed in `.modified`
    (`.label` is then `NAME [modified]`). A run of an older harness has `.verified` False.
    """
    return _compare.load_run(Path(path), allow_modified)


@dataclass
class Comparison:
    """Runs on their common samples: per-run summaries and paired differences against the first."""

    summaries: pd.DataFrame
    differences: pd.DataFrame
    protocol: Protocol
    group: str

    def table(self, format: str = "markdown", metrics: Sequence[str] | None = None, caption: str | None = None) -> str:
        """The per-run table of `group` means [95% CI], best value marked: "latex" or "markdown"."""
        return _comparison_table(self.summaries, self.differences, self.protocol, self.group, format, metrics, caption)


def compare_runs(runs: Iterable[str | Path], group: str = "macro", metrics: Sequence[str] | None = None,
                 allow_modified: bool = False) -> Comparison:
    """`bench compare`: CIs per run and paired bootstrap differences (with p-values) against the first run.

    `allow_modified=True` reads runs whose tables differ from their digests, labelled `NAME [modified]`.
    """
    summaries, diffs, protocol = _compare.compare_runs([Path(r) for r in runs], group, metrics,
                                                       allow_modified=allow_modified)
    return Comparison(summaries, diffs, protocol, group)


@dataclass
class Rescoring:
    """Runs re-scored under several protocols (`bench compare --protocols`)."""

    #: protocol, metric, run, group, mean, n, rank (rank on the ranking group's rows)
    table: pd.DataFrame
    #: (run label, protocol name) -> that run's samples table under that protocol
    samples: dict[tuple[str, str], pd.DataFrame]


def rescore(runs: Iterable[str | Path], protocols: Sequence[ProtocolLike], metrics: Sequence[str] | None = None,
            group: str = "macro", allow_modified: bool = False) -> Rescoring:
    """Re-score every run's stored heatmaps under each protocol (cached under BENCH_CACHE) and rank on `group`.

    The maps are checked against the digest each run recorded; `allow_modified=True` scores maps
    or reads tables that differ, labelled `NAME [modified]`.
    """
    chosen = [load_protocol(p) for p in protocols]
    if not chosen:
        raise BenchError("give one or more protocols")
    long, rescored = _sensitivity.sensitivity([Path(r) for r in runs], chosen, metrics, group,
                                              allow_modified=allow_modified)
    return Rescoring(long, {(r.label, r.protocol.name): r.samples for r in rescored})


__all__ = ["Comparison", "GeometryLike", "ProtocolLike", "Rescoring", "Scorer", "Scores", "compare_runs",
           "load_dataset", "load_protocol", "load_run", "protocol_samples", "rescore", "score_maps"]
