"""Leaderboard figures: direction of better on every metric plot, legends off the data, readable maps, SVG."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.reporting import plots


def _table(metric_values: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for method, means in metric_values.items():
        for group, mean in zip(["a", "b", "macro"], means):
            rows.append({"method": method, "group": group, "mean": mean, "ci_low": mean - 0.1, "ci_high": mean + 0.1})
    return pd.DataFrame(rows)


def test_metric_plots_say_which_way_is_better_and_keep_the_legend_off_the_data() -> None:
    table = _table({"m1": [0.2, 0.9, 0.5], "m2": [0.95, 0.1, 0.5]})  # points in every corner of the axes
    fig = plots.metric_figure(table, "miou", ["a", "b", "macro"], ["m1", "m2"], "t")
    try:
        ax = fig.axes[0]
        assert ax.get_ylabel().endswith("higher is better)")
        fig.canvas.draw()
        legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.x0 >= frame.x1  # beside the axes, never over a point
    finally:
        plots._pyplot().close(fig)
    svg = plots.metric_plot(table, "distance", ["a", "b", "macro"], ["m1", "m2"], "t", "svg").decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and "lower is better" in svg


def test_example_maps_use_a_colour_blind_safe_colormap_with_a_colorbar() -> None:
    image = np.zeros((20, 30))
    heatmap = np.linspace(0, 1, 600).reshape(20, 30)
    heatmap[0, 0] = np.nan
    fig = plots.overlay_figure(image, heatmap, np.array([[2, 3, 5, 4]]), "x")
    try:
        overlay = fig.axes[0].get_images()[1]
        assert overlay.get_cmap().name in ("cividis", "viridis")
        assert len(fig.axes) == 2 and fig.axes[1].get_ylabel().startswith("map value")  # the colorbar
    finally:
        plots._pyplot().close(fig)
    assert b"<svg" in plots.overlay_plot(image, heatmap, np.array([[2, 3, 5, 4]]), "x", "svg")
