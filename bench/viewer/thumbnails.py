"""Downscaled images and maps of scored samples: the leaderboard's example figure and the viewer's overlays.

The map shown is the scored one (the protocol's interpolation and value policy for the run's
backend), sampled at the thumbnail's pixel centres, so what is seen is what was scored. Overlays
are composed with NumPy (the cividis colormap of the figures, alpha 0.5) rather than drawn as a
matplotlib figure each: a thousand samples take seconds, not minutes.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import BenchError
from ..core.geometry import nearest_index
from ..core.heatmap import Heatmap, read_original_map
from ..evaluation.protocols import Protocol
from ..evaluation.resample import to_original
from ..evaluation.scoring import apply_policy
from ..reporting.plots import MAP_CMAP
from ..running.rundir import RunDir, file_name

#: the longer side of a thumbnail, in pixels
THUMBNAIL = 256
#: the map's opacity over the image, as in the leaderboard's overlay figure
ALPHA = 0.5


def _thumbnail_index(size: int, scale: float) -> np.ndarray:
    out = max(1, int(round(size * scale)))
    return np.minimum(((np.arange(out) + 0.5) / scale).astype(np.int64), size - 1)


def grey_uint8(image: np.ndarray, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """The image min-max scaled to 0..255 (a constant image is black); with `rows`, `cols` only those pixels.

    The range is the whole image's either way, so a thumbnail has the pixels of the scaled image.
    """
    image = np.asarray(image)
    lo, hi = float(image.min()), float(image.max())
    if rows is not None and cols is not None:
        image = image[rows][:, cols]
    image = np.asarray(image, dtype=np.float64)
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return np.round(scaled * 255).astype(np.uint8)


def scored_pixels(heatmap: Heatmap, protocol: Protocol, backend: str | None, rows: np.ndarray,
                  cols: np.ndarray) -> np.ndarray:
    """The scored map (interpolation and value policy of the protocol) at the original pixels rows x cols.

    With nearest interpolation every original pixel shows one native cell, so the policy is applied
    to the cells that some pixel shows (the same values, hence the same min-max, as the whole
    upsampled map) and only the asked pixels are looked up: the same numbers as `to_original`
    followed by `apply_policy`, without building the full-resolution map.
    """
    policy = protocol.value_policy(backend)
    if protocol.interpolation != "nearest":
        return apply_policy(to_original(heatmap, protocol.interpolation), policy)[rows][:, cols]
    g = heatmap.geometry
    values = np.asarray(heatmap.values, dtype=np.float64)
    native_rows = nearest_index(g.height, values.shape[0])
    native_cols = nearest_index(g.width, values.shape[1])
    hit_rows, hit_cols = np.unique(native_rows), np.unique(native_cols)
    scored = apply_policy(values[hit_rows][:, hit_cols], policy)
    inside_r = (rows >= g.top) & (rows < g.top + g.height)
    inside_c = (cols >= g.left) & (cols < g.left + g.width)
    r = np.searchsorted(hit_rows, native_rows[np.clip(rows - g.top, 0, g.height - 1)])
    c = np.searchsorted(hit_cols, native_cols[np.clip(cols - g.left, 0, g.width - 1)])
    out = scored[r][:, c]
    out[~inside_r, :] = np.nan
    out[:, ~inside_c] = np.nan
    return out


def example_arrays(image: np.ndarray, heatmap: Heatmap, boxes: list, protocol: Protocol,
                   backend: str | None, size: int = THUMBNAIL, pred_boxes: list | None = None) -> dict[str, np.ndarray]:
    """Image, scored map and boxes (and, when given, the predicted boxes as `pred_boxes`), downscaled so
    the longer side is at most `size` pixels."""
    g = heatmap.geometry
    height, width = g.image_height, g.image_width
    scale = min(1.0, size / max(height, width))
    rows, cols = _thumbnail_index(height, scale), _thumbnail_index(width, scale)
    out = {"image": grey_uint8(image, rows, cols),
           "heatmap": scored_pixels(heatmap, protocol, backend, rows, cols).astype(np.float16),
           "boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale}
    if pred_boxes is not None:
        out["pred_boxes"] = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4) * scale
    return out


def stored_heatmap(run: RunDir, record: dict, sample_id: str) -> Heatmap | None:
    """The sample's map from the run's heatmaps/, or from the folder a `bench score` run scored; None if absent."""
    scored = record.get("heatmaps")
    candidates = [run.heatmap_path(sample_id)]
    if scored:
        candidates += [Path(scored) / f"{file_name(sample_id)}.npz", Path(scored) / f"{file_name(sample_id)}.npy"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return None
    try:
        return Heatmap.from_original(read_original_map(path)) if path.suffix == ".npy" else Heatmap.load(path)
    except ValueError as exc:
        raise BenchError(str(exc)) from None


@lru_cache(maxsize=1)
def colour_table() -> np.ndarray:
    """The map colormap as 256 RGB rows (uint8): value v in [0, 1] shows as row round(255 v)."""
    from matplotlib import colormaps

    return np.round(colormaps[MAP_CMAP](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def overlay_rgb(image: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The grey image with the [0, 1] map blended on top in the map colormap; NaN (no value) leaves the image."""
    grey = np.repeat(np.asarray(image, dtype=np.float32)[..., None], 3, axis=2)
    values = np.asarray(heatmap, dtype=np.float32)
    finite = np.isfinite(values)
    index = np.round(np.clip(np.where(finite, values, 0.0), 0.0, 1.0) * 255).astype(np.intp)
    colour = colour_table()[index].astype(np.float32)
    blended = np.where(finite[..., None], (1 - alpha) * grey + alpha * colour, grey)
    return np.round(blended).astype(np.uint8)


def _eroded(m: np.ndarray) -> np.ndarray:
    """Pixels of `m` whose four neighbours are in `m` too (outside the array counts as outside the mask)."""
    inner = np.zeros_like(m)
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return inner


def mask_outline(mask: np.ndarray, size: int = THUMBNAIL, width: int = 2) -> np.ndarray:
    """The inner boundary band of a GT mask at thumbnail size, `width` pixels wide: mask pixels (sampled at the
    thumbnail's pixel centres) within `width` 4-neighbour steps of the outside or of the thumbnail's edge."""
    height, wide = mask.shape
    scale = min(1.0, size / max(height, wide))
    m = np.asarray(mask, dtype=bool)[_thumbnail_index(height, scale)][:, _thumbnail_index(wide, scale)]
    inner = m
    for _ in range(width):
        inner = _eroded(inner)
    return m & ~inner


def draw_outline(rgb: np.ndarray, outline: np.ndarray, colour: str) -> np.ndarray:
    """`rgb` with the `outline` pixels painted in `colour` ('#rrggbb')."""
    out = rgb.copy()
    out[outline] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return out


def jpeg(pixels: np.ndarray, quality: int = 85, full_colour: bool = False) -> bytes:
    """JPEG bytes of a grey or RGB uint8 array (no metadata: equal pixels give equal bytes); `full_colour`
    keeps the colour at every pixel (4:4:4), so a thin coloured line is not smeared by chroma subsampling."""
    from PIL import Image

    buf = io.BytesIO()
    extra = {"subsampling": 0} if full_colour else {}
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality, optimize=True, **extra)
    return buf.getvalue()


def colour_stops(steps: int = 11) -> list[str]:
    """CSS colours of the colormap at `steps` even values from 0 to 1 (a colour-scale gradient)."""
    table = colour_table()
    return ["#%02x%02x%02x" % tuple(table[int(round(255 * k / (steps - 1)))]) for k in range(steps)]
