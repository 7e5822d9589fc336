"""Output folders written whole: built in a temporary folder beside the target, then renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..core import atomic
from ..core.errors import BenchError


def check_out(out: Path, marker: str) -> None:
    """BenchError unless `out` is absent, empty, or an earlier output of ours (it holds `marker`)."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / marker).is_file():
        raise BenchError(f"--out {out} is a folder that holds other files (no {marker}); choose a new or "
                         "empty folder, or an earlier one written by this command to replace it")


def build_folder(out: Path, marker: str, fill: Callable[[Path], None]) -> None:
    """Let `fill` write into a fresh temporary folder, then put it at `out`; on any failure nothing is left."""
    out = Path(out)
    check_out(out, marker)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o777 & ~atomic.current_umask())
        replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace(tmp: Path, out: Path) -> None:
    """Put the finished folder `tmp` at `out`: a rename; an earlier folder there is moved aside first, then removed."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rename(out, old / "previous")
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old / "previous", out)
        raise
    shutil.rmtree(old, ignore_errors=True)
