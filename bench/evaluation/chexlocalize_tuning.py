"""CheXlocalize's per-pathology thresholds, tuned on the validation split and frozen for test.

The published `tune_heatmap_threshold.py`: for each pathology and each candidate t of
`np.arange(0.2, 0.8, 0.1)` (seven values, 0.2 ... 0.8: the float error of the step makes the stop
inclusive, 0.8000000000000003 is the last), every validation map of that pathology is resized,
min-max normalised and cut at `m > t`, its IoU with the GT taken as `calculate_iou(...,
true_pos_only=True)` (undefined unless both masks are non-empty), and the mean over the maps with
a value (`np.nanmean`) is that t's mIoU; the first t with the largest mIoU is kept, rounded to one
decimal in `tuning_results.csv`. Here the candidates are the decimals themselves (the published
ones carry float error, 0.30000000000000004, and the kept value is the rounded 0.3: a map value
between the two is the only difference). The published maps are resized and normalised in
float32, the harness's in float64: a pixel within float32 rounding of a candidate can fall on the
other side of it (seen on synthetic maps upsampled by a whole factor, where interpolated values
land exactly on 0.4 or 0.6). A mean that is undefined at every t keeps 0.2, as
published; an undefined mean at some t never wins (the published `max` over a list with NaN
depends on where the NaN stands).

The result is written as a protocol file (`protocol_toml`): the base protocol with
`segmentation = "thresholds"` and the `[metrics.seg_thresholds]` table, so the thresholds are part
of the protocol's fingerprint and `--protocol FILE` scores the test split with them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import fields, replace
from typing import Any, Iterable

import numpy as np

from .chexlocalize import seg_iou, threshold_segmentation
from .protocols import _SECTIONS, _TOML_NAMES, Protocol

CANDIDATES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def tune_thresholds(items: Iterable[tuple[str, np.ndarray, np.ndarray]],
                    candidates: tuple[float, ...] = CANDIDATES) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The threshold of each category maximising its mean IoU; `items` are (category, normalised map on the
    original grid, GT mask). Returns (thresholds, each category's mean IoU per candidate)."""
    ious: dict[str, list[list[float]]] = {}
    for category, normalised, gt in items:
        per = ious.setdefault(category, [[] for _ in candidates])
        for k, t in enumerate(candidates):
            per[k].append(seg_iou(threshold_segmentation(normalised, t), gt))
    chosen, curves = {}, {}
    for category in sorted(ious):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = [float(np.nanmean(v)) if v else float("nan") for v in ious[category]]
        curves[category] = means
        defined = [m for m in means if not np.isnan(m)]
        chosen[category] = candidates[means.index(max(defined))] if defined else candidates[0]
    return chosen, curves


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def protocol_toml(protocol: Protocol) -> str:
    """A protocol file that loads back to `protocol`: name, description, reproduces, then every field that
    differs from the harness's default, in its section."""
    defaults = {f.name: (f.default_factory() if callable(f.default_factory) else f.default)  # type: ignore[misc]
                for f in fields(Protocol)}
    lines = [f"name = {_toml_value(protocol.name)}", f"description = {_toml_value(protocol.description)}",
             f"reproduces = {_toml_value(protocol.reproduces)}"]
    for section, keys in _SECTIONS.items():
        body = []
        for key in keys:
            attr = _TOML_NAMES.get(key, key)
            value = getattr(protocol, attr)
            if value != defaults[attr]:
                body.append(f"{key} = {_toml_value(value)}")
        if body:
            lines += ["", f"[{section}]", *body]
    return "\n".join(lines) + "\n"


def tuned_protocol(base: Protocol, thresholds: dict[str, float], name: str, source: str) -> Protocol:
    """`base` with CheXlocalize's tuned-threshold rule and `thresholds`, named `name` (the file's stem)."""
    table = {k: float(v) for k, v in sorted(thresholds.items())}
    return replace(base, name=name, segmentation="thresholds", seg_thresholds=table,
                   description=f"{base.name} with per-category thresholds m > t tuned on the validation split "
                               f"({source}) instead of Otsu's: " + ", ".join(f"{k} {v:g}" for k, v in table.items()),
                   reproduces=base.reproduces)


__all__ = ["CANDIDATES", "protocol_toml", "tune_thresholds", "tuned_protocol"]
