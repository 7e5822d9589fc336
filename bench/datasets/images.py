"""Reading radiographs from disk as 2-D arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import SampleError


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
