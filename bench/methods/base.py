"""What every method backend provides: heatmaps for batches of samples."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.heatmap import Heatmap
from ..core.params import Param, check_params, schema_of
from ..core.samples import Sample
from ..datasets.base import Dataset


@dataclass
class RunContext:
    """Run-wide settings a backend may need."""

    device: str = "cpu"
    random_weights: bool = False
    weights: Path | None = None
    batch_size: int = 8
    seed: int = 0
    #: every sample of the dataset (all splits), for methods that fit on a train split
    all_samples: Sequence[Sample] = ()
    #: the samples this run scores
    eval_samples: Sequence[Sample] = ()
    extra: dict[str, Any] = field(default_factory=dict)


class Method(ABC):
    """A grounding method: `spec` is the parsed adapter TOML (name, backend, params...).

    `known_params` declares the `[params]` fields the backend reads: a mapping of name to
    `bench.Param` (type, default, range, choices) or to a bare type (`{"grid": int}`), or a plain
    tuple of names (any value). A spec with another field, or a value of the wrong type or out of
    range, is refused in one line; `self.params` holds the checked values with the declared
    defaults filled in. None: the backend checks its params itself.
    """

    known_params: Mapping[str, Param | type] | tuple[str, ...] | None = None

    def __init__(self, spec: dict, context: RunContext) -> None:
        self.spec = spec
        raw = dict(spec.get("params", {}))
        schema = schema_of(self.known_params)
        self.params: dict = raw if schema is None else check_params(raw, schema, f"adapters/{spec['name']}.toml")
        self.context = context

    @property
    def name(self) -> str:
        return self.spec["name"]

    def prepare(self, dataset: Dataset) -> None:
        """Check weights, load models, fit priors. Runs once, before any sample is processed.

        Must raise BenchError with a one-line message when a checkpoint is missing.
        """
        return None

    @abstractmethod
    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        """One heatmap per sample, in order, on the method's native grid."""

    def provenance(self) -> dict:
        """Checkpoint identifiers and hashes, versions: recorded in run.json."""
        return {}
