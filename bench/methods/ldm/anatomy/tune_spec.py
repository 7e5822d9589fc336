"""The spec of a location-codebook tuning run (`bench tune anatomy --spec NAME|PATH`), read from TOML.

Every hyper-parameter is a field; the defaults are the paper's (Vilouras et al. 2025, section 4.4):
batch 1, learning rate 1e-4, alpha 0.1, epsilon 1e-5, +-5 % jitter, 30 timesteps in [30, 60] of
100 inference steps. Built-in specs live in `tuning/`; a path to any TOML file works too.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ....core.errors import BenchError
from ....core.params import Param

TUNING_DIR = Path(__file__).resolve().parents[1] / "tuning"

SECTIONS: dict[str, dict[str, Any]] = {
    "data": {"source": "dataset", "dataset": "phantom", "split": "train", "options": {}, "data_root": "",
             "reports": "", "parser": "auto", "limit": 0},
    "lut": {"file": "phantom"},
    "train": {"seed": 0, "steps": 6480, "batch": 1, "lr": 1e-4, "optimizer": "adam", "weight_decay": 0.0,
              "alpha": 0.1, "epsilon": 1e-5, "jitter": 0.05, "diversity_weight": 1.0, "localisation_weight": 1.0,
              "init": "name"},
    "diffusion": {"num_inference_steps": 100, "timestep_spacing": "", "steps": "30:60", "layers": []},
    "output": {"checkpoint_every": 100, "log_every": 10},
}
TOP = {"name": "", "description": "", "method": "anatomy_ldm"}
CHOICES = {("data", "source"): ("dataset", "reports"), ("data", "parser"): ("auto", "rules", "radgraph"),
           ("train", "optimizer"): ("adam", "adamw", "sgd"), ("train", "init"): ("name", "random")}


@dataclass(frozen=True)
class TuneSpec:
    """A tuning spec: top-level fields and one dict per section, defaults filled in."""

    name: str
    description: str
    method: str
    data: dict
    lut: dict
    train: dict
    diffusion: dict
    output: dict
    source: str = ""
    raw: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "method": self.method, "data": self.data,
                "lut": self.lut, "train": self.train, "diffusion": self.diffusion, "output": self.output}

    @property
    def digest(self) -> str:
        """sha256 of the filled-in spec but for train.steps and [output]: a run folder's checkpoints
        belong to one digest, and a run can be resumed with more steps."""
        record = self.to_dict()
        record.pop("output")
        record["train"] = {k: v for k, v in record["train"].items() if k != "steps"}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _typed(section: str, key: str, value: Any, default: Any, source: str) -> Any:
    """`value` checked against the type of its default (and the field's choices), by the parameter schema."""
    kind = (type(default), list) if key == "steps" else type(default)
    param = Param(kind, choices=tuple(CHOICES.get((section, key), ())))
    try:
        return param.convert(value)
    except ValueError:
        raise BenchError(f"{source}: {section}.{key} = {value!r} is not {param.expected()}") from None


def load_tune_spec(name_or_path: str | Path) -> TuneSpec:
    """A built-in spec by name (`tuning/<name>.toml`) or a TOML file; BenchError in one line on
    unknown fields, wrong types or values."""
    path = Path(name_or_path)
    if not path.suffix:
        path = TUNING_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in TUNING_DIR.glob("*.toml")))
            raise BenchError(f"unknown tuning spec {name_or_path!r} (built in: {known}; or give a .toml path)")
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise BenchError(f"tuning spec {source}: {exc}") from None
    unknown = sorted(set(raw) - set(TOP) - set(SECTIONS))
    if unknown:
        raise BenchError(f"{source}: unknown field {unknown[0]!r} (known: {', '.join([*TOP, *SECTIONS])})")
    filled: dict[str, Any] = {k: raw.get(k, v) for k, v in TOP.items()}
    for key in TOP:
        if not isinstance(filled[key], str):
            raise BenchError(f"{source}: {key} should be a string")
    for section, defaults in SECTIONS.items():
        given = raw.get(section, {})
        if not isinstance(given, dict):
            raise BenchError(f"{source}: [{section}] should be a table")
        extra = sorted(set(given) - set(defaults))
        if extra:
            raise BenchError(f"{source}: unknown field {section}.{extra[0]} (known: {', '.join(defaults)})")
        filled[section] = {k: _typed(section, k, given[k], v, source) if k in given else v
                           for k, v in defaults.items()}
    train = filled["train"]
    for key in ("steps", "batch"):
        if train[key] < 1:
            raise BenchError(f"{source}: train.{key} must be at least 1")
    if train["lr"] <= 0 or not 0 <= train["jitter"] < 0.5:
        raise BenchError(f"{source}: train.lr must be positive and train.jitter in [0, 0.5)")
    if filled["output"]["checkpoint_every"] < 1 or filled["output"]["log_every"] < 1:
        raise BenchError(f"{source}: output.checkpoint_every and output.log_every must be at least 1")
    return TuneSpec(name=filled["name"] or path.stem, description=filled["description"], method=filled["method"],
                    data=filled["data"], lut=filled["lut"], train=train, diffusion=filled["diffusion"],
                    output=filled["output"], source=source, raw=raw)


__all__ = ["TUNING_DIR", "TuneSpec", "load_tune_spec"]
