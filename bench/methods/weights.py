"""Finding checkpoint files: a local folder, or the Hugging Face cache (filled from the Hub when online).

A method names the files it needs as (repository, revision, file name), one `Component` per model
part (`[weights.<part>]` of its spec). They are looked up in a local folder when one is given (the
part's `local_dir`, `--weights PATH` or the spec's `weights.local_dir`), else in the Hugging Face
cache pinned to the revision. Files missing from the cache are downloaded with huggingface_hub
(only those files) unless HF_HUB_OFFLINE is set; whatever is still missing is reported in one line
that names the checkpoint and how to get it, before any sample is processed.
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
class Component:
    """Where one model part comes from: a repository at a revision, and a sub-folder or a file in it.

    `local_dir` is a folder holding this part's files in the repository's layout (it wins over
    `--weights` and the Hugging Face cache); `content` names the expected content of the part in
    `bench/methods/artifacts.toml`, checked whatever repository or folder the files come from.
    """

    repo: str = ""
    revision: str = "main"
    subfolder: str = ""
    file: str = ""
    tokenizer_subfolder: str = ""
    local_dir: str = ""
    content: str = ""

    def folder(self) -> Path | None:
        """The part's own folder (`local_dir`), if set."""
        return Path(self.local_dir).expanduser() if self.local_dir else None

    def on_hub(self) -> bool:
        """Whether the repository is a Hugging Face Hub id (owner/name) rather than a local-only name."""
        return self.repo.count("/") == 1 and not self.repo.startswith(("/", ".", "~"))


def parse_component(raw: object, key: str, source: str) -> Component:
    """A Component from a spec's `[weights.<key>]` table; BenchError naming an unknown field."""
    if raw is None:
        return Component()
    if not isinstance(raw, dict):
        raise BenchError(f"{source}: weights.{key} must be a table")
    unknown = set(raw) - set(Component.__dataclass_fields__)
    if unknown:
        raise BenchError(f"{source}: weights.{key} has unknown field {sorted(unknown)[0]!r}")
    return Component(**{k: str(v) for k, v in raw.items()})


@dataclass(frozen=True)
class WeightFile:
    """A checkpoint file that was found: which file of which repository, where, and from what source."""

    repo_id: str
    revision: str
    filename: str
    path: Path
    source: str  # "hf-cache", "local" or "package"
    part: str = ""

    def record(self) -> dict:
        """Provenance entry for run.json: identifiers, where it was read, size and sha256 of the file."""
        record = {"repo_id": self.repo_id, "revision": self.revision, "file": self.filename,
                  "source": self.source, "path": str(self.path), "size": self.path.stat().st_size,
                  "sha256": file_sha256(self.path)}
        if self.part:
            record["part"] = self.part
        return record


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


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set now (the Hub is then never contacted)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def withdrawn_hint(repo_id: str, part: str | Sequence[str], method: str) -> str | None:
    """For a repository taken off the Hub: what happened and how to point the part(s) at a copy or a folder."""
    from .artifacts import mirrors, withdrawn

    why = withdrawn(repo_id)
    if why is None:
        return None
    parts = [part] if isinstance(part, str) else list(part)
    key = f"weights.{parts[0]}" if len(parts) == 1 and parts[0] else "weights.<part>"
    which = f" ({', '.join(parts)})" if len(parts) > 1 else ""
    known = mirrors(repo_id)
    listed = f" (public copies: {', '.join(known)})" if known else ""
    return (f"{repo_id}{which} was {why}: point at a copy with --set {key}.repo=OWNER/NAME{listed} or at a folder "
            f"with --set {key}.local_dir=PATH; the files are checked by content (`bench weights {method or 'METHOD'}`)")


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


def lookup_files(repo_id: str, revision: str, files: Sequence[FileSpec], folder: Path | None,
                 part: str = "") -> list[WeightFile | None]:
    """The first present alternative of each file spec in `folder` (None: the Hugging Face cache), or None."""
    cache = hf_cache_dir()
    out: list[WeightFile | None] = []
    for spec in files:
        hit = None
        for name in _alternatives(spec):
            if folder is not None:
                path = folder / name
                hit = WeightFile(repo_id, revision, name, path, "local", part) if path.is_file() else None
            else:
                path = _from_cache(repo_id, revision, name, cache)
                hit = WeightFile(repo_id, revision, name, path, "hf-cache", part) if path is not None else None
            if hit is not None:
                break
        out.append(hit)
    return out


def resolve_files(repo_id: str, revision: str, files: Sequence[FileSpec], local_dir: Path | None = None,
                  what: str = "checkpoint", part: str = "", method: str = "", exact_folder: bool = False
                  ) -> list[WeightFile]:
    """Locate every file of `files` (each a name or alternatives) for `repo_id` at `revision`.

    With `local_dir` only that folder (or its `<repo name>` sub-folder, unless `exact_folder`) is
    searched; otherwise the Hugging Face cache, where missing files of a Hub repository are first
    downloaded when HF_HUB_OFFLINE is not set. Raises BenchError with one line listing every
    missing file, the checkpoint and how to get it (`part` and `method` name the spec field and
    command of the hint).
    """
    folder = None
    if local_dir is not None:
        folder = Path(local_dir) if exact_folder else local_folder(local_dir, repo_id)
    hits = lookup_files(repo_id, revision, files, folder, part)
    hub = repo_id.count("/") == 1
    if folder is None and hub and not hub_offline() and any(h is None for h in hits):
        from .fetch import fetch_files

        fetch_files(repo_id, revision, [s for s, h in zip(files, hits) if h is None], what=what,
                    hint=withdrawn_hint(repo_id, part, method))
        hits = lookup_files(repo_id, revision, files, folder, part)
    missing = [" or ".join(_alternatives(s)) for s, h in zip(files, hits) if h is None]
    if missing:
        listing = ", ".join(missing)
        gone = withdrawn_hint(repo_id, part, method)
        if folder is not None:
            how = gone or f"fill it with `{download_hint(repo_id, revision)} --local-dir {folder}`"
            raise BenchError(f"{what} {repo_id}@{revision}: {listing} not found in weights folder {folder} ({how})")
        how = gone or (f"get it with `{download_hint(repo_id, revision)}` or pass --weights PATH "
                       "(a folder holding these files)")
        raise BenchError(f"{what} {repo_id}@{revision}: {listing} not in the Hugging Face cache {hf_cache_dir()}; {how}")
    return [h for h in hits if h is not None]


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


__all__ = ["Component", "FileSpec", "WeightFile", "download_hint", "file_sha256", "hf_cache_dir", "hub_offline",
           "local_folder", "lookup_files", "parse_component", "resolve_files", "withdrawn_hint"]
