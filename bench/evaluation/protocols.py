"""Evaluation protocols: an explicit parameter object, loaded from `protocols/*.toml`.

A protocol says where metrics are evaluated (the original image, or the 512 centre crop of the
diffusion-model papers), how a native heatmap becomes values there (interpolation, what lies
outside the field of view, clipping, normalisation, per method backend if needed), which samples
and boxes are scored, how each metric is defined (threshold set and comparison, CNR variance and
box handling, exact or binned AUC, GMM binary masks) and how per-sample scores are summarised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import numpy as np

from ..core.errors import BenchError
from ..core.specs import SpecFile, find_spec, spec_names
from .box_metrics import BOX_METRICS, POOLED_COUNTS
from .metrics import DEFAULT_THRESHOLDS

HEATMAP_METRICS = ("cnr", "cnr_abs", "iou", "miou", "auc_roc", "pointing_game",
                   "iou_fg", "miou_fgbg", "bbox_iou_fg", "bbox_miou_fgbg", "auc_roc_binned", "distance", "dice")
#: `dice` fills one column `dice@t` per threshold, as `iou` does: the Dice (F1) of the map thresholded at t
#: (the protocol's comparison and threshold rounding) with the GT, 2|pred & G| / (|pred| + |G|), 0 when both
#: are empty; Dice is what mask-segmentation benchmarks report, and a per-threshold column keeps it comparable.
METRIC_BASES = HEATMAP_METRICS + ("seg_iou", "hit_rate") + BOX_METRICS
#: `auc_roc` is exact unless `auc = "binned"`; `auc_roc_binned` is always the AUC over `auc_bins` thresholds
#: (Vilouras et al.'s torcheval AUC), so a protocol can report both side by side.
#: metrics computed from a binary mask (GMM) rather than from thresholds of the continuous map
#: `distance` (centre of the mask's bounding rectangle to the centre of the GT's, NaN for samples with several
#: boxes) is averaged over the samples that have a value.
MASK_METRICS = ("iou_fg", "miou_fgbg", "bbox_iou_fg", "bbox_miou_fgbg", "distance")
#: the metrics of the protocols that make a mask of the map first (`segmentation`: CheXlocalize's IoU of that
#: mask, undefined unless mask and GT are both non-empty, and its hit rate), `bench.evaluation.segmentation_route`
SEGMENTATION_METRICS = ("seg_iou", "hit_rate")
#: metrics where a smaller value is better (every other metric: larger is better)
LOWER_IS_BETTER = ("distance",)
FLOAT32_MAX = 3.4028234663852886e38

_CHOICES: dict[str, tuple[str, ...]] = {
    "eval_grid": ("original", "centre_crop"),
    "interpolation": ("nearest", "bilinear"),
    "outside": ("zero", "exclude"),
    "normalise": ("minmax", "none"),
    "precision": ("float64", "float16"),
    "stored_precision": ("float64", "float32", "float16"),
    "minmax_precision": ("float64", "float32", "float16"),
    "threshold_precision": ("float64", "float32", "float16"),
    "gmm_input": ("normalised", "stored"),
    "gmm_precision": ("float64", "float32", "float16"),
    "on_no_box_in_crop": ("score", "exclude"),
    "threshold_op": (">", ">="),
    "cnr_variance": ("population", "sample"),
    "cnr_boxes": ("union", "per_box"),
    "cnr_zero_variance": ("zero", "float32_max"),
    "auc": ("exact", "binned"),
    "binary_mask": ("none", "gmm"),
    "gmm_seed": ("fixed", "none"),
    "on_empty_mask": ("zero", "score"),
    "on_gmm_error": ("empty", "previous"),
    "bbox_rect": ("inclusive", "exclusive_end"),
    "grouping": ("phrase", "category"),
    "split": ("test", "train", "val", "all"),
    "drop_boxes": ("none", "label_crop"),
    "box_coords": ("float", "truncate"),
    "weighted_nan": ("skip", "zero"),
    "boxes_to_heatmap": ("max_score", "binary"),
    "heatmap_to_mask": ("otsu", "threshold"),
    "mask_to_boxes": ("components", "largest"),
    "component_score": ("max", "mean"),
    "segmentation": ("none", "otsu", "thresholds"),
    "bootstrap": ("stratified", "images"),
}

# TOML section of each field (the file groups related choices; the object is flat)
_SECTIONS: dict[str, tuple[str, ...]] = {
    "grid": ("eval_grid", "crop_size", "gt_antialias", "interpolation", "outside"),
    "values": ("clip_min", "clip_max", "normalise", "stored_precision", "precision", "minmax_precision", "backend"),
    "metrics": ("metrics", "thresholds", "threshold_op", "threshold_precision", "cnr_variance", "cnr_boxes",
                "cnr_zero_variance", "cnr_variance_floor", "auc", "auc_bins", "binary_mask", "gmm_input", "gmm_precision",
                "gmm_seed", "gmm_majority", "on_empty_mask", "on_gmm_error", "bbox_rect", "segmentation", "seg_thresholds",
                "point_radius"),
    "samples": ("split", "grouping", "box_coords", "drop_boxes", "model_input", "require_category_in_phrase", "on_no_box_in_crop"),
    "conversions": ("boxes_to_heatmap", "heatmap_to_mask", "mask_threshold", "mask_to_boxes", "component_score"),
    "summary": ("groups", "bootstrap", "bootstrap_resamples", "ci_level", "seed", "weighted_nan", "gmm_seeds"),
}
_TOML_NAMES = {"backend": "backend_values"}
_POLICY_KEYS = ("clip_min", "clip_max", "normalise")

# options added after the first protocol files: hashed only when set away from their default, so the
# fingerprints of protocols that do not use them stay what they were
_LATER_OPTIONS = ("crop_size", "gt_antialias", "backend_values", "cnr_zero_variance", "cnr_variance_floor", "binary_mask", "gmm_seed",
                  "gmm_majority", "on_empty_mask", "on_gmm_error", "bbox_rect", "drop_boxes", "model_input",
                  "precision", "require_category_in_phrase", "weighted_nan", "minmax_precision",
                  "threshold_precision", "gmm_input", "gmm_precision", "on_no_box_in_crop", "box_coords", "stored_precision",
                  "boxes_to_heatmap", "heatmap_to_mask", "mask_threshold", "mask_to_boxes", "component_score",
                  "segmentation", "seg_thresholds", "bootstrap", "point_radius")


@dataclass(frozen=True)
class ValuePolicy:
    """How raw map values become scored values: clip, then min-max (or not).

    `minmax_precision` is the arithmetic of both steps (the map is cast to it first, as a published
    code that stores or computes its map at that precision does); `precision` rounds the result.
    """

    clip_min: float | None = None
    clip_max: float | None = None
    normalise: str = "minmax"
    precision: str = "float64"
    minmax_precision: str = "float64"


@dataclass(frozen=True)
class Protocol:
    """Every choice that changes a number, with the harness's defaults."""

    name: str
    description: str = ""
    reproduces: str = ""
    eval_grid: str = "original"
    crop_size: int = 512
    gt_antialias: bool = True
    interpolation: str = "nearest"
    outside: str = "zero"
    clip_min: float | None = None
    clip_max: float | None = None
    normalise: str = "minmax"
    stored_precision: str = "float64"
    precision: str = "float64"
    minmax_precision: str = "float64"
    backend_values: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)
    metrics: tuple[str, ...] = METRIC_BASES[:6]
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    threshold_op: str = ">"
    threshold_precision: str = "float64"
    cnr_variance: str = "population"
    cnr_boxes: str = "union"
    cnr_zero_variance: str = "zero"
    cnr_variance_floor: float = 0.0
    auc: str = "exact"
    auc_bins: int = 5
    binary_mask: str = "none"
    gmm_input: str = "normalised"
    gmm_precision: str = "float64"
    gmm_seed: str = "fixed"
    gmm_majority: bool = True
    on_empty_mask: str = "zero"
    on_gmm_error: str = "empty"
    bbox_rect: str = "inclusive"
    segmentation: str = "none"
    seg_thresholds: dict[str, float] = field(default_factory=dict, hash=False)
    #: the pointing game's tolerance on ground truth given as points, in original pixels: the peak hits when it
    #: lies within this Euclidean distance of a GT point (inclusive); 15 px, the tolerance of Zhang et al.,
    #: "Top-down neural attention by excitation backprop" (ECCV 2016). Also CheXlocalize's hit rate on points.
    point_radius: float = 15.0
    split: str = "test"
    grouping: str = "phrase"
    box_coords: str = "float"
    drop_boxes: str = "none"
    model_input: int = 512
    require_category_in_phrase: bool = False
    on_no_box_in_crop: str = "score"
    groups: tuple[str, ...] = ("macro", "micro")
    bootstrap: str = "stratified"
    bootstrap_resamples: int = 10_000
    ci_level: float = 0.95
    seed: int = 0
    weighted_nan: str = "skip"
    gmm_seeds: int = 1
    boxes_to_heatmap: str = "max_score"
    heatmap_to_mask: str = "otsu"
    mask_threshold: float = 0.5
    mask_to_boxes: str = "components"
    component_score: str = "max"
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
        unknown_groups = [g for g in self.groups if g not in ("macro", "micro", "weighted")]
        if unknown_groups:
            raise BenchError(f"protocol {self.name}: unknown summary group {unknown_groups[0]!r} "
                             "(known: macro, micro, weighted)")
        self._check_combinations()
        for backend, policy in self.backend_values.items():
            self._check_policy(policy, f"values.backend.{backend}")

    def _check_combinations(self) -> None:
        for key in ("gt_antialias", "gmm_majority", "require_category_in_phrase"):
            if not isinstance(getattr(self, key), bool):
                raise BenchError(f"protocol {self.name}: {key} must be true or false")
        needs_mask = [m for m in self.metrics if m in MASK_METRICS]
        if needs_mask and self.binary_mask == "none":
            raise BenchError(f"protocol {self.name}: metric {needs_mask[0]!r} needs binary_mask = \"gmm\"")
        if self.binary_mask != "none" and self.eval_grid != "centre_crop":
            raise BenchError(f"protocol {self.name}: binary_mask = {self.binary_mask!r} needs eval_grid = \"centre_crop\"")
        if self.eval_grid == "centre_crop" and self.interpolation != "bilinear":
            raise BenchError(f"protocol {self.name}: eval_grid = \"centre_crop\" needs interpolation = \"bilinear\"")
        if self.drop_boxes != "none" and self.eval_grid != "original":
            raise BenchError(f"protocol {self.name}: drop_boxes = {self.drop_boxes!r} needs eval_grid = \"original\"")
        floor = self.cnr_variance_floor
        if isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor < float("inf"):
            raise BenchError(f"protocol {self.name}: cnr_variance_floor = {floor!r} is not a number >= 0")
        box_metrics = [m for m in self.metrics if m in BOX_METRICS]
        if box_metrics and len(box_metrics) != len(self.metrics):
            other = next(m for m in self.metrics if m not in BOX_METRICS)
            raise BenchError(f"protocol {self.name}: box metrics ({box_metrics[0]!r}) and heatmap metrics ({other!r}) "
                             "go in separate protocols")
        if box_metrics and (self.eval_grid, self.drop_boxes) != ("original", "none"):
            raise BenchError(f"protocol {self.name}: box metrics need eval_grid = \"original\" and drop_boxes = \"none\"")
        radius = self.point_radius
        if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not 0 <= radius < float("inf"):
            raise BenchError(f"protocol {self.name}: point_radius = {radius!r} is not a number >= 0 (original pixels)")
        threshold = self.mask_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise BenchError(f"protocol {self.name}: mask_threshold = {threshold!r} is not a number in [0, 1]")
        self._check_segmentation()
        if self.bootstrap == "images" and any(g not in ("macro", "micro") for g in self.groups):
            raise BenchError(f"protocol {self.name}: bootstrap = \"images\" summarises the groups macro and micro only")
        if self.auc_bins < 2:
            raise BenchError(f"protocol {self.name}: auc_bins must be at least 2")
        if self.gmm_seeds < 1:
            raise BenchError(f"protocol {self.name}: gmm_seeds must be at least 1")
        if self.crop_size < 1 or self.model_input < 1:
            raise BenchError(f"protocol {self.name}: crop_size and model_input must be positive")
        if self.stored_precision != "float64":
            if self.eval_grid != "centre_crop" or self.cnr_boxes != "union":
                raise BenchError(f"protocol {self.name}: stored_precision needs eval_grid = \"centre_crop\" and "
                                 "cnr_boxes = \"union\"")
            set_too = [k for k in ("precision", "minmax_precision", "gmm_precision") if getattr(self, k) != "float64"]
            if set_too:
                raise BenchError(f"protocol {self.name}: stored_precision sets the precision of every step; "
                                 f"leave {set_too[0]} out")

    def _check_segmentation(self) -> None:
        """The segmentation route computes its own two metrics on the original grid, and only those."""
        seg = [m for m in self.metrics if m in SEGMENTATION_METRICS]
        if seg and self.segmentation == "none":
            raise BenchError(f"protocol {self.name}: metric {seg[0]!r} needs segmentation = \"otsu\" or \"thresholds\"")
        if self.segmentation == "none":
            if self.seg_thresholds:
                raise BenchError(f"protocol {self.name}: seg_thresholds needs segmentation = \"thresholds\"")
            return
        other = [m for m in self.metrics if m not in SEGMENTATION_METRICS]
        if other:
            raise BenchError(f"protocol {self.name}: segmentation = {self.segmentation!r} scores only "
                             f"{', '.join(SEGMENTATION_METRICS)}, not {other[0]!r}")
        if self.eval_grid != "original" or self.drop_boxes != "none":
            raise BenchError(f"protocol {self.name}: segmentation needs eval_grid = \"original\" and drop_boxes = \"none\"")
        bad = [k for k, v in self.seg_thresholds.items()
               if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1]
        if bad:
            raise BenchError(f"protocol {self.name}: seg_thresholds.{bad[0]} must be a number in [0, 1]")
        if self.segmentation == "thresholds" and not self.seg_thresholds:
            raise BenchError(f"protocol {self.name}: segmentation = \"thresholds\" needs a seg_thresholds table "
                             "(category = threshold; `bench tune thresholds` writes one)")
        if self.segmentation == "otsu" and self.seg_thresholds:
            raise BenchError(f"protocol {self.name}: seg_thresholds needs segmentation = \"thresholds\"")

    def _check_policy(self, policy: dict[str, Any], where: str) -> None:
        if not isinstance(policy, dict):
            raise BenchError(f"protocol {self.name}: [{where}] must be a table")
        unknown = [k for k in policy if k not in _POLICY_KEYS]
        if unknown:
            raise BenchError(f"protocol {self.name}: unknown key {where}.{unknown[0]} (known: {', '.join(_POLICY_KEYS)})")
        if policy.get("normalise", "minmax") not in _CHOICES["normalise"]:
            raise BenchError(f"protocol {self.name}: {where}.normalise = {policy['normalise']!r} is not one of "
                             f"{', '.join(_CHOICES['normalise'])}")
        for bound in ("clip_min", "clip_max"):
            value = policy.get(bound)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise BenchError(f"protocol {self.name}: {where}.{bound} must be a number")

    @property
    def gmm_dtype(self) -> str:
        """The precision the GMM sees the map at and its threshold is rounded to."""
        return self.stored_precision if self.stored_precision != "float64" else self.gmm_precision

    @property
    def ddof(self) -> int:
        return 1 if self.cnr_variance == "sample" else 0

    @property
    def strict(self) -> bool:
        return self.threshold_op == ">"

    @property
    def zero_variance_value(self) -> float:
        """What a CNR with a zero denominator and a non-zero numerator becomes (its sign kept)."""
        return FLOAT32_MAX if self.cnr_zero_variance == "float32_max" else 0.0

    @property
    def scores_boxes(self) -> bool:
        """True when the protocol's metrics are box metrics (heatmaps are converted to boxes), False when
        they are heatmap metrics (boxes are converted to heatmaps)."""
        return bool(self.metrics) and self.metrics[0] in BOX_METRICS

    @property
    def support_columns(self) -> list[str]:
        """Columns of the samples table besides the metrics that the summary reads (the pooled IoU's counts)."""
        return list(POOLED_COUNTS) if "pooled_iou" in self.metrics else []

    @property
    def columns(self) -> list[str]:
        """Metric column names of the samples table, in order."""
        cols: list[str] = []
        for m in self.metrics:
            if m == "iou":
                cols.extend(iou_column(t) for t in self.thresholds)
            elif m == "dice":
                cols.extend(dice_column(t) for t in self.thresholds)
            else:
                cols.append(m)
        return cols

    def value_policy(self, backend: str | None = None) -> ValuePolicy:
        """The value policy for maps of a method backend: the protocol's, or its per-backend override."""
        base = {"clip_min": self.clip_min, "clip_max": self.clip_max, "normalise": self.normalise}
        if backend is not None and backend in self.backend_values:
            base.update(self.backend_values[backend])
        if self.stored_precision != "float64":
            return ValuePolicy(**base, precision=self.stored_precision, minmax_precision=self.stored_precision)
        return ValuePolicy(**base, precision=self.precision, minmax_precision=self.minmax_precision)

    def rounded_threshold(self, t: float) -> float:
        """A threshold as the published comparison sees it: rounded to `threshold_precision`."""
        return round_to(t, self.threshold_precision)

    def fingerprint(self) -> str:
        """Hash of every choice that changes a score (name and wording excluded; `gmm_seeds` adds columns
        beside the scores and changes none of them)."""
        defaults = {f.name: (f.default_factory() if callable(f.default_factory) else f.default)  # type: ignore[misc]
                    for f in fields(self)}
        data = {k: v for k, v in asdict(self).items()
                if k not in ("name", "description", "reproduces", "notes", "gmm_seeds")
                and not (k in _LATER_OPTIONS and v == defaults[k])}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Protocol":
        names = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)


