"""Finding checkpoint files offline: the Hugging Face cache or a local folder, never the network.

A method names the files it needs as (repository, revision, file name). They are looked up in a
local folder when one is given (`--weights PATH` or the spec), else in the Hugging Face cache in
local-files-only mode, pinned to the revision. Whatever is missing is reported in one line that
names the checkpoint and how to get it, before any sample is processed.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

from ..core.errors import BenchError

#: a required file: one name, or alternatives in order of preference (the first present is used)
FileSpec = Union[str, Sequence[str]]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_hash_cache: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class WeightFile:
    """A checkpoint file that was found: which file of which repository, where, and from what source."""

    repo_id: str
    revision: str
    filename: str
    path: Path
    source: str  # "hf-cache" or "local"

    def record(self) -> dict:
        """Provenance entry for run.json: identifiers, size and sha256 of the file."""
        return {"repo_id": self.repo_id, "revision": self.revision, "file": self.filename,
                "source": self.source, "size": self.path.stat().st_size, "sha256": file_sha256(self.path)}


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def download_hint(repo_id: str, revision: str) -> str:
    """The command that puts a repository at a revision into the Hugging Face cache."""
    return f"hf download {repo_id} --revision {revision}"


def local_folder(local_dir: Path, repo_id: str) -> Path:
    """The folder of `repo_id` under a local weights folder: DIR/<repo name> if it exists, else DIR."""
    sub = Path(local_dir) / repo_id.split("/")[-1]
    return sub if sub.is_dir() else Path(local_dir)


def _alternatives(spec: FileSpec) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else tuple(spec)


def _from_cache(repo_id: str, revision: str, filename: str, cache: Path) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HFValidationError

    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache, local_files_only=True))
    except HFValidationError as exc:
        raise BenchError(f"invalid checkpoint repository {repo_id!r} or revision {revision!r}: {exc}") from None
    except (FileNotFoundError, OSError, ValueError):
        return None


def resolve_files(repo_id: str, revision: str, files: Sequence[FileSpec], local_dir: Path | None = None,
                  what: str = "checkpoint") -> list[WeightFile]:
    """Locate every file of `files` (each a name or alternatives) for `repo_id` at `revision`.

    With `local_dir` only that folder (or its `<repo name>` sub-folder) is searched; otherwise the
    Hugging Face cache in local-files-only mode. Raises BenchError with one line listing every
    missing file, the checkpoint and how to get it.
    """
    found: list[WeightFile] = []
    missing: list[str] = []
    folder = local_folder(local_dir, repo_id) if local_dir is not None else None
    cache = hf_cache_dir()
    for spec in files:
        names = _alternatives(spec)
        hit = None
        for name in names:
            if folder is not None:
                path = folder / name
                hit = WeightFile(repo_id, revision, name, path, "local") if path.is_file() else None
            else:
                path = _from_cache(repo_id, revision, name, cache)
                hit = WeightFile(repo_id, revision, name, path, "hf-cache") if path is not None else None
            if hit is not None:
                break
        if hit is None:
            missing.append(" or ".join(names))
        else:
            found.append(hit)
    if missing:
        listing = ", ".join(missing)
        if folder is not None:
            raise BenchError(f"{what} {repo_id}@{revision}: {listing} not found in weights folder {folder} "
                             f"(fill it with `{download_hint(repo_id, revision)} --local-dir {folder}`)")
        raise BenchError(f"{what} {repo_id}@{revision}: {listing} not in the Hugging Face cache {cache}; "
                         f"get it with `{download_hint(repo_id, revision)}` or pass --weights PATH "
                         "(a folder holding these files)")
    return found


def file_sha256(path: Path) -> str:
    """sha256 of a file's content.

    Files of the Hugging Face cache that are links to content-addressed LFS blobs (named by their
    sha256) are not read again; other files are hashed once per process and (size, mtime).
    """
    path = Path(path)
    real = path.resolve()
    if real.parent.name == "blobs" and _SHA256.fullmatch(real.name):
        return real.name
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        with open(real, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


__all__ = ["FileSpec", "WeightFile", "download_hint", "file_sha256", "hf_cache_dir", "local_folder",
           "resolve_files"]
