"""Name -> lazily imported class lookup shared by the dataset and backend registries.

Besides the built-in table, installed packages may register names under an entry-point group
(`bench.backends`, `bench.datasets`), so a `pip install` adds a method backend or a dataset.
"""

from __future__ import annotations

import functools
import importlib
from importlib import metadata
from typing import Mapping

from .errors import BenchError
from .optional import missing_model_package, models_message


@functools.lru_cache(maxsize=None)
def plugins(group: str) -> dict[str, str]:
    """`name -> module:attr` of every installed entry point in `group` (read once per process)."""
    found: dict[str, str] = {}
    for ep in metadata.entry_points(group=group):
        if ep.name in found and found[ep.name] != ep.value:
            raise BenchError(f"two installed packages register {ep.name!r} in entry-point group {group}: "
                             f"{found[ep.name]} and {ep.value}; uninstall one")
        found[ep.name] = ep.value
    return found


def refresh_plugins() -> None:
    """Forget the entry points read so far (after installing a package in a running process)."""
    plugins.cache_clear()


def registered(table: Mapping[str, str], group: str | None) -> dict[str, str]:
    """The built-in table with the entry points of `group` added (built-in names come first)."""
    extra = plugins(group) if group else {}
    return {**extra, **table}


def resolve(table: Mapping[str, str], name: str, label: str, group: str | None = None,
            base: type | None = None) -> type:
    """Import the class registered as `module:attr` under `name`; BenchError naming the known ones,
    or when the class is not a subclass of `base`."""
    extra = plugins(group) if group else {}
    if name in table and name in extra and extra[name] != table[name]:
        raise BenchError(f"{label} {name!r} is built in and also registered by an installed package "
                         f"({extra[name]}, entry-point group {group}); rename the plugin's")
    everything = registered(table, group)
    try:
        target = everything[name]
    except KeyError:
        raise BenchError(f"unknown {label} {name!r} (known: {', '.join(sorted(everything))})") from None
    module, _, attr = target.partition(":")
    if name in table:
        try:
            loaded = importlib.import_module(module)
        except ImportError as exc:
            package = missing_model_package(exc)
            if package is None:
                raise
            raise BenchError(models_message(package, f"{label} {name!r}")) from None
        return _checked_subclass(getattr(loaded, attr), name, label, base)
    try:  # a plugin: its import problems are the user's to fix, so one line names it
        found = importlib.import_module(module)
        for part in attr.split(".") if attr else []:
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise BenchError(f"{label} {name!r} ({target}, entry-point group {group}) cannot be loaded: {exc}") from None
    if not isinstance(found, type):
        raise BenchError(f"{label} {name!r} ({target}) is not a class")
    return _checked_subclass(found, name, label, base)


def _checked_subclass(cls: type, name: str, label: str, base: type | None) -> type:
    if base is not None and not issubclass(cls, base):
        raise BenchError(f"{label} {name!r} ({cls.__module__}.{cls.__name__}) is not a bench {base.__name__} subclass")
    return cls
