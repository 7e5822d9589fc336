"""Downloading checkpoint files from the Hugging Face Hub into its cache, only the files a method reads.

huggingface_hub does the work (`snapshot_download` with the exact file names as allow-patterns:
resumable, content-addressed, with its progress bars); nothing here speaks HTTP. A file named by
alternatives (`model.safetensors` or `pytorch_model.bin`) is fetched in the first form the
repository holds, so a repository carrying both is not downloaded twice.
"""

from __future__ import annotations

from typing import Sequence, Union

from ..core.errors import BenchError

FileSpec = Union[str, Sequence[str]]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _names(spec: FileSpec) -> tuple[str, ...]:
    return (spec,) if isinstance(spec, str) else tuple(spec)


def repo_files(repo_id: str, revision: str) -> set[str]:
    """Every file name of `repo_id` at `revision` on the Hub."""
    from huggingface_hub import HfApi

    return set(HfApi().list_repo_files(repo_id, revision=revision))


def download_patterns(repo_id: str, revision: str, files: Sequence[FileSpec]) -> tuple[list[str], list[str]]:
    """(the file names to download: the first alternative the repository holds, the specs it lacks)."""
    listing = repo_files(repo_id, revision)
    patterns: list[str] = []
    absent: list[str] = []
    for spec in files:
        names = _names(spec)
        hit = next((n for n in names if n in listing), None)
        if hit is None:
            absent.append(" or ".join(names))
        else:
            patterns.append(hit)
    return patterns, absent


def fetch_files(repo_id: str, revision: str, files: Sequence[FileSpec], what: str = "checkpoint",
                hint: str | None = None) -> list[str]:
    """Download `files` of `repo_id` at `revision` into the Hugging Face cache; returns the names fetched.

    One-line BenchError when the repository, the revision or a file is not on the Hub, or the Hub
    cannot be reached (`hint` then says what to do instead).
    """
    from huggingface_hub import snapshot_download

    from .weights import hf_cache_dir

    tail = f"; {hint}" if hint else ""
    try:
        patterns, absent = download_patterns(repo_id, revision, files)
        if absent:
            raise BenchError(f"{what} {repo_id}@{revision}: the repository has no {', '.join(absent)}{tail}")
        if patterns:
            snapshot_download(repo_id, revision=revision, allow_patterns=patterns, cache_dir=str(hf_cache_dir()))
    except BenchError:
        raise
    except Exception as exc:  # the network boundary: huggingface_hub and its HTTP client raise many kinds
        raise BenchError(f"{what} {repo_id}@{revision}: cannot download from the Hugging Face Hub "
                         f"({type(exc).__name__}: {_first_line(exc)}){tail}") from None
    return patterns


__all__ = ["download_patterns", "fetch_files", "repo_files"]
