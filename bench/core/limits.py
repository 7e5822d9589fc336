"""Size limits on input a user can place: checked before anything of that size is allocated.

An image or a map file declares its size in a few header bytes and can be tiny on disk while
decoding to many gigabytes (a 389 KB PNG of 20000 x 20000 pixels, a 1.5 MB `.npz` holding a
40000 x 40000 grid). Every such size is compared with a limit here first.
"""

from __future__ import annotations

import os

from .errors import BenchError

#: environment variable that raises (or lowers) the image pixel limit
PIXELS_ENV = "BENCH_MAX_IMAGE_PIXELS"
#: default most pixels of one image (8000 x 8000; a MIMIC-CXR radiograph has 7.8 million)
DEFAULT_MAX_PIXELS = 64_000_000
#: a native grid may always have this many cells per side, even over a smaller field of view
#: (a 512 x 512 map of a model's input crop over a 384-pixel image is a legitimate map)
MODEL_GRID_SIDE = 1024
#: most characters of the JSON record stored beside a native map
MAX_RECORD_CHARS = 1_000_000


def max_image_pixels() -> int:
    """The most pixels an image (or a sample's declared size) may have: BENCH_MAX_IMAGE_PIXELS or the default."""
    raw = os.environ.get(PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise BenchError(f"{PIXELS_ENV}={raw!r} is not a positive whole number of pixels")
    return value


def image_too_large(width: int, height: int) -> str | None:
    """The reason a width x height image is refused, or None when it is within the pixel limit."""
    limit = max_image_pixels()
    if int(width) * int(height) <= limit:
        return None
    return (f"{width}x{height} = {int(width) * int(height):,} pixels is above the limit of {limit:,} pixels "
            f"(set {PIXELS_ENV} to raise it)")


def grid_too_large(rows: int, cols: int, fov_height: int, fov_width: int) -> str | None:
    """The reason a native grid of rows x cols over a field of view of fov_height x fov_width is refused.

    A grid may be as fine as the pixels of its field of view, or up to MODEL_GRID_SIDE cells a side
    (a model's input crop can be larger than a small image); anything finer describes more values
    than there are pixels to place them on.
    """
    if rows <= max(fov_height, MODEL_GRID_SIDE) and cols <= max(fov_width, MODEL_GRID_SIDE):
        return None
    return (f"native grid {rows}x{cols} is larger than its {fov_height}x{fov_width} field of view on the image "
            f"(and than {MODEL_GRID_SIDE}x{MODEL_GRID_SIDE})")
