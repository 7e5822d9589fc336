"""Which diffusion step a U-Net call belongs to, how its batch is laid out, and which steps are read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

HALVES = ("uncond", "cond")


@dataclass(frozen=True)
class BatchLayout:
    """Rows of one U-Net call: `samples` rows per half, halves stacked in the order given.

    Classifier-free guidance stacks ("uncond", "cond"); a call that needs one half only holds that one.
    """

    samples: int
    halves: tuple[str, ...] = ("cond",)

    def __post_init__(self) -> None:
        if self.samples <= 0:
            raise ValueError("a batch needs at least one sample")
        if not self.halves or len(set(self.halves)) != len(self.halves):
            raise ValueError(f"halves must be distinct and non-empty, got {self.halves}")
        unknown = set(self.halves) - set(HALVES)
        if unknown:
            raise ValueError(f"unknown halves {sorted(unknown)}; expected among {HALVES}")

    @property
    def rows(self) -> int:
        return self.samples * len(self.halves)

    def half_rows(self, half: str) -> slice:
        """The rows that hold `half` (one per sample, in sample order)."""
        if half not in self.halves:
            raise ValueError(f"this call ran the halves {self.halves}, not {half!r}")
        start = self.halves.index(half) * self.samples
        return slice(start, start + self.samples)


@dataclass(frozen=True)
class StepInfo:
    """One step of a diffusion loop: loop index, timestep t, loop length, batch layout of the call."""

    index: int
    timestep: int
    total: int
    layout: BatchLayout


@dataclass(frozen=True)
class StepSelection:
    """Steps to read, by loop index, by timestep, or the last n of the loop; none given = every step.

    Given together, a step is read when it matches any of them.
    """

    indices: frozenset[int] | None = None
    timesteps: frozenset[int] | None = None
    last: int | None = None

    @classmethod
    def every(cls) -> "StepSelection":
        return cls()

    @classmethod
    def at_indices(cls, indices: Iterable[int]) -> "StepSelection":
        return cls(indices=frozenset(int(i) for i in indices))

    @classmethod
    def at_timesteps(cls, timesteps: Iterable[int]) -> "StepSelection":
        return cls(timesteps=frozenset(int(t) for t in timesteps))

    @classmethod
    def last_n(cls, n: int) -> "StepSelection":
        if n <= 0:
            raise ValueError("last_n needs a positive count")
        return cls(last=int(n))

    @property
    def is_every(self) -> bool:
        return self.indices is None and self.timesteps is None and self.last is None

    def contains(self, index: int, timestep: int, total: int) -> bool:
        if self.is_every:
            return True
        return (
            (self.indices is not None and index in self.indices)
            or (self.timesteps is not None and timestep in self.timesteps)
            or (self.last is not None and index >= total - self.last)
        )

    def resolve(self, timesteps: Sequence[int]) -> list[int]:
        """Sorted loop indices read in a loop over `timesteps`; every named step must exist in it."""
        total = len(timesteps)
        if self.indices is not None:
            outside = sorted(i for i in self.indices if not 0 <= i < total)
            if outside:
                raise ValueError(f"step indices {outside} lie outside a loop of {total} steps")
        if self.timesteps is not None:
            missing = sorted(set(self.timesteps) - {int(t) for t in timesteps})
            if missing:
                raise ValueError(f"timesteps {missing} are not in the schedule")
        if self.last is not None and self.last > total:
            raise ValueError(f"cannot read the last {self.last} of {total} steps")
        return [i for i, t in enumerate(timesteps) if self.contains(i, int(t), total)]
