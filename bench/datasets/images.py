"""Reading radiographs from disk as 2-D arrays."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import atomic
from ..core.cache import cache_root
from ..core.errors import SampleError
from ..core.limits import PIXELS_ENV, image_too_large, max_image_pixels
from ..core.samples import Sample
from .dicom import is_dicom, read_dicom


class ImageTooLarge(ValueError):
    """An image whose header declares more pixels than the limit allows."""


def open_image(path: Path):
    """The PIL image of `path`, its header read and its size within the pixel limit; nothing decoded yet.

    ImageTooLarge with the reason for an image above the limit (`BENCH_MAX_IMAGE_PIXELS`): its pixels
    are never decoded, whatever PIL's own decompression-bomb threshold.
    """
    from PIL import Image

    limit = max_image_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < limit:
        Image.MAX_IMAGE_PIXELS = limit  # PIL refuses above twice this: never below the documented limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as exc:  # far above the limit: PIL names only the pixel count
        found = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "more pixels than PIL allows"
        raise ImageTooLarge(f"image {path} is {size}, above the limit of {limit:,} pixels "
                            f"(set {PIXELS_ENV} to raise it)") from None
    reason = image_too_large(*img.size)
    if reason:
        img.close()
        raise ImageTooLarge(f"image {path} is {reason}")
    return img


def read_grayscale(path: str | Path, sample_id: str = "") -> np.ndarray:
    """Read an image file as a 2-D array of its grey values (uint8 or uint16, unscaled).

    RGB and RGBA files (some ChestX-ray14 PNGs are RGBA) are reduced to their luminance; the alpha
    channel is ignored. A `.dcm` / `.dicom` file is read with pydicom (`dicom.py`). A missing,
    unreadable or oversized file raises SampleError naming the path.
    """
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SampleError(sample_id or path.name, f"image not found: {path}")
    if is_dicom(path):
        try:
            return read_dicom(path)
        except ValueError as exc:
            raise SampleError(sample_id or path.name, str(exc)) from None
    try:
        with open_image(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.int64)
                return arr.astype(np.uint16 if arr.max(initial=0) < 65536 else np.int64)
            if img.mode != "L":
                img = img.convert("RGB").convert("L")
            return np.asarray(img, dtype=np.uint8)
    except ImageTooLarge as exc:
        raise SampleError(sample_id or path.name, str(exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise SampleError(sample_id or path.name, f"cannot read image {path}: {exc}") from None


def decoded_size(path: str | Path) -> tuple[int, int] | str:
    """(width, height) of a fully decoded image file, or the reason it cannot be decoded."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        return f"image not found: {path}"
    if is_dicom(path):
        try:
            pixels = read_dicom(path)  # decodes every pixel, as below
        except ValueError as exc:
            return str(exc)
        return pixels.shape[1], pixels.shape[0]
    try:
        with open_image(path) as img:
            img.load()  # decodes every pixel: a truncated file fails here, not in a method
            return img.size
    except ImageTooLarge as exc:
        return str(exc)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        return f"cannot read image {path}: {exc}"


#: the layout of the image-check cache file; another version is read as no cache
CHECK_CACHE_VERSION = 2
#: a cache file larger than this is not read (it is data a user can place: bounded before parsing)
MAX_CHECK_CACHE_BYTES = 32 * 2**20
#: at most this many files are remembered per dataset; above it only the files of the current check are kept
MAX_CHECK_ENTRIES = 200_000
#: the longest reason kept from a cache file (the harness's own reasons are one line)
_MAX_REASON = 2000


def check_cache_file(dataset: str) -> Path:
    """The image-check cache of a dataset: BENCH_CACHE/image-checks/NAME.json (NAME made safe for a file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", dataset).lstrip(".") or "_"
    return cache_root() / "image-checks" / f"{safe[:100]}.json"


def _valid_entry(entry: object) -> bool:
    """Whether a cache entry is [size, mtime_ns, (width, height) or reason] with the types the harness writes."""
    if not (isinstance(entry, list) and len(entry) == 3):
        return False
    size, mtime, found = entry
    if not (type(size) is int and type(mtime) is int):  # bool is not a size
        return False
    if isinstance(found, str):
        return len(found) <= _MAX_REASON
    return (isinstance(found, list) and len(found) == 2
            and all(type(v) is int and 0 < v < 2**31 for v in found))


def read_check_cache(path: Path) -> dict[str, list]:
    """Path -> [size, mtime_ns, (width, height) or reason] from a cache file; {} for a missing, oversized,
    corrupt or foreign file, and every malformed entry left out (the file is data, read as JSON only)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_CHECK_CACHE_BYTES + 1)
    except OSError:
        return {}
    if len(raw) > MAX_CHECK_CACHE_BYTES:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CHECK_CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return {k: v for k, v in data["files"].items() if isinstance(k, str) and _valid_entry(v)}


def check_images(samples: Sequence[Sample], dataset: str) -> dict[str, str]:
    """Sample id -> reason, for every sample whose image does not decode or has another size.

    Every method gets the same answer, so no method scores a sample another cannot read. Each
    file is decoded once: what it decoded to (its size, or why it did not) is cached under
    BENCH_CACHE/image-checks by its path, byte size and modification time (ns), so a later start
    only reads each file's metadata, and an edited or replaced file is decoded again. The recorded
    size of each sample is compared on every call, so the cache holds nothing a dataset's table
    decides. A missing, corrupt or unreadable cache costs only the decoding.
    """
    cache_path = check_cache_file(dataset)
    cache = read_check_cache(cache_path)
    changed = False
    used: set[str] = set()
    problems: dict[str, str] = {}
    for s in samples:
        path = os.path.abspath(s.image_path)
        try:
            st = os.stat(path)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = None
        entry = cache.get(path) if stamp is not None else None
        if entry is None or entry[:2] != stamp:
            found = decoded_size(path)
            entry = [*(stamp or [0, 0]), list(found) if isinstance(found, tuple) else found]
            if stamp is not None:
                cache[path] = entry
                changed = True
        if stamp is not None:
            used.add(path)
        found = entry[2]
        if isinstance(found, str):
            problems[s.sample_id] = found
        elif image_too_large(*found):  # decoded under a higher limit than today's
            problems[s.sample_id] = f"image {path} is {image_too_large(*found)}"
        elif tuple(found) != (s.width, s.height):
            problems[s.sample_id] = (f"image {path} is {found[0]}x{found[1]}, but the dataset records "
                                     f"{s.width}x{s.height} for it (the boxes are in that size's pixels)")
    if changed:
        if len(cache) > MAX_CHECK_ENTRIES:
            cache = {k: v for k, v in cache.items() if k in used}
        try:
            atomic.write_text(cache_path, json.dumps({"version": CHECK_CACHE_VERSION, "files": cache}))
        except OSError:
            pass  # a read-only cache only costs the next run the same decoding
    return problems
