"""Leaderboard figures: per-category means with CI bars, and heatmap overlays with GT boxes.

Figures are drawn with matplotlib's Agg backend and saved without a software/date stamp, so the
same data gives the same file with the same matplotlib; leaderboard checks compare the data
behind a figure, not its bytes.
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
    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def metric_plot(table: pd.DataFrame, metric: str, groups: Sequence[str], methods: Sequence[str], title: str) -> bytes:
    """PNG: one point per (group, method) at the mean with its 95% CI as an error bar.

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
    ax.set_ylabel(f"{metric} (mean, 95% CI)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data


def overlay_plot(image: np.ndarray, heatmap: np.ndarray, boxes: np.ndarray, title: str) -> bytes:
    """PNG: the image in grey, the map on top (nothing drawn where it is NaN), GT boxes in green."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    height, width = image.shape
    fig, ax = plt.subplots(figsize=(4.0, 4.0 * height / width + 0.4))
    ax.imshow(image, cmap="gray", interpolation="nearest")
    ax.imshow(np.ma.masked_invalid(heatmap), cmap="jet", alpha=0.4, vmin=0.0, vmax=1.0, interpolation="nearest")
    for x, y, w, h in boxes:
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, edgecolor="lime", linewidth=1.5))
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    fig.tight_layout()
    data = _png(fig)
    plt.close(fig)
    return data
