"""`ms-cxr-loc`: MS-CXR with "{location} {pathology}" prompts (Vilouras et al. 2025, section 4.1).

Each MS-CXR sample whose phrase names an anatomical location (by the rules of
`bench.datasets.anatomy`, in place of RadGraph-XL's ANAT-DP entities) keeps its image, boxes and
sample id, and its phrase becomes the location names followed by the category ("right lower lung
zone pneumonia"); the location keys are in `extra["location"]` ("a+b"), which `anatomy_ldm` reads,
and the original phrase in `extra["original_phrase"]`. Samples without a location are dropped.
"""

from __future__ import annotations

from ..core.samples import Sample
from .anatomy import build_prompt, load_rules, names_location, parse_phrase
from .ms_cxr import MsCxrDataset


def loc_sample(sample: Sample, rules=None) -> Sample | None:
    """The rewritten sample, or None when its phrase names no location."""
    rules = rules or load_rules()
    if not names_location(sample.phrase, rules):
        return None
    keys = parse_phrase(sample.phrase, rules).locations
    if not keys:
        return None
    phrase, _ = build_prompt(keys, sample.category, rules)
    extra = {**sample.extra, "location": "+".join(keys), "original_phrase": sample.phrase}
    return Sample(sample.sample_id, sample.image_path, sample.width, sample.height, sample.category, phrase,
                  sample.boxes, sample.split, extra)


class MsCxrLocDataset(MsCxrDataset):
    """MS-CXR pairs with a location, prompted "{location} {pathology}"."""

    name = "ms-cxr-loc"
    description = ("MS-CXR rewritten to \"{location} {pathology}\" prompts, pairs without a location dropped "
                   "(Vilouras et al. 2025; the ms-cxr files under --data-root or BENCH_MS_CXR_ROOT)")

    def samples(self) -> list[Sample]:
        rules = load_rules()
        return [s for s in (loc_sample(x, rules) for x in super().samples()) if s is not None]
