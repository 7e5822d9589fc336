"""The dataset fingerprint: a stable hash of a sample list, which says what a run was scored on.

Two runs are comparable, and belong on one leaderboard page, only when they were scored on the
same samples: the same ids, phrases, categories, image sizes and ground truth (boxes, a mask, points),
from a dataset built with the same options. The name of the dataset and its folder say neither; this hash does. It is taken
over the protocol's whole sample set (before `--limit`, before anything is skipped), in sample-id
order, so it does not depend on the order a dataset lists its samples in or on a file path.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Mapping, Sequence

from .samples import Sample

#: bump when the hashed fields or their encoding change (old fingerprints then differ, as they should)
VERSION = 1


def sample_key(sample_id: str, category: str, phrase: str, width: int, height: int, boxes_json: str,
               mask_digest: str | None = None, points: Sequence[Sequence[float]] = ()) -> list:
    """The hashed facts of one sample; `boxes_json` as `Sample.boxes_json()` writes it.

    A sample with a mask (its `MaskSource.digest`, the decoded bits, so a PNG and an RLE of one mask
    agree) or points gets one more element holding them; a box-only sample's key is the six facts
    alone, as before masks and points existed, so box-only fingerprints do not change.
    """
    key = [str(sample_id), str(category), str(phrase), int(width), int(height), json.loads(boxes_json)]
    if mask_digest is not None or points:
        key.append({"mask": mask_digest, "points": [[float(v) for v in p] for p in points]})
    return key


def fingerprint_keys(dataset: str, options: Mapping[str, object], keys: Iterable[list]) -> str:
    """Hash of the dataset name, its options and the per-sample keys (ordered by sample id)."""
    payload = {"version": VERSION, "dataset": dataset,
               "options": {str(k): str(v) for k, v in sorted(options.items())},
               "samples": sorted(keys, key=lambda k: k[0])}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_fingerprint(dataset: str, options: Mapping[str, object], samples: Iterable[Sample]) -> str:
    """The fingerprint of a sample list of `dataset` built with `options`."""
    keys = [sample_key(s.sample_id, s.category, s.phrase, s.width, s.height, s.boxes_json(),
                       s.mask.digest(s.height, s.width, s.sample_id) if s.mask is not None else None, s.points)
            for s in samples]
    return fingerprint_keys(dataset, options, keys)
