"""The viewer's overlay cache kept to a bounded size.

Overlays are cached as `KEY.jpg` under BENCH_CACHE/view (see `build.py`); every run viewed adds
its own, so without a bound the folder grows with every run ever viewed. After each build the
cache is cut to `BENCH_VIEW_CACHE_MB` (default 1024 MB): the overlays the build used are always
kept, the others are removed oldest first (by the time they were made) until the folder fits, and
temporary files left by an interrupted write are removed once they are an hour old. A viewer
folder holds hard links (or copies) of its overlays, so removing them from the cache never breaks
a viewer already written.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Collection

from ..core.errors import BenchError

ENV = "BENCH_VIEW_CACHE_MB"
DEFAULT_MB = 1024
#: a temporary file of an atomic write older than this is left over from an interrupted build
STALE_TMP_S = 3600


def cache_limit() -> int:
    """The cache's size bound in bytes: BENCH_VIEW_CACHE_MB (a non-negative integer), else 1024 MB."""
    raw = os.environ.get(ENV)
    if raw is None or raw.strip() == "":
        return DEFAULT_MB * 2**20
    try:
        mb = int(raw)
    except ValueError:
        mb = -1
    if mb < 0:
        raise BenchError(f"{ENV}={raw!r} is not a size in MB (a whole number, 0 or more)")
    return mb * 2**20


def prune(cache: Path, keep: Collection[str], limit: int) -> int:
    """Remove overlays not in `keep` (file names), oldest first, until the folder's `.jpg` files fit in
    `limit` bytes; returns how many were removed. Files that vanish meanwhile (another build) are skipped."""
    entries = []
    total = 0
    now = time.time()
    try:
        listing = list(os.scandir(cache))
    except OSError:
        return 0
    for item in listing:
        try:
            if not item.is_file(follow_symlinks=False):
                continue
            st = item.stat(follow_symlinks=False)
        except OSError:
            continue
        if item.name.startswith(".") and item.name.endswith(".tmp"):
            if now - st.st_mtime > STALE_TMP_S:
                _remove(Path(item.path))
            continue
        if not item.name.endswith(".jpg"):
            continue
        total += st.st_size
        if item.name not in keep:
            entries.append((st.st_mtime_ns, item.name, st.st_size))
    removed = 0
    for _, name, size in sorted(entries):
        if total <= limit:
            break
        if _remove(cache / name):
            total -= size
            removed += 1
    return removed


def _remove(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:  # gone already (another build pruned it), or not ours to remove
        return False
    return True
