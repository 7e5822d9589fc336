"""Reading DICOM radiographs (RSNA Pneumonia, SIIM-ACR) with pydicom, header first.

The header's Rows x Columns is checked against the pixel limit before the pixel data is decoded.
The stored values are returned unscaled (no window, no rescale): a method normalises its input;
MONOCHROME1 images (white is low) are inverted within their stored bit range so that, as in every other format read here, bone
is bright.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.limits import image_too_large

SUFFIXES = (".dcm", ".dicom")


def is_dicom(path: str | Path) -> bool:
    """True for a file name with a DICOM suffix."""
    return str(path).lower().endswith(SUFFIXES)


def dicom_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone; ValueError with the reason when it is not a readable DICOM image."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"cannot read DICOM {path}: {exc}") from None
    rows, cols = ds.get("Rows"), ds.get("Columns")
    if rows is None or cols is None:
        raise ValueError(f"DICOM {path} has no Rows/Columns (not an image)")
    return int(cols), int(rows)


def read_dicom(path: str | Path) -> np.ndarray:
    """The image of a single-frame DICOM file as a 2-D array; ValueError with the reason when it cannot be read."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    width, height = dicom_size(path)
    too_large = image_too_large(width, height)
    if too_large:
        raise ValueError(f"image {path} is {too_large}")
    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, RuntimeError, NotImplementedError) as exc:
        raise ValueError(f"cannot decode DICOM {path}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from None
    if pixels.ndim != 2:
        raise ValueError(f"DICOM {path} is not a single grey-value frame (pixel array of shape {pixels.shape})")
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        if int(ds.get("PixelRepresentation", 0)) == 0:  # unsigned: mirror the stored range
            pixels = ((1 << int(ds.get("BitsStored", pixels.dtype.itemsize * 8))) - 1 - pixels.astype(np.int64))
            pixels = pixels.astype(np.uint8 if pixels.max(initial=0) < 256 else np.uint16)
        else:
            pixels = -pixels.astype(np.int64)
    return np.asarray(pixels)
