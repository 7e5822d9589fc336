"""Method backends: the `backend` field of an adapter spec names one of these classes."""

from __future__ import annotations

from ..core.registry import resolve
from .base import Method, RunContext

BACKENDS: dict[str, str] = {
    "oracle_gaussian": "bench.methods.baselines:OracleGaussian",
    "box_prior": "bench.methods.baselines:BoxPrior",
    "uniform": "bench.methods.baselines:Uniform",
    "biovil": "bench.methods.biovil:BioVilMethod",
    "ldm": "bench.methods.ldm.method:LdmMethod",
    "anatomy_ldm": "bench.methods.ldm.anatomy_method:AnatomyLdmMethod",
}


def backend_class(name: str) -> type[Method]:
    """The Method subclass registered under backend `name`."""
    return resolve(BACKENDS, name, "backend")


__all__ = ["BACKENDS", "Method", "RunContext", "backend_class"]
