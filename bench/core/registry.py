"""Name -> lazily imported class lookup shared by the dataset and backend registries."""

from __future__ import annotations

import importlib
from typing import Mapping

from .errors import BenchError


def resolve(table: Mapping[str, str], name: str, label: str) -> type:
    """Import the class registered as `module:attr` under `name`; BenchError naming the known ones."""
    try:
        target = table[name]
    except KeyError:
        raise BenchError(f"unknown {label} {name!r} (known: {', '.join(sorted(table))})") from None
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)
