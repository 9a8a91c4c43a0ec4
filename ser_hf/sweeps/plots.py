"""Charts of a sweep (drawn by ``ser_hf.plotting``)."""
from __future__ import annotations

import math
from collections.abc import Sequence

from ser_hf.sweeps.statistics import METRIC_LABELS

def plot_summary(
    path: str,
    summary: Sequence[dict],
    grid_keys: Sequence[str],
    metric: str,
    *,
    compare: str | None = None,
    title: str | None = None,
) -> str:
    """Bar chart: one bar per cell (mean over seeds, std error bars); with ``compare`` one series per value."""
    from ser_hf.plotting import bar_chart

    row_keys = [k for k in grid_keys if k != compare] or list(grid_keys)
    categories = list(dict.fromkeys(" / ".join(e[k] for k in row_keys) for e in summary))
    series_names = list(dict.fromkeys(e[compare] for e in summary)) if compare else [METRIC_LABELS.get(metric, metric)]
    series = {name: [math.nan] * len(categories) for name in series_names}
    errors = {name: [math.nan] * len(categories) for name in series_names}
    for entry in summary:
        name = entry[compare] if compare else series_names[0]
        index = categories.index(" / ".join(entry[k] for k in row_keys))
        series[name][index] = entry[f"{metric}_mean"]
        errors[name][index] = entry[f"{metric}_std"]
    if compare:
        series = {f"{compare}={k}": v for k, v in series.items()}
        errors = {f"{compare}={k}": v for k, v in errors.items()}
    seeds = max((e["n_ok"] + e["n_failed"] + e["n_missing"] for e in summary), default=0)
    label = METRIC_LABELS.get(metric, metric)
    return bar_chart(
        path,
        categories,
        series,
        errors=errors,
        title=title or f"Test {label} by {' / '.join(row_keys)}\nmean ± std over {seeds} seed{'s' if seeds != 1 else ''}",
        ylabel=f"test {label}",
    )


def matrix_size(num_corpora: int) -> tuple[float, float]:
    """Figure size in inches of the cross-corpus heatmap."""
    side = max(3.5, 0.9 * num_corpora + 2.0)
    return side + 1.2, side + 0.6


def plot_matrix(path: str, values: Sequence[Sequence[float]], names: Sequence[str], *, title: str) -> str:
    """Train-corpus x test-corpus heatmap (rows train, columns test) with the score in each cell;
    a pair without a result is grey with "n/a"."""
    import numpy as np

    from ser_hf.plotting import new_figure, save_figure

    grid = np.asarray(values, dtype=float)
    k = len(names)
    figure = new_figure(*matrix_size(k))
    axes = figure.subplots()
    image = axes.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0.0, vmax=1.0, aspect="equal")
    axes.set_facecolor("#dddddd")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title(title, fontsize=11)
    axes.set_xticks(range(k), labels=names, rotation=30, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(k), labels=names)
    axes.set_xlabel("test corpus")
    axes.set_ylabel("training corpus")
    for i in range(k):
        for j in range(k):
            value = grid[i, j]
            text = "n/a" if math.isnan(value) else f"{value:.3f}"
            color = "black" if math.isnan(value) or value > 0.6 else "white"
            axes.text(j, i, text, ha="center", va="center", color=color, fontsize=10, fontweight="bold" if i == j else None)
    return save_figure(figure, path)
