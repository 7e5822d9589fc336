"""An exclusive lock on a run folder, taken before its identity is checked and held to the end.

Two processes writing one `--out` would mix their heatmaps and tables under one run.json, so a
run folder is locked from the first moment: whoever holds `.lock` is the only process that may
check what the folder holds and write to it. A second process waits a few seconds (a shard of a
multi-process launch holds the lock only while it checks and records itself), then refuses with a
line naming the holder, taken from `.lock.owner`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ..core import atomic
from ..core.errors import BenchError

LOCK_NAME = ".lock"
OWNER_NAME = ".lock.owner"
#: names of the lock's own files, which do not count as run contents
LOCK_FILES = frozenset({LOCK_NAME, OWNER_NAME})


def is_lock_file(name: str) -> bool:
    """The lock's own files, the owner record's atomic-write temporary included (another process
    may be writing it while this one looks at the folder)."""
    return name in LOCK_FILES or (name.startswith(f".{OWNER_NAME}.") and name.endswith(".tmp"))
#: seconds a second process waits for the lock before it refuses
WAIT_S = 5.0


def _owner_text(owner: Path) -> str:
    try:
        info = json.loads(owner.read_text())
    except (OSError, ValueError):
        return "another bench process"
    return f"bench process {info.get('pid')} on {info.get('host')} since {info.get('since')}: {info.get('command')}"


def check_folder(root: Path, flag: str = "--out") -> None:
    """BenchError if `root` exists and is not a folder."""
    if root.exists() and not root.is_dir():
        raise BenchError(f"{flag} {root} is a file, not a folder; choose another {flag}")


def is_empty(root: Path) -> bool:
    """True when the folder is missing or holds nothing but the lock's own files."""
    return not root.is_dir() or all(is_lock_file(p.name) for p in root.iterdir())


@contextmanager
def locked(root: Path, wait_s: float = WAIT_S, flag: str = "--out") -> Iterator[bool]:
    """Hold the run folder's lock (creating the folder); yields whether this call created it.

    When the body fails and this call created the folder, the folder goes again if it holds no
    heatmap, and so do the parent folders this call created (when empty), so a refused or failed
    run leaves nothing behind.
    """
    root = Path(root)
    check_folder(root, flag)
    made = [p for p in (root, *root.parents) if not p.exists()]  # the folders mkdir creates, innermost first
    created = bool(made)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"{flag} {root}: cannot create the folder ({exc.strerror or exc})") from None
    lock = FileLock(str(root / LOCK_NAME))
    try:
        lock.acquire(timeout=wait_s, poll_interval=0.05)
    except Timeout:
        raise BenchError(f"{flag} {root} is in use by {_owner_text(root / OWNER_NAME)}; wait for it to finish "
                         f"or choose another {flag}") from None
    owner = root / OWNER_NAME
    try:
        atomic.write_text(owner, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                             "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                             "command": " ".join(["bench", *sys.argv[1:]])}) + "\n")
        yield created
    except BaseException:
        if created and not any((root / "heatmaps").glob("*.npz")):
            shutil.rmtree(root, ignore_errors=True)
            for parent in made[1:]:
                try:
                    parent.rmdir()
                except OSError:  # no longer empty: another process wrote there
                    break
        raise
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
