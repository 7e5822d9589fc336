"""What every method backend provides: heatmaps for batches of samples."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..core.heatmap import Heatmap
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

    `known_params` lists the `[params]` fields the backend reads: a spec with any other field is
    refused with the known ones named (None: the backend checks its params itself).
    """

    known_params: tuple[str, ...] | None = None

    def __init__(self, spec: dict, context: RunContext) -> None:
        self.spec = spec
        self.params: dict = dict(spec.get("params", {}))
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
