"""Scoring a prediction of any kind under a protocol, through the conversion the protocol names.

A protocol scores either heatmap metrics or box metrics (`Protocol.scores_boxes`). A box
prediction under a heatmap protocol becomes a heatmap (`boxes_to_heatmap`) and is scored as every
map is; a heatmap under a box protocol becomes boxes (the map as the protocol scores it, cut into
a mask by `heatmap_to_mask`, its components boxed by `mask_to_boxes`, scored by `component_score`)
and is scored with the box metrics (`bench.evaluation.box_metrics`). Box metrics compare with the
sample's GT boxes (a mask sample's own boxes where it carries them); a sample without GT boxes is
refused (`bench.evaluation.gt_kinds`).
"""

from __future__ import annotations

import dataclasses

from ..core.errors import SampleError
from ..core.geometry import truncated_box
from ..core.heatmap import Heatmap
from ..core.predictions import BoxPrediction, validate_prediction
from ..core.samples import Sample
from .box_metrics import box_scores
from .conversions import heatmap_to_mask, mask_to_boxes, prediction_heatmap
from .gt_kinds import check_gt_kind
from .protocols import Protocol
from .resample import to_original
from .scoring import prepare_values, score_with_boxes

Prediction = Heatmap | BoxPrediction


def heatmap_boxes(heatmap: Heatmap, protocol: Protocol, backend: str | None = None) -> BoxPrediction:
    """A heatmap as boxes under the protocol's conversions (on the original image, its value policy applied)."""
    values = prepare_values(to_original(heatmap, protocol.interpolation), protocol, backend)
    mask = heatmap_to_mask(values, protocol.heatmap_to_mask, protocol.mask_threshold)
    return mask_to_boxes(mask, values, protocol.mask_to_boxes, protocol.component_score)


def as_heatmap(pred: Prediction, sample: Sample, protocol: Protocol) -> Heatmap:
    """The prediction as the heatmap a heatmap protocol scores (a box prediction rasterised)."""
    if isinstance(pred, BoxPrediction):
        return prediction_heatmap(pred, sample.height, sample.width, protocol.boxes_to_heatmap)
    return pred


def as_boxes(pred: Prediction, sample: Sample, protocol: Protocol, backend: str | None = None) -> BoxPrediction:
    """The prediction as the boxes a box protocol scores (a heatmap converted)."""
    if isinstance(pred, BoxPrediction):
        return pred
    g = pred.geometry
    if (g.image_height, g.image_width) != (sample.height, sample.width):
        raise SampleError(sample.sample_id, f"heatmap is for a {g.image_width}x{g.image_height} image, "
                                            f"sample is {sample.width}x{sample.height}")
    return heatmap_boxes(pred, protocol, backend)


def score_prediction(pred: Prediction, sample: Sample, protocol: Protocol, backend: str | None = None,
                     model_crop: int | None = None) -> tuple[dict[str, float], Sample]:
    """The protocol's metric columns (and support columns) for one prediction of any kind, and the
    sample with the boxes it was scored against."""
    if not protocol.scores_boxes:
        return score_with_boxes(as_heatmap(pred, sample, protocol), sample, protocol, backend, model_crop)
    check_gt_kind(sample, protocol)  # box metrics need GT boxes: a mask without boxes or points only is refused
    if isinstance(pred, BoxPrediction):
        validate_prediction(pred, sample.width, sample.height, sample.sample_id)
    boxes = as_boxes(pred, sample, protocol, backend)
    if protocol.box_coords == "truncate":
        sample = dataclasses.replace(sample, boxes=tuple(truncated_box(b) for b in sample.boxes))
    values = box_scores(boxes.boxes, boxes.scores, sample.boxes, sample.width, sample.height)
    return {c: values[c] for c in protocol.columns + protocol.support_columns}, sample
