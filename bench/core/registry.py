"""Name -> lazily imported class lookup shared by the dataset and backend registries."""

from __future__ import annotations

import importlib
from typing import Mapping

from .errors import BenchError
from .optional import missing_model_package, models_message


def resolve(table: Mapping[str, str], name: str, label: str) -> type:
    """Import the class registered as `module:attr` under `name`; BenchError naming the known ones."""
    try:
        target = table[name]
    except KeyError:
        raise BenchError(f"unknown {label} {name!r} (known: {', '.join(sorted(table))})") from None
    module, attr = target.split(":")
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        package = missing_model_package(exc)
        if package is None:
            raise
        raise BenchError(models_message(package, f"{label} {name!r}")) from None
    return getattr(loaded, attr)
