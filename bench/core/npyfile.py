"""Reading `.npy` and `.npz` files a user can place: header first, data only when its size is allowed.

`np.load` allocates whatever shape a file declares, and for a file that is not NumPy at all it
reports "pickled (object) data" with advice to load it unsafely. Here the header (shape, dtype) is
read and checked by the caller before a byte of data is, object arrays are never loaded, and a file
that is not a NumPy file is called that.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Callable

import numpy as np
import numpy.lib.format as npformat

#: checks (shape, dtype) of an array before it is read; raises ValueError with the reason
HeaderCheck = Callable[[tuple, np.dtype], None]


def _header(fh: IO[bytes], what: str) -> tuple[tuple, np.dtype]:
    try:
        version = npformat.read_magic(fh)
    except ValueError:
        raise ValueError(f"{what} is not a NumPy .npy file (it does not start with the NumPy header)") from None
    try:
        if version == (1, 0):
            shape, _, dtype = npformat.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = npformat.read_array_header_2_0(fh)
        else:
            raise ValueError(f"{what} has NumPy format version {version[0]}.{version[1]}; save it with "
                             "numpy.save (version 1.0 or 2.0)")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ValueError(f"{what} has a broken NumPy header ({exc})") from None
    if dtype.hasobject:
        raise ValueError(f"{what} holds Python objects ({dtype}); only numeric arrays are read, never objects")
    return tuple(shape), dtype


def _read(fh: IO[bytes], what: str, check: HeaderCheck | None) -> np.ndarray:
    shape, dtype = _header(fh, what)
    if check is not None:
        check(shape, dtype)
    fh.seek(0)
    try:
        return npformat.read_array(fh, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{what} is cut short or broken ({exc})") from None


def npy_header(path: Path) -> tuple[tuple, np.dtype]:
    """(shape, dtype) declared by a .npy file; ValueError when it is not one."""
    with open(path, "rb") as fh:
        return _header(fh, str(path))


def read_npy(path: Path, check: HeaderCheck | None = None) -> np.ndarray:
    """The array of a .npy file, after `check(shape, dtype)` accepted its header; ValueError otherwise."""
    try:
        with open(path, "rb") as fh:
            return _read(fh, str(path), check)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_npz(path: Path, checks: dict[str, HeaderCheck | None], hint: str = "") -> dict[str, np.ndarray]:
    """The named arrays of a .npz file, each read only after its check accepted its header.

    ValueError (one line naming the file) when the file is not a .npz archive, an array is missing
    or its header is refused; `hint` is added to the message of a missing array.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [k for k in checks if f"{k}.npy" not in names]
            if missing:
                found = ", ".join(sorted(n.removesuffix(".npy") for n in names)) or "none"
                raise ValueError(f"{path} has no {' or '.join(repr(k) for k in missing)} array (found: {found}){hint}")
            out = {}
            for key, check in checks.items():
                with archive.open(f"{key}.npy") as fh:
                    out[key] = _read(fh, f"{path} (array {key!r})", check)
            return out
    except zipfile.BadZipFile:
        raise ValueError(f"{path} is not a NumPy .npz file (not a zip archive)") from None
    except (OSError, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def numeric(dtype: np.dtype, what: str) -> None:
    """ValueError unless dtype is a number or boolean type (what a map can hold, at most 16 bytes a value)."""
    if dtype.kind not in "biufc" or dtype.itemsize > 16:
        raise ValueError(f"{what} has dtype {dtype}; a map holds real numbers")


def at_most(cells: int, itemsize: int = 16) -> HeaderCheck:
    """A header check refusing arrays of more than `cells` values or values of more than `itemsize` bytes."""

    def check(shape: tuple, dtype: np.dtype) -> None:
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if count > cells or dtype.itemsize > itemsize:
            raise ValueError(f"array of shape {shape} and dtype {dtype} is larger than the {cells:,} values of at most "
                             f"{itemsize} bytes allowed here")

    return check
