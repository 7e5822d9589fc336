"""Locating and reading the declarative specs (`adapters/*.toml`, `protocols/*.toml`).

The top-level `adapters/` and `protocols/` folders are installed as the data packages
`bench._adapters` and `bench._protocols`, so the specs are found from a plain install too.

A spec is also found, by name, in the folders of the spec search path: the `--spec-path` folders
of the command line, then the `BENCH_SPEC_PATH` environment variable (folders separated by
`os.pathsep`), then the folders installed packages register under the `bench.specs` entry-point
group. Each such folder mirrors the repository: `FOLDER/adapters/NAME.toml` for methods and
`FOLDER/protocols/NAME.toml` for protocols. A name defined in two places is refused, so a name
always means one file. A spec can also be named by the path of its file (`my/spec.toml`).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import BenchError
from .registry import plugins

_PACKAGES = {"adapters": "bench._adapters", "protocols": "bench._protocols"}
_LABEL = {"adapters": "method", "protocols": "protocol"}
ENV_VAR = "BENCH_SPEC_PATH"
ENTRY_POINTS = "bench.specs"

_cli_folders: list[Path] = []


def spec_dir(kind: str):
    """The folder (a Traversable) holding the shipped specs of `kind` ("adapters" or "protocols")."""
    try:
        return importlib.resources.files(_PACKAGES[kind])
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / kind


def set_spec_path(folders: Iterable[Path]) -> None:
    """The command line's `--spec-path` folders (searched before BENCH_SPEC_PATH)."""
    chosen = [Path(f) for f in folders]
    for folder in chosen:
        if not folder.is_dir():
            raise BenchError(f"--spec-path {folder}: not a folder")
    _cli_folders[:] = chosen


def search_path() -> list[Any]:
    """Every folder searched for specs besides the shipped ones, in order (Paths or Traversables)."""
    folders: list[Any] = list(_cli_folders)
    for entry in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if entry:
            if not Path(entry).is_dir():
                raise BenchError(f"{ENV_VAR} names {entry}, which is not a folder; fix or unset {ENV_VAR}")
            folders.append(Path(entry))
    for name, module in sorted(plugins(ENTRY_POINTS).items()):
        try:
            folders.append(importlib.resources.files(module))
        except (ModuleNotFoundError, TypeError) as exc:
            raise BenchError(f"plugin spec folder {name!r} ({module}) cannot be found: {exc}") from None
    return folders


@dataclass(frozen=True)
class SpecFile:
    """One spec file: where it is, and how it is shown in messages and run.json."""

    kind: str
    name: str
    entry: Any  # a Path or an importlib.resources Traversable
    label: str  # `protocols/default.toml` for shipped specs, the file's path otherwise
    shipped: bool

    def text(self) -> str:
        return self.entry.read_text(encoding="utf-8")

    def sha256(self) -> str:
        return hashlib.sha256(self.entry.read_bytes()).hexdigest()

    def record(self) -> dict[str, str]:
        """What run.json keeps of the file: its path and content hash."""
        return {"path": self.label, "sha256": self.sha256()}

    def read(self) -> dict:
        try:
            return tomllib.loads(self.text())
        except tomllib.TOMLDecodeError as exc:
            raise BenchError(f"{self.label}: invalid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise BenchError(f"{self.label}: not a UTF-8 text file") from None


def is_path(text: str) -> bool:
    """True when a --method / --protocol value names a file rather than a registered spec."""
    return text.endswith(".toml") or "/" in text or os.sep in text


def _candidates(kind: str, name: str) -> list[SpecFile]:
    found = []
    shipped = spec_dir(kind) / f"{name}.toml"
    if shipped.is_file():
        found.append(SpecFile(kind, name, shipped, f"{kind}/{name}.toml", True))
    for folder in search_path():
        entry = folder / kind / f"{name}.toml"
        if entry.is_file():
            found.append(SpecFile(kind, name, entry, str(entry), False))
    return found


def find_spec(kind: str, name: str) -> SpecFile:
    """The spec file of `kind` named `name` (a registered name, or a path to a .toml file)."""
    if is_path(name):
        path = Path(name).expanduser()
        if not path.is_file():
            raise BenchError(f"{_LABEL[kind]} spec {name}: no such file")
        if path.suffix != ".toml":
            raise BenchError(f"{_LABEL[kind]} spec {name}: expected a .toml file")
        return SpecFile(kind, path.stem, path, str(path), False)
    found = _candidates(kind, name)
    if not found:
        known = ", ".join(spec_names(kind))
        raise BenchError(f"unknown {_LABEL[kind]} {name!r} (known: {known})")
    if len(found) > 1:
        raise BenchError(f"{_LABEL[kind]} {name!r} is defined more than once: "
                         f"{', '.join(f.label for f in found)}; rename one of them")
    return found[0]


def spec_names(kind: str) -> list[str]:
    """Names (file stems) of the specs of `kind`: shipped and on the search path, sorted."""
    names = {p.name[:-5] for p in spec_dir(kind).iterdir() if p.name.endswith(".toml")}
    for folder in search_path():
        sub = folder / kind
        if sub.is_dir():
            names |= {p.name[:-5] for p in sub.iterdir() if p.name.endswith(".toml")}
    return sorted(names)


def load_spec(kind: str, name: str) -> tuple[dict, str]:
    """Parse the spec `name` (or file path) of `kind`; returns (document, source label)."""
    spec = find_spec(kind, name)
    return spec.read(), spec.label


def check_fields(document: dict, known: Sequence[str], source: str, where: str = "") -> None:
    """Refuse a field that is not one of `known`, naming the file, the field and the known ones."""
    for key in document:
        if key not in known:
            raise BenchError(f"{source}: unknown field {where + key!r} (known: {', '.join(sorted(known)) or 'none'})")
