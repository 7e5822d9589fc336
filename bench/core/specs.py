"""Locating and reading the declarative specs (`adapters/*.toml`, `protocols/*.toml`).

The top-level `adapters/` and `protocols/` folders are installed as the data packages
`bench._adapters` and `bench._protocols`, so the specs are found from a plain install too.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path

from .errors import BenchError

_PACKAGES = {"adapters": "bench._adapters", "protocols": "bench._protocols"}
_LABEL = {"adapters": "method", "protocols": "protocol"}


def spec_dir(kind: str):
    """The folder (a Traversable) holding the specs of `kind` ("adapters" or "protocols")."""
    try:
        return importlib.resources.files(_PACKAGES[kind])
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / kind


def spec_names(kind: str) -> list[str]:
    """Names (file stems) of the specs of `kind`, sorted."""
    return sorted(p.name[:-5] for p in spec_dir(kind).iterdir() if p.name.endswith(".toml"))


def load_spec(kind: str, name: str) -> tuple[dict, str]:
    """Parse `kind/name.toml`; returns (document, source label). BenchError for unknown or bad files."""
    entry = spec_dir(kind) / f"{name}.toml"
    if not entry.is_file():
        known = ", ".join(spec_names(kind))
        raise BenchError(f"unknown {_LABEL[kind]} {name!r} (known: {known})")
    source = f"{kind}/{name}.toml"
    try:
        return tomllib.loads(entry.read_text(encoding="utf-8")), source
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"{source}: invalid TOML: {exc}") from None
