"""Leaderboard figures: per-category means with CI bars, and heatmap overlays with GT boxes.

Figures are drawn with matplotlib's Agg backend and saved without a software/date stamp, so the
same data gives the same file with the same matplotlib; leaderboard checks compare the data
behind a figure, not its bytes. Each figure comes as PNG (for the pages) and SVG (vector, for
papers). Metric plots say which direction is better; maps use a colour-blind-safe colormap with a
colorbar; legends sit outside the axes, off the data.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "bench"
    plt.rcParams["svg.fonttype"] = "none"  # text stays text in the SVG: searchable and editable
    return plt


#: bump when the look of the figures changes, so `bench leaderboard` redraws them
STYLE = 2
FORMATS = ("png", "svg")
#: perceptually uniform and readable with the common colour-vision deficiencies
MAP_CMAP = "cividis"
BOX_COLOUR = "#ff4040"
PRED_BOX_COLOUR = "#40c0ff"


def _save(fig, fmt: str) -> bytes:
    buf = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
    fig.savefig(buf, format=fmt, dpi=100, metadata=metadata, bbox_inches="tight")
    return buf.getvalue()


def better_direction(metric: str) -> str:
    from ..evaluation.protocols import LOWER_IS_BETTER

    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def metric_plot(table: pd.DataFrame, metric: str, groups: Sequence[str], methods: Sequence[str], title: str,
                fmt: str = "png") -> bytes:
    """PNG or SVG of `metric_figure`."""
    plt = _pyplot()
    fig = metric_figure(table, metric, groups, methods, title)
    data = _save(fig, fmt)
    plt.close(fig)
    return data


def metric_figure(table: pd.DataFrame, metric: str, groups: Sequence[str], methods: Sequence[str], title: str):
    """One point per (group, method) at the mean with its 95% CI as an error bar; the legend right of the axes.

    `table` has columns method, group, mean, ci_low, ci_high for this metric.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) + 2), 4.0))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(groups), dtype=np.float64)
    for i, method in enumerate(methods):
        part = table[table["method"] == method].set_index("group").reindex(list(groups))
        mean = part["mean"].to_numpy(np.float64)
        err = np.vstack([mean - part["ci_low"].to_numpy(np.float64), part["ci_high"].to_numpy(np.float64) - mean])
        ax.errorbar(x - 0.4 + width * (i + 0.5), mean, yerr=np.abs(err), fmt="o", capsize=3, markersize=4,
                    label=method)
    ax.set_xticks(x)
    ax.set_xticklabels(list(groups), rotation=30, ha="right")
    ax.set_ylabel(f"{metric} (mean, 95% CI; {better_direction(metric)})")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def overlay_plot(image: np.ndarray, heatmap: np.ndarray, boxes: np.ndarray, title: str, fmt: str = "png",
                 pred_boxes: np.ndarray | None = None) -> bytes:
    """PNG or SVG of `overlay_figure`."""
    plt = _pyplot()
    fig = overlay_figure(image, heatmap, boxes, title, pred_boxes)
    data = _save(fig, fmt)
    plt.close(fig)
    return data


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, boxes: np.ndarray, title: str,
                   pred_boxes: np.ndarray | None = None):
    """The image in grey, the map on top with a colorbar (nothing drawn where it is NaN), GT boxes in red,
    predicted boxes (when given) dashed in `PRED_BOX_COLOUR`."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    height, width = image.shape
    fig, ax = plt.subplots(figsize=(4.6, 4.0 * height / width + 0.4))
    ax.imshow(image, cmap="gray", interpolation="nearest")
    shown = ax.imshow(np.ma.masked_invalid(heatmap), cmap=MAP_CMAP, alpha=0.5, vmin=0.0, vmax=1.0,
                      interpolation="nearest")
    for x, y, w, h in boxes:
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=BOX_COLOUR, linewidth=1.5))
    for x, y, w, h in (() if pred_boxes is None else pred_boxes):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor=PRED_BOX_COLOUR, linewidth=1.5,
                               linestyle="--"))
    bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label("map value (min-max over the field of view)", fontsize=7)
    bar.ax.tick_params(labelsize=7)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    return fig
