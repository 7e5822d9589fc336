"""What every method backend provides: heatmaps (or boxes) for batches of samples.

A method's spec says what it outputs (`output = "heatmap" | "boxes" | "mask"`, heatmap when
absent): a heatmap method implements `heatmaps(samples, dataset) -> list[Heatmap]`, a box method
`boxes(samples, dataset) -> list[BoxPrediction]`, a mask method `masks(samples, dataset) ->
list[Heatmap]` (values 0 or 1). The runner calls the one the spec names, stores the result in the
run folder (`boxes/` for boxes, `heatmaps/` for maps and masks), and the protocol converts it to
the kind its metrics score where needed (`bench.evaluation.conversions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..core.errors import BenchError
from ..core.heatmap import Heatmap
from ..core.params import Param, check_params, schema_of
from ..core.predictions import OUTPUT_KINDS, BoxPrediction
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


#: the method a backend implements for each output kind the harness runs
OUTPUT_METHODS = {"heatmap": "heatmaps", "boxes": "boxes", "mask": "masks"}


def check_output(spec: dict, cls: type) -> None:
    """BenchError when the spec's `output` is not a kind the harness runs, or the backend does not
    implement the method of that kind (`heatmaps`, `boxes` or `masks`)."""
    output = spec.get("output", "heatmap")
    where = f"adapters/{spec['name']}.toml"
    if output not in OUTPUT_KINDS:
        raise BenchError(f"{where}: output = {output!r} is not one of {', '.join(OUTPUT_KINDS)}")
    if output not in OUTPUT_METHODS:
        raise BenchError(f"{where}: output = {output!r} is not run by the harness (methods output "
                         f"{' or '.join(OUTPUT_METHODS)})")
    own = OUTPUT_METHODS[output]
    if getattr(cls, own) is getattr(Method, own):
        raise BenchError(f"{where}: output = {output!r}, but backend {cls.__name__} implements no {own}()")


class Method:
    """A grounding method: `spec` is the parsed adapter TOML (name, backend, params...).

    `known_params` declares the `[params]` fields the backend reads: a mapping of name to
    `bench.Param` (type, default, range, choices) or to a bare type (`{"grid": int}`), or a plain
    tuple of names (any value). A spec with another field, or a value of the wrong type or out of
    range, is refused in one line; `self.params` holds the checked values with the declared
    defaults filled in. None: the backend checks its params itself.
    """

    known_params: Mapping[str, Param | type] | tuple[str, ...] | None = None

    def __init__(self, spec: dict, context: RunContext) -> None:
        check_output(spec, type(self))
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

    @property
    def output(self) -> str:
        """What the method outputs: "heatmap" (the default), "boxes" or "mask" (the spec's `output` field)."""
        return self.spec.get("output", "heatmap")

    def heatmaps(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        """One heatmap per sample, in order, on the method's native grid (methods with output "heatmap")."""
        raise NotImplementedError

    def boxes(self, samples: Sequence[Sample], dataset: Dataset) -> list[BoxPrediction]:
        """One `BoxPrediction` per sample, in order (methods with output "boxes"): boxes (x, y, w, h) in
        original pixels, best first, with one score per box or none; a sample the method gives no usable
        boxes for (an unparsable generation) is `BoxPrediction((), failure="why")`, never a silent empty box."""
        raise NotImplementedError

    def masks(self, samples: Sequence[Sample], dataset: Dataset) -> list[Heatmap]:
        """One mask per sample, in order (methods with output "mask"): a `Heatmap` whose values are 0 or 1 (NaN
        outside the field of view) on the method's native grid; stored and scored as a map of those values."""
        raise NotImplementedError

    def provenance(self) -> dict:
        """Checkpoint identifiers and hashes, versions: recorded in run.json."""
        return {}
