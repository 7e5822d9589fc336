"""Reading radiographs from disk as 2-D arrays."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core import atomic
from ..core.errors import SampleError
from ..core.samples import Sample


def read_grayscale(path: str | Path, sample_id: str = "") -> np.ndarray:
    """Read an image file as a 2-D array of its grey values (uint8 or uint16, unscaled).

    RGB and RGBA files (some ChestX-ray14 PNGs are RGBA) are reduced to their luminance; the alpha
    channel is ignored. A missing or unreadable file raises SampleError naming the path.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise SampleError(sample_id or path.name, f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.int64)
                return arr.astype(np.uint16 if arr.max(initial=0) < 65536 else np.int64)
            if img.mode != "L":
                img = img.convert("RGB").convert("L")
            return np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SampleError(sample_id or path.name, f"cannot read image {path}: {exc}") from None


def decoded_size(path: str | Path) -> tuple[int, int] | str:
    """(width, height) of a fully decoded image file, or the reason it cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        return f"image not found: {path}"
    try:
        with Image.open(path) as img:
            img.load()  # decodes every pixel: a truncated file fails here, not in a method
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"cannot read image {path}: {exc}"


def _cache_file(dataset: str) -> Path:
    base = Path(os.environ.get("BENCH_CACHE") or Path.home() / ".cache" / "cxr-grounding-bench")
    return base / "image-checks" / f"{dataset}.json"


def check_images(samples: Sequence[Sample], dataset: str) -> dict[str, str]:
    """Sample id -> reason, for every sample whose image does not decode or has another size.

    Every method gets the same answer, so no method scores a sample another cannot read. Each
    file is decoded once: its result is cached (under BENCH_CACHE) by path, byte size and
    modification time, so a later run only reads the file's metadata.
    """
    cache_path = _cache_file(dataset)
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    changed = False
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
            entry = [*(stamp or [None, None]), list(found) if isinstance(found, tuple) else found]
            if stamp is not None:
                cache[path] = entry
                changed = True
        found = entry[2]
        if isinstance(found, str):
            problems[s.sample_id] = found
        elif tuple(found) != (s.width, s.height):
            problems[s.sample_id] = (f"image {path} is {found[0]}x{found[1]}, but the dataset records "
                                     f"{s.width}x{s.height} for it (the boxes are in that size's pixels)")
    if changed:
        try:
            atomic.write_text(cache_path, json.dumps(cache))
        except OSError:
            pass  # a read-only cache only costs the next run the same decoding
    return problems
