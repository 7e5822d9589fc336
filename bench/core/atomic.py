"""Atomic file writes: a reader never sees a half-written result."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Callable


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write(path: Path, writer: Callable[[io.BufferedWriter], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes files 0600; a plain open() honours the umask
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary file in the same folder and a rename."""
    _write(path, lambda fh: fh.write(data))


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_with(path: Path, writer: Callable[[io.BufferedWriter], None]) -> None:
    """Atomically write whatever `writer` puts into the open binary file handle."""
    _write(path, writer)
