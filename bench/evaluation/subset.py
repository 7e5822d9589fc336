"""`--limit N`: a subset of the protocol's sample set, balanced over categories and seeded.

A head-N cut of a dataset sorted by category covers only its first categories and still prints a
"macro". This subset takes samples from every category in turn (each category's samples in an
order fixed by a hash of the seed and the sample id), so N samples cover min(N, categories)
categories, as evenly as their sizes allow. It depends on nothing but the sample ids, categories
and N: every method gets the same subset, and a re-run or a shard picks the same one.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from ..core.samples import Sample

#: the subset is the same for every method and every run: it is not the method's --seed
LIMIT_SEED = 0


def _rank(sample_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()


def limit_subset(samples: Sequence[Sample], limit: int, seed: int = LIMIT_SEED) -> list[Sample]:
    """`limit` samples taken from the categories in turn, in the order of `samples`."""
    by_category: dict[str, list[Sample]] = {}
    for s in samples:
        by_category.setdefault(s.category, []).append(s)
    queues = [sorted(part, key=lambda s: _rank(s.sample_id, seed)) for _, part in sorted(by_category.items())]
    picked: set[str] = set()
    depth = 0
    while len(picked) < min(limit, len(samples)):
        for queue in queues:
            if depth < len(queue) and len(picked) < limit:
                picked.add(queue[depth].sample_id)
        depth += 1
    return [s for s in samples if s.sample_id in picked]
