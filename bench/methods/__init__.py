"""Method backends: the `backend` field of an adapter spec names one of these classes.

Installed packages add backends under the entry-point group `bench.backends`
(`name = "package.module:Class"`, a `bench.methods.base.Method` subclass).
"""

from __future__ import annotations

from ..core.registry import registered, resolve
from ..core.specs import check_fields
from .base import Method, RunContext

ENTRY_POINTS = "bench.backends"

BACKENDS: dict[str, str] = {
    "oracle_gaussian": "bench.methods.baselines:OracleGaussian",
    "box_prior": "bench.methods.baselines:BoxPrior",
    "uniform": "bench.methods.baselines:Uniform",
    "biovil": "bench.methods.biovil:BioVilMethod",
    "ldm": "bench.methods.ldm.method:LdmMethod",
    "anatomy_ldm": "bench.methods.ldm.anatomy_method:AnatomyLdmMethod",
}


def backend_class(name: str) -> type[Method]:
    """The Method subclass registered under backend `name` (built in or by an installed package)."""
    return resolve(BACKENDS, name, "backend", ENTRY_POINTS, Method)


def backend_names() -> list[str]:
    """Every backend name: built in, and registered by installed packages."""
    return sorted(registered(BACKENDS, ENTRY_POINTS))


def method_backend(spec: dict, source: str) -> type[Method]:
    """The backend class of a method spec, with the spec's params checked against the ones the
    backend declares (`Method.known_params`), or else against those its shipped specs set (a
    plugin backend with neither is not checked)."""
    from .specs import shipped_params

    cls = backend_class(spec["backend"])
    known = cls.known_params
    if known is None and spec["backend"] in BACKENDS:
        known = shipped_params(spec["backend"])
    if known is not None:
        check_fields(spec.get("params", {}), known, source, "params.")
    return cls


__all__ = ["BACKENDS", "ENTRY_POINTS", "Method", "RunContext", "backend_class", "backend_names", "method_backend"]
