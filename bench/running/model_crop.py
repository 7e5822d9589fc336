"""The model's crop of a run: a stated fact for protocols that drop boxes by it (`drop_boxes = "label_crop"`).

Vilouras et al.'s loader drops a box whose label is gone after the model's resize and centre crop,
whatever map is scored. The crop is therefore taken from what is known about the model, not from
the map: `bench run` reads it from the method's spec (`params.crop` of a `params.resize` short
side, scaled to the protocol's `model_input`: 512 for the LDMs, 480 BioViL, 448 BioViL-T); a
method without a crop in its spec made its maps itself, so their geometry is the statement
(FROM_MAP). `bench score` takes `--model-crop SIZE`, else what the source run recorded or its
method's spec; for a folder of maps with neither, the crop is read from each map's own geometry
or finite region, and an original-size map finite everywhere is refused.
"""

from __future__ import annotations

from ..evaluation.label_crop import FROM_MAP, WHOLE_IMAGE
from ..evaluation.protocols import Protocol


def spec_crop(spec: dict, protocol: Protocol) -> int:
    """The crop a method spec declares, at the protocol's model_input; FROM_MAP when it declares none."""
    params = spec.get("params", {}) if isinstance(spec, dict) else {}
    crop, resize = params.get("crop"), params.get("resize")
    if isinstance(crop, int) and isinstance(resize, int) and crop > 0 and resize > 0:
        return min(protocol.model_input, round(crop * protocol.model_input / resize))
    return FROM_MAP


def source_crop(source: dict | None, protocol: Protocol) -> int | None:
    """The crop a source run states: the one it recorded, else its method spec's; None for no source run."""
    if not source:
        return None
    recorded = source.get("model_crop")
    if isinstance(recorded, dict) and isinstance(recorded.get("size"), int) and recorded.get("model_input"):
        size = recorded["size"]
        return size if size == WHOLE_IMAGE else round(size * protocol.model_input / recorded["model_input"])
    if isinstance(recorded, dict) and recorded.get("source") == "map geometry":
        return FROM_MAP
    method = source.get("config", {}).get("method")
    return spec_crop(method, protocol) if isinstance(method, dict) else None


def crop_record(crop: int | None, protocol: Protocol, source: str) -> dict | None:
    """run.json's `model_crop`: the crop boxes were dropped by (None when the protocol drops none)."""
    if protocol.drop_boxes == "none":
        return None
    if crop is None or crop == FROM_MAP:
        return {"size": None, "model_input": protocol.model_input, "source": "map geometry"}
    return {"size": crop, "model_input": protocol.model_input, "source": source}


__all__ = ["crop_record", "source_crop", "spec_crop"]
