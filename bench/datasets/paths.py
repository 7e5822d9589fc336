"""Image paths named by a dataset's table stay inside the folder the table belongs to.

A CSV row's `path` or `Image Index` is joined to the data root; an absolute path, a `..` that
climbs out, or a symbolic link whose target lies elsewhere would make the harness read any file
the user can read. Such a path is refused in one line unless the dataset was opened with
`allow_outside_root` (`--allow-outside-root`), for the rare layout that keeps images elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..core.errors import BenchError

#: the command-line option that lifts the check
OPTION = "--allow-outside-root"


def climbs_out(name: str) -> bool:
    """True for a table entry that is absolute or has a `..` component (in either slash style)."""
    text = str(name)
    if PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute() or PureWindowsPath(text).drive:
        return True
    return ".." in PurePosixPath(text.replace("\\", "/")).parts


def inside(root: Path, name: str, what: str, allow: bool = False, found: Path | None = None) -> Path:
    """`found` (default `root / name`), refused (BenchError naming `what`) when it leads outside `root`.

    `name` is checked as written (absolute, `..`), and the path as resolved on disk (symbolic links
    along the way).
    """
    path = Path(found) if found is not None else Path(root) / name
    if allow:
        return path
    if climbs_out(name):
        raise BenchError(f"{what} {name!r} leads outside the data root {root}; refused (use {OPTION} if your "
                         "images really live there)")
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise BenchError(f"{what} {name!r} is a link to {real}, outside the data root {root}; refused (use "
                         f"{OPTION} if your images really live there)")
    return path


def index_files(root: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """File name -> path of every file below `root` whose name ends in one of `suffixes` (lower case).

    Symbolic links to folders are not followed, so the index stays inside `root`; the first file
    of a name in sorted walking order wins.
    """
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(suffixes):
                found.setdefault(name, Path(folder) / name)
    return found
