"""Which kinds of ground truth a protocol can score: checked per sample, and for a sample set before any work.

A sample's GT is a mask, boxes or points (`Sample.gt_kind`). Boxes are scored by every protocol.
A mask or points are refused where the protocol's geometry is defined on boxes only
(`drop_boxes = "label_crop"`, `eval_grid = "centre_crop"`). Points carry no region: only a point
metric scores them (`POINT_METRICS`: the pointing game, CheXlocalize's hit rate), so a protocol
listing none refuses them. Box metrics compare boxes with GT boxes: a sample without GT boxes (a
mask without boxes, points only) is refused by a box protocol; a mask sample that also carries its
boxes is scored against those boxes there.

`refusal` says why (None when the sample can be scored); `check_gt_kind` raises it for one sample,
`refused_samples` gathers it over a sample set so that `bench run` and `bench score` stop before the
first map is made or scored, in one line naming the protocol, its field and how many samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..core.errors import SampleError
from ..core.samples import Sample
from .protocols import Protocol

#: metrics defined on ground truth given as points (the map's peak near a GT point)
POINT_METRICS = ("pointing_game", "hit_rate")


@dataclass(frozen=True)
class Refusal:
    """Why a protocol cannot score a sample's GT: the protocol, its setting, the rule, and the GT it met."""

    protocol: str
    setting: str
    rule: str
    gt: str

    def one(self) -> str:
        """The reason for one sample."""
        return f"protocol {self.protocol!r} has {self.setting}, {self.rule}; this sample's ground truth is {self.gt}"

    def many(self, ids: Sequence[str], total: int) -> str:
        """One line for the sample set: how many samples, and the first of them."""
        return (f"protocol {self.protocol!r} has {self.setting}, {self.rule}: {len(ids)} of the {total} samples "
                f"have ground truth {self.gt} (first: {ids[0]})")


def refusal(sample: Sample, protocol: Protocol) -> Refusal | None:
    """Why `protocol` cannot score `sample`'s ground truth, or None when it can."""
    kind = sample.gt_kind
    if kind == "boxes":
        return None
    gt = "points only" if kind == "points" else "a mask"
    if protocol.scores_boxes:
        if sample.boxes:
            return None
        return Refusal(protocol.name, f"box metrics (metrics = [{', '.join(protocol.metrics)}])",
                       "defined on GT boxes only", gt if kind == "points" else "a mask without boxes")
    for field, value, boxes_only in (("drop_boxes", protocol.drop_boxes, protocol.drop_boxes != "none"),
                                     ("eval_grid", protocol.eval_grid, protocol.eval_grid != "original")):
        if boxes_only:
            return Refusal(protocol.name, f"{field} = {value!r}", "defined on boxes only", gt)
    if kind == "points" and not any(m in POINT_METRICS for m in protocol.metrics):
        return Refusal(protocol.name, f"metrics = [{', '.join(protocol.metrics)}]",
                       f"none of them a point metric ({', '.join(POINT_METRICS)})", gt)
    return None


def check_gt_kind(sample: Sample, protocol: Protocol) -> None:
    """SampleError naming the protocol and its field when it cannot score this sample's ground truth."""
    why = refusal(sample, protocol)
    if why is not None:
        raise SampleError(sample.sample_id, why.one())


def refused_samples(samples: Sequence[Sample], protocol: Protocol) -> tuple[dict[str, str], str | None]:
    """(sample id -> reason for every sample the protocol cannot score, the one-line summary of the first
    kind of refusal met, or None when every sample can be scored)."""
    reasons: dict[str, str] = {}
    first: Refusal | None = None
    ids: list[str] = []
    for s in samples:
        why = refusal(s, protocol)
        if why is None:
            continue
        reasons[s.sample_id] = why.one()
        if first is None:
            first = why
        if why == first:
            ids.append(s.sample_id)
    return reasons, (first.many(ids, len(samples)) if first is not None else None)


__all__ = ["POINT_METRICS", "Refusal", "check_gt_kind", "refusal", "refused_samples"]
