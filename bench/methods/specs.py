"""Method specs (`adapters/*.toml`) and command-line overrides of their fields."""

from __future__ import annotations

import copy
import tomllib
from typing import Any, Sequence

from ..core.errors import BenchError
from ..core.specs import SpecFile, check_fields, find_spec, load_spec, spec_names

REQUIRED = ("name", "backend", "description")
#: every top-level field a method spec may have; what `params` holds is the backend's business
FIELDS = ("name", "backend", "kind", "description", "citation", "output", "params", "weights")


def method_names() -> list[str]:
    """Every method name: the specs, and `<spec>+bbm` for specs offering Bimodal Bias Merging."""
    names = []
    for name in spec_names("adapters"):
        names.append(name)
        spec, _ = load_spec("adapters", name)
        if spec.get("params", {}).get("bbm") is False:
            names.append(name + BBM_SUFFIX)
    return names


BBM_SUFFIX = "+bbm"


def load_method_spec(name: str) -> dict:
    """The parsed spec of method `name`, checked for the required fields.

    `<method>+bbm` is `<method>` with Bimodal Bias Merging switched on (`params.bbm = true`); the
    base method must offer that option.
    """
    if name.endswith(BBM_SUFFIX) and len(name) > len(BBM_SUFFIX):
        return with_bbm(load_method_spec(name[: -len(BBM_SUFFIX)]))
    file = find_spec("adapters", name)
    spec = file.read()
    check_fields(spec, FIELDS, file.label)
    missing = [k for k in REQUIRED if k not in spec]
    if missing:
        raise BenchError(f"{file.label}: missing field {missing[0]!r}")
    if spec["name"] != file.name:
        raise BenchError(f"{file.label}: name {spec['name']!r} does not match the file name")
    for table in ("params", "weights"):
        if not isinstance(spec.get(table, {}), dict):
            raise BenchError(f"{file.label}: [{table}] must be a table")
    return spec


def method_spec_file(name: str) -> SpecFile:
    """The file the spec of method `name` (or `<method>+bbm`, or a path) is read from."""
    if name.endswith(BBM_SUFFIX) and len(name) > len(BBM_SUFFIX):
        name = name[: -len(BBM_SUFFIX)]
    return find_spec("adapters", name)


def with_bbm(spec: dict) -> dict:
    """The spec of `<method>+bbm`: the base spec with `params.bbm` on, renamed."""
    params = spec.get("params", {})
    if "bbm" not in params:
        raise BenchError(f"method {spec['name']!r} has no Bimodal Bias Merging option (+bbm needs an ldm method)")
    if params["bbm"] is True:
        raise BenchError(f"method {spec['name']!r} already merges with BBM; drop the +bbm suffix")
    spec = copy.deepcopy(spec)
    spec["name"] = spec["name"] + BBM_SUFFIX
    spec["params"]["bbm"] = True
    spec["description"] = spec["description"].rstrip(".") + "; with Bimodal Bias Merging (Nützel et al.)."
    return spec


def parse_value(text: str) -> Any:
    """A TOML value if `text` parses as one (numbers, booleans, lists), else the plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(spec: dict, overrides: Sequence[str]) -> dict:
    """Apply `key=value` overrides; a bare key means `params.key`, dots reach into tables.

    Only existing fields may be overridden, so a typo fails with the known field names.
    """
    spec = copy.deepcopy(spec)
    for item in overrides:
        if "=" not in item:
            raise BenchError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        path = key.strip().split(".")
        if path[0] not in spec:
            path = ["params", *path]
        table = spec
        for part in path[:-1]:
            if not isinstance(table.get(part), dict):
                raise BenchError(f"--set {key}: {spec['name']} has no table {part!r}")
            table = table[part]
        if path[-1] not in table:
            known = ", ".join(sorted(table)) or "none"
            raise BenchError(f"--set {key}: {spec['name']} has no field {'.'.join(path)!r} (known: {known})")
        if isinstance(table[path[-1]], dict):
            fields = ", ".join(f"{'.'.join(path)}.{k}" for k in sorted(table[path[-1]])) or "none"
            raise BenchError(f"--set {key}: {'.'.join(path)!r} is a table of fields, not a value (set one of: {fields})")
        table[path[-1]] = parse_value(raw.strip())
    return spec
