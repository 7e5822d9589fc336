"""Box metrics of box-producing grounders, with the published definitions (pure functions).

Boxes are (x, y, w, h) in original pixels. A prediction's boxes are ranked by score (highest
first, ties in the given order) or, without scores, in the order the method gave them (as RadVLM
ranks a generation's boxes by their place in the text).

- `top1_iou_union`: IoU of the top-ranked box with the union box (the bounding box of all the
  phrase's GT boxes); `top1_iou_best`: IoU of the top-ranked box with the GT box it overlaps most.
- `acc@0.5`: 1 when `top1_iou_best` >= 0.5 (MedRPG's accuracy, whose samples have one GT box).
- `ap@0.5`, `ap@[.5:.95]`: pycocotools' COCOeval (bbox, area "all", 100 detections, 101 recall
  points) on the sample alone: its GT boxes against its ranked boxes (without scores, box k of n
  gets score 1 - k / n). A sample without a predicted box has AP 0.
- `box_precision`, `box_recall` (RadFact's `compute_box_metrics`): on 224 x 224 masks of the
  normalised boxes (coordinates times 224, truncated), |P and G| / |P| and |P and G| / |G|;
  precision is NaN without a predicted box (left out of the means), as RadFact's is.
  `box_contained`: 1 when `box_precision` > 0.5, RadFact's spatial entailment of a sentence whose
  text is entailed; 0 without a predicted box.
- `pooled_iou` (ChEX's sentence-grounding IoU): the union of the predicted boxes and of the GT
  boxes rasterised on a 1024 x 1024 grid of the normalised image (pixel-centre rule); a group's
  value is sum of intersections / sum of unions over its samples, a dataset-level number
  (`bench.evaluation.pooled`). Each sample row carries its own counts (`pooled_inter`,
  `pooled_union`) and its own ratio.
"""

from __future__ import annotations

import contextlib
import io
import math
from typing import Sequence

import numpy as np

from ..core.geometry import box_mask
from ..core.samples import Box

#: RadFact's mask side (`RadFactMetric(image_size=224)`)
RADFACT_GRID = 224
#: ChEX's rasterisation side for the pooled IoU
POOLED_GRID = 1024
#: the metric bases of box predictions, in column order
BOX_METRICS = ("top1_iou_union", "top1_iou_best", "acc@0.5", "ap@0.5", "ap@[.5:.95]",
               "box_precision", "box_recall", "box_contained", "pooled_iou")
#: the per-sample pixel counts behind `pooled_iou`
POOLED_COUNTS = ("pooled_inter", "pooled_union")


def box_iou(a: Box, b: Box) -> float:
    """Continuous IoU of two (x, y, w, h) boxes (no +1 pixel term); 0 when both are empty."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def union_box(boxes: Sequence[Box]) -> Box:
    """The bounding box of all `boxes`."""
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    return (x0, y0, x1 - x0, y1 - y0)


def ranked(boxes: Sequence[Box], scores: Sequence[float] = ()) -> tuple[list[Box], list[float]]:
    """The boxes best first with a score each: by score (stable), or in the given order scored 1 - k / n."""
    n = len(boxes)
    if not scores:
        return list(boxes), [1.0 - k / n for k in range(n)]
    order = sorted(range(n), key=lambda k: -scores[k])
    return [boxes[k] for k in order], [float(scores[k]) for k in order]


def top1_ious(pred: Sequence[Box], gt: Sequence[Box]) -> tuple[float, float]:
    """(IoU of the top box with the GT union box, with its best-matching GT box); 0, 0 without a box."""
    if not pred or not gt:
        return 0.0, 0.0
    top = pred[0]
    return box_iou(top, union_box(gt)), max(box_iou(top, g) for g in gt)


def coco_ap(pred: Sequence[Box], scores: Sequence[float], gt: Sequence[Box]) -> tuple[float, float]:
    """(AP@0.5, AP@[.5:.95]) of one sample through pycocotools' COCOeval (one image, one category).

    The values are COCOeval's `stats[1]` and `stats[0]` (area "all", 100 detections); a sample
    without a predicted box has AP 0 (COCOeval counts its GT boxes as missed).
    """
    if not gt:
        return math.nan, math.nan
    if not pred:
        return 0.0, 0.0
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    truth = COCO()
    truth.dataset = {"images": [{"id": 1}], "categories": [{"id": 1}],
                     "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "bbox": list(map(float, b)),
                                      "area": float(b[2] * b[3]), "iscrowd": 0} for k, b in enumerate(gt)]}
    with contextlib.redirect_stdout(io.StringIO()):
        truth.createIndex()
        found = truth.loadRes([{"image_id": 1, "category_id": 1, "bbox": list(map(float, b)), "score": float(s)}
                               for b, s in zip(pred, scores)])
        ev = COCOeval(truth, found, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(max(ev.stats[1], 0.0)), float(max(ev.stats[0], 0.0))


def radfact_mask(boxes: Sequence[Box], width: int, height: int, size: int = RADFACT_GRID) -> np.ndarray:
    """RadFact's `get_mask_from_boxes`: the normalised boxes times `size`, truncated, OR-ed into a mask."""
    mask = np.zeros((size, size), dtype=bool)
    for x, y, w, h in boxes:
        c0, c1 = int(x / width * size), int((x + w) / width * size)
        r0, r1 = int(y / height * size), int((y + h) / height * size)
        mask[r0:r1, c0:c1] = True
    return mask


def containment(pred: Sequence[Box], gt: Sequence[Box], width: int, height: int) -> tuple[float, float, float]:
    """RadFact's (box precision, box recall, contained): |P and G| / |P|, |P and G| / |G| on 224 x 224
    masks (NaN for an empty mask), and 1.0 when precision > 0.5 (0.0 otherwise, or without boxes)."""
    p, g = radfact_mask(pred, width, height), radfact_mask(gt, width, height)
    inter = float(np.logical_and(p, g).sum())
    precision = inter / float(p.sum()) if p.any() else math.nan
    recall = inter / float(g.sum()) if g.any() else math.nan
    return precision, recall, float(precision > 0.5) if not math.isnan(precision) else 0.0


def pooled_counts(pred: Sequence[Box], gt: Sequence[Box], width: int, height: int,
                  size: int = POOLED_GRID) -> tuple[int, int]:
    """(|P and G|, |P or G|) of the union masks of the normalised boxes on a `size` x `size` grid (ChEX)."""
    sx, sy = size / width, size / height
    p = box_mask([(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in pred], size, size)
    g = box_mask([(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in gt], size, size)
    return int(np.logical_and(p, g).sum()), int(np.logical_or(p, g).sum())


def box_scores(pred: Sequence[Box], scores: Sequence[float], gt: Sequence[Box], width: int,
               height: int) -> dict[str, float]:
    """Every box metric of one sample, and the pooled IoU's counts (`POOLED_COUNTS`)."""
    boxes, ranks = ranked(pred, scores)
    union_iou, best_iou = top1_ious(boxes, gt)
    ap50, ap = coco_ap(boxes, ranks, gt)
    precision, recall, contained = containment(boxes, gt, width, height)
    inter, union = pooled_counts(boxes, gt, width, height)
    return {"top1_iou_union": union_iou, "top1_iou_best": best_iou, "acc@0.5": float(best_iou >= 0.5),
            "ap@0.5": ap50, "ap@[.5:.95]": ap, "box_precision": precision, "box_recall": recall,
            "box_contained": contained, "pooled_iou": inter / union if union else 0.0,
            "pooled_inter": float(inter), "pooled_union": float(union)}