def round_to(value: float, precision: str) -> float:
    """`value` rounded to the nearest float16 / float32 (unchanged for float64)."""
    return float(np.dtype(precision).type(value))


def iou_column(t: float) -> str:
    return f"iou@{t:g}"


def dice_column(t: float) -> str:
    return f"dice@{t:g}"


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
                    raise BenchError(f"{source}: unknown field {key}.{sub} (known: {', '.join(_SECTIONS[key])})")
                flat[_TOML_NAMES.get(sub, sub)] = sub_value
        elif key in top:
            flat[key] = value
        else:
            known = ", ".join(sorted(top | set(_SECTIONS)))
            raise BenchError(f"{source}: unknown field {key!r} (known: {known})")
    if "name" not in flat:
        raise BenchError(f"{source}: missing 'name'")
    for bound in ("clip_min", "clip_max"):
        value = flat.get(bound)
        if value is not None and not isinstance(value, (int, float)):
            raise BenchError(f"{source}: {bound} must be a number")
    _check_types(flat, source)
    try:
        return Protocol(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in flat.items()})
    except TypeError as exc:
        raise BenchError(f"{source}: {exc}") from None


def _check_types(flat: dict[str, Any], source: str) -> None:
    """BenchError naming the key whose value has the wrong type (checked before any work, not at the summary)."""
    defaults = {f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
                for f in fields(Protocol) if f.default is not MISSING or f.default_factory is not MISSING}
    for key, value in flat.items():
        default = defaults.get(key)
        if default is None:
            continue
        if isinstance(default, bool):
            ok, want = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok, want = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, str):
            ok, want = isinstance(value, str), "a string"
        elif isinstance(default, tuple):
            ok, want = isinstance(value, (list, tuple)), "a list"
        elif isinstance(default, dict):
            ok, want = isinstance(value, dict), "a table"
        else:
            continue
        if not ok:
            raise BenchError(f"{source}: {key} = {value!r} must be {want}")
        if isinstance(default, tuple) and default and all(isinstance(d, (int, float)) for d in default) \
                and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise BenchError(f"{source}: {key} = {value!r} must be a list of numbers")


def protocol_names() -> list[str]:
    return spec_names("protocols")


def protocol_spec_file(name: str) -> SpecFile:
    """The file protocol `name` (a registered name or a path to a .toml file) is read from."""
    return find_spec("protocols", name)


def load_protocol(name: str) -> Protocol:
    """The protocol `name` from `protocols/NAME.toml`, the spec search path, or a file path."""
    file = protocol_spec_file(name)
    protocol = protocol_from_toml(file.read(), file.label)
    if protocol.name != file.name:
        raise BenchError(f"{file.label}: name {protocol.name!r} does not match the file name")
    return protocol
