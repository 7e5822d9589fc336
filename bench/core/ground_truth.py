"""Ground truth beyond boxes: where a sample's mask comes from, and decoding it.

A sample's ground truth is boxes (a union of rectangles), a mask, or points. A mask is referenced,
not held: a `MaskSource` names a PNG/NPY file or carries COCO run-length encoding, and
`load_mask` decodes it at the image size on demand (bounded before allocating; one line naming
the sample when it cannot be read or does not match the image). Decoding RLE goes through
`pycocotools`, never a hand-written decoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SampleError
from .limits import image_too_large

Point = tuple[float, float]

#: the kinds of ground truth a sample can carry, in the order `gt_kind` prefers them
GT_KINDS = ("mask", "boxes", "points")


@dataclass(frozen=True)
class MaskSource:
    """A sample's GT mask: a PNG/NPY file (`path`; non-zero is foreground), or COCO RLE (`rle`).

    `rle` is the JSON text of a pycocotools RLE object, `{"size": [h, w], "counts": "..."}`
    (compressed string counts) or uncompressed integer counts; JSON text keeps the record hashable.
    """

    path: str | None = None
    rle: str | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.rle is None):
            raise ValueError("a MaskSource is either a file or an RLE")

    def describe(self) -> str:
        """A short text for messages and tables: the file, or 'rle'."""
        return self.path if self.path is not None else "rle"

    def digest(self, height: int, width: int, sample_id: str = "") -> str:
        """sha256 of the decoded mask (its bits in row-major order, with its shape): the fingerprint's view of it."""
        mask = load_mask(self, height, width, sample_id)
        h = hashlib.sha256(f"{mask.shape[0]}x{mask.shape[1]}:".encode())
        h.update(np.packbits(mask, axis=None).tobytes())
        return h.hexdigest()[:16]


def rle_text(rle: dict) -> str:
    """The canonical JSON text of an RLE object (bytes counts decoded), as `MaskSource.rle` holds it."""
    counts = rle.get("counts")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return json.dumps({"size": [int(v) for v in rle.get("size", [])], "counts": counts}, separators=(",", ":"))


def compressed_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO `counts` string (pycocotools' `rleFrString`); ValueError when cut short.

    Used to check that the runs are non-negative and cover exactly h x w pixels before pycocotools
    decodes them: its decoder trusts the string, and runs that do not add up to the size give
    uninitialised pixels (too few) or write past its buffer (too many).
    """
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("the string ends inside a run length")
            c = ord(text[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {text[p]!r} is not a COCO RLE character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _decode_rle(text: str, sample_id: str) -> np.ndarray:
    from pycocotools import mask as cocomask

    try:
        rle = json.loads(text)
        size = [int(v) for v in rle["size"]]
        counts = rle["counts"]
    except (ValueError, KeyError, TypeError):
        raise SampleError(sample_id, "mask RLE is not an object with 'size' [h, w] and 'counts'") from None
    if len(size) != 2 or min(size) <= 0:
        raise SampleError(sample_id, f"mask RLE size {size} is not a positive [h, w]")
    too_large = image_too_large(size[1], size[0])
    if too_large:
        raise SampleError(sample_id, f"mask RLE size {too_large}")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != size[0] * size[1]:
            raise SampleError(sample_id, f"mask RLE counts do not add up to its {size[0]}x{size[1]} size")
        obj = cocomask.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
    elif isinstance(counts, str):
        try:
            runs = compressed_counts(counts)
        except ValueError as exc:
            raise SampleError(sample_id, f"mask RLE counts are malformed: {exc}") from None
        if any(c < 0 for c in runs) or sum(runs) != size[0] * size[1]:
            raise SampleError(sample_id, f"mask RLE counts do not add up to its {size[0]}x{size[1]} size")
        obj = {"size": size, "counts": counts.encode("ascii")}
    else:
        raise SampleError(sample_id, "mask RLE counts are neither a string nor a list of integers")
    try:
        decoded = cocomask.decode(obj)
    except Exception as exc:  # pycocotools raises plain Exceptions on malformed counts
        raise SampleError(sample_id, f"mask RLE does not decode: {exc}") from None
    if decoded.shape[:2] != (size[0], size[1]):
        raise SampleError(sample_id, "mask RLE does not decode to its stated size")
    return decoded.astype(bool)


def _read_file(path: str, sample_id: str) -> np.ndarray:
    from .limits import max_image_pixels
    from .npyfile import at_most, numeric, read_npy

    p = Path(path)
    if not p.is_file():
        raise SampleError(sample_id, f"mask file {path} does not exist")
    if p.suffix.lower() == ".npy":
        def check(shape: tuple, dtype: np.dtype) -> None:
            numeric(dtype, f"mask file {path}")
            at_most(max_image_pixels(), 8)(shape, dtype)

        try:
            arr = read_npy(p, check)
        except ValueError as exc:
            raise SampleError(sample_id, f"mask {exc}") from None
    else:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(p) as im:
                too_large = image_too_large(*im.size)
                if too_large:
                    raise SampleError(sample_id, f"mask {path}: image size {too_large}")
                arr = np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError) as exc:
            raise SampleError(sample_id, f"mask file {path} is not a readable image: {exc}") from None
    if arr.ndim != 2:
        raise SampleError(sample_id, f"mask file {path} is not a 2-D array (shape {tuple(arr.shape)})")
    return np.asarray(arr) != 0


def load_mask(source: MaskSource, height: int, width: int, sample_id: str = "") -> np.ndarray:
    """The mask as a boolean (height, width) array; SampleError when it cannot be read or has another size."""
    mask = _decode_rle(source.rle, sample_id) if source.rle is not None else _read_file(source.path, sample_id)
    if mask.shape != (height, width):
        raise SampleError(sample_id, f"mask {source.describe()} is {mask.shape[1]}x{mask.shape[0]}, "
                                     f"the image is {width}x{height}")
    return mask
