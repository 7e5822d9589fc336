"""The folder of the harness's caches (phantom images, image checks, viewer overlays, rescored tables).

`BENCH_CACHE` when set, else `$XDG_CACHE_HOME/cxr-grounding-bench`, else `~/.cache/cxr-grounding-bench`.
Everything under it can be deleted at any time: it is made again when needed.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "BENCH_CACHE"


def cache_root() -> Path:
    """The cache folder in force now (read from the environment on every call, so tests can move it)."""
    given = os.environ.get(ENV)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"  # the XDG spec ignores relative paths
    return base / "cxr-grounding-bench"
