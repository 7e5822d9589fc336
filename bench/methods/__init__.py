"""Method backends: the `backend` field of an adapter spec names one of these classes.

Installed packages add backends under the entry-point group `bench.backends`
(`name = "package.module:Class"`, a `bench.methods.base.Method` subclass).
"""

from __future__ import annotations

from ..core.errors import BenchError
from ..core.params import check_params, schema_of
from ..core.registry import registered, resolve
from .base import Method, RunContext, check_output

ENTRY_POINTS = "bench.backends"

BACKENDS: dict[str, str] = {
    "oracle_gaussian": "bench.methods.baselines:OracleGaussian",
    "box_prior": "bench.methods.baselines:BoxPrior",
    "uniform": "bench.methods.baselines:Uniform",
    "oracle_box": "bench.methods.oracle_box:OracleBox",
    "reader2": "bench.methods.reader2:SecondReader",
    "biovil": "bench.methods.biovil:BioVilMethod",
    "ldm": "bench.methods.ldm.method:LdmMethod",
    "anatomy_ldm": "bench.methods.ldm.anatomy.method:AnatomyLdmMethod",
    "maira2": "bench.methods.box_grounders.maira2:Maira2Method",
}


def backend_class(name: str) -> type[Method]:
    """The Method subclass registered under backend `name` (built in or by an installed package)."""
    return resolve(BACKENDS, name, "backend", ENTRY_POINTS, Method)


def backend_names() -> list[str]:
    """Every backend name: built in, and registered by installed packages."""
    return sorted(registered(BACKENDS, ENTRY_POINTS))


def method_backend(spec: dict, source: str) -> type[Method]:
    """The backend class of a method spec, with the spec's params checked (names, types, ranges)
    against what the backend declares in `Method.known_params` (a backend declaring nothing is not
    checked)."""
    cls = backend_class(spec["backend"])
    check_output(spec, cls)
    schema = schema_of(cls.known_params)
    params = spec.get("params", {})
    if schema is not None:
        if not schema and params:
            raise BenchError(f"{source}: unknown field 'params.{sorted(params)[0]}' (backend {spec['backend']!r} "
                             "reads no params)")
        check_params(params, schema, source)
    return cls


__all__ = ["BACKENDS", "ENTRY_POINTS", "Method", "RunContext", "backend_class", "backend_names", "method_backend"]
