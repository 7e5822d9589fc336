"""Evaluation protocols: an explicit parameter object, loaded from `protocols/*.toml`.

A protocol says how a native heatmap becomes values on the evaluation grid (interpolation,
what lies outside the field of view, clipping, normalisation), which samples are scored, how
each metric is defined (threshold set and comparison, CNR variance and box handling, exact or
binned AUC) and how per-sample scores are summarised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import BenchError
from .metrics import DEFAULT_THRESHOLDS
from .specs import load_spec, spec_names

METRIC_BASES = ("cnr", "cnr_abs", "iou", "miou", "auc_roc", "pointing_game")

_CHOICES: dict[str, tuple[str, ...]] = {
    "eval_grid": ("original",),
    "interpolation": ("nearest", "bilinear"),
    "outside": ("zero", "exclude"),
    "normalise": ("minmax", "none"),
    "threshold_op": (">", ">="),
    "cnr_variance": ("population", "sample"),
    "cnr_boxes": ("union", "per_box"),
    "auc": ("exact", "binned"),
    "grouping": ("phrase", "category"),
    "split": ("test", "train", "val", "all"),
}

# TOML section of each field (the file groups related choices; the object is flat)
_SECTIONS: dict[str, tuple[str, ...]] = {
    "grid": ("eval_grid", "interpolation", "outside"),
    "values": ("clip_min", "clip_max", "normalise"),
    "metrics": ("metrics", "thresholds", "threshold_op", "cnr_variance", "cnr_boxes", "auc", "auc_bins"),
    "samples": ("split", "grouping"),
    "summary": ("groups", "bootstrap_resamples", "ci_level", "seed"),
}


@dataclass(frozen=True)
class Protocol:
    """Every choice that changes a number, with the harness's defaults."""

    name: str
    description: str = ""
    reproduces: str = ""
    eval_grid: str = "original"
    interpolation: str = "nearest"
    outside: str = "zero"
    clip_min: float | None = None
    clip_max: float | None = None
    normalise: str = "minmax"
    metrics: tuple[str, ...] = METRIC_BASES
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    threshold_op: str = ">"
    cnr_variance: str = "population"
    cnr_boxes: str = "union"
    auc: str = "exact"
    auc_bins: int = 5
    split: str = "test"
    grouping: str = "phrase"
    groups: tuple[str, ...] = ("macro", "micro")
    bootstrap_resamples: int = 10_000
    ci_level: float = 0.95
    seed: int = 0
    notes: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for key, allowed in _CHOICES.items():
            value = getattr(self, key)
            if value not in allowed:
                raise BenchError(f"protocol {self.name}: {key} = {value!r} is not one of {', '.join(allowed)}")
        unknown = [m for m in self.metrics if m not in METRIC_BASES]
        if unknown:
            raise BenchError(f"protocol {self.name}: unknown metric {unknown[0]!r} (known: {', '.join(METRIC_BASES)})")
        if not self.thresholds or any(not 0 <= t <= 1 for t in self.thresholds):
            raise BenchError(f"protocol {self.name}: thresholds must be a non-empty list in [0, 1]")
        if self.bootstrap_resamples < 1 or not 0 < self.ci_level < 1:
            raise BenchError(f"protocol {self.name}: bootstrap_resamples must be >= 1 and ci_level in (0, 1)")

    @property
    def ddof(self) -> int:
        return 1 if self.cnr_variance == "sample" else 0

    @property
    def strict(self) -> bool:
        return self.threshold_op == ">"

    @property
    def columns(self) -> list[str]:
        """Metric column names of the samples table, in order."""
        cols: list[str] = []
        for m in self.metrics:
            if m == "iou":
                cols.extend(iou_column(t) for t in self.thresholds)
            else:
                cols.append(m)
        return cols

    def fingerprint(self) -> str:
        """Hash of every choice that changes a number (name and wording excluded)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("name", "description", "reproduces", "notes")}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Protocol":
        names = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)


def iou_column(t: float) -> str:
    return f"iou@{t:g}"


def protocol_from_toml(data: dict, source: str) -> Protocol:
    """Build a Protocol from a parsed TOML document, rejecting unknown keys by name."""
    flat: dict[str, Any] = {}
    top = {"name", "description", "reproduces", "notes"}
    for key, value in data.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                raise BenchError(f"{source}: [{key}] must be a table")
            for sub, sub_value in value.items():
                if sub not in _SECTIONS[key]:
                    raise BenchError(f"{source}: unknown key {key}.{sub} (known: {', '.join(_SECTIONS[key])})")
                flat[sub] = sub_value
        elif key in top:
            flat[key] = value
        else:
            raise BenchError(f"{source}: unknown key {key!r}")
    if "name" not in flat:
        raise BenchError(f"{source}: missing 'name'")
    clip = [flat.get("clip_min"), flat.get("clip_max")]
    for bound, value in zip(("clip_min", "clip_max"), clip):
        if value is not None and not isinstance(value, (int, float)):
            raise BenchError(f"{source}: {bound} must be a number")
    try:
        return Protocol(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in flat.items()})
    except TypeError as exc:
        raise BenchError(f"{source}: {exc}") from None


def protocol_names() -> list[str]:
    return spec_names("protocols")


def load_protocol(name: str) -> Protocol:
    """The protocol `name` from `protocols/NAME.toml`; BenchError if there is none."""
    data, source = load_spec("protocols", name)
    protocol = protocol_from_toml(data, source)
    if protocol.name != name:
        raise BenchError(f"{source}: name {protocol.name!r} does not match the file name")
    return protocol
