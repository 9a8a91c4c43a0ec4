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
