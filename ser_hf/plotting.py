"""Figures for evaluation reports and ablation tables, drawn with matplotlib's Agg canvas.

Figures are built on `matplotlib.figure.Figure` with an explicit Agg canvas instead of pyplot, so
plotting works without a display, never changes the user's global backend, and leaves no figures
alive in pyplot's registry. Every figure has a fixed size in inches and is saved at a fixed dpi
without tight cropping, so its pixel size is known in advance (``figure_pixels``). Files are written
atomically.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

DPI = 100

__all__ = [
    "DPI",
    "bar_chart",
    "bar_chart_size",
    "confusion_matrix_figure",
    "confusion_matrix_size",
    "figure_pixels",
    "new_figure",
    "save_figure",
    "scatter_figure",
    "scatter_size",
]


def new_figure(width: float, height: float):
    """A pyplot-free figure of ``width`` x ``height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def figure_pixels(size: tuple[float, float], dpi: int = DPI) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``size`` inches saved by `save_figure`."""
    return int(round(size[0] * dpi)), int(round(size[1] * dpi))


def save_figure(figure, path: str | os.PathLike, dpi: int = DPI) -> str:
    """Write ``figure`` as PNG at ``path`` atomically; returns the path."""
    from ser_hf.io import atomic_path

    path = os.fspath(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=dpi, format="png")
    return path


# ---------------------------------------------------------------------------------- confusion matrix
def confusion_matrix_size(num_classes: int) -> tuple[float, float]:
    """Figure size in inches: two square-ish panels that grow with the number of classes."""
    panel = max(3.5, 0.55 * num_classes + 2.0)
    return 2 * panel + 1.0, 0.8 * panel + 1.2


def confusion_matrix_figure(
    counts,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "Confusion matrix",
) -> str:
    """Counts (left) and row-normalised recall (right); rows are true classes, columns predictions.

    A class with no reference rows has an empty row on the right (shown as "-"), not a row of zeros,
    because its recall is undefined rather than zero.
    """
    counts = np.asarray(counts, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"confusion counts have shape {counts.shape}, expected {(k, k)} for classes {list(class_names)}")
    row_totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.where(row_totals > 0, counts / np.maximum(row_totals, 1), np.nan)

    figure = new_figure(*confusion_matrix_size(k))
    figure.suptitle(f"{title} (n={int(counts.sum())})", fontsize=13)
    left, right = figure.subplots(1, 2)
    _matrix_panel(left, counts.astype(float), class_names, "Counts", lambda v: f"{int(v)}", vmax=max(1, counts.max()))
    _matrix_panel(right, normalised, class_names, "Row-normalised (recall per true class)", lambda v: f"{v:.2f}", vmax=1.0)
    return save_figure(figure, path)


def _matrix_panel(axes, values: np.ndarray, class_names, panel_title: str, fmt, vmax: float) -> None:
    k = len(class_names)
    shown = np.ma.masked_invalid(values)
    image = axes.imshow(shown, cmap="Blues", vmin=0.0, vmax=vmax, aspect="equal")
    axes.figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_title(panel_title, fontsize=11)
    axes.set_xticks(range(k), labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(range(k), labels=class_names)
    axes.set_xlabel("Predicted class")
    axes.set_ylabel("True class")
    fontsize = 9 if k <= 10 else 7
    for i in range(k):
        for j in range(k):
            value = values[i, j]
            if np.isnan(value):
                text, color = "-", "gray"
            else:
                text, color = fmt(value), "white" if value > 0.6 * vmax else "black"
            axes.text(j, i, text, ha="center", va="center", color=color, fontsize=fontsize)


# ---------------------------------------------------------------------------------- scatter
def scatter_size(num_panels: int) -> tuple[float, float]:
    return 4.2 * num_panels + 0.4, 5.0


def scatter_figure(
    panels: Sequence[Mapping],
    path: str | os.PathLike,
    *,
    title: str = "Predicted vs. true",
    value_range: tuple[float, float] | None = None,
) -> str:
    """One prediction-vs-truth scatter per panel, with the identity line.

    Each panel is a mapping with ``name``, ``true``, ``predicted`` (1-D arrays) and ``title``.
    ``value_range`` fixes both axes (e.g. the corpus scale 1-7) so panels are comparable; points
    outside it are still drawn because the limits are widened to include them.
    """
    if not panels:
        raise ValueError("scatter_figure needs at least one panel")
    figure = new_figure(*scatter_size(len(panels)))
    figure.suptitle(title, fontsize=13)
    axes_list = np.atleast_1d(figure.subplots(1, len(panels)))
    for axes, panel in zip(axes_list, panels):
        true = np.asarray(panel["true"], dtype=float)
        predicted = np.asarray(panel["predicted"], dtype=float)
        if true.shape != predicted.shape:
            raise ValueError(f"panel {panel['name']!r}: {true.shape} true values vs {predicted.shape} predictions")
        low, high = _axis_limits(true, predicted, value_range)
        alpha = float(np.clip(30.0 / math.sqrt(max(len(true), 1)), 0.15, 0.8))
        axes.scatter(true, predicted, s=10, alpha=alpha, color="tab:blue", edgecolors="none")
        axes.plot([low, high], [low, high], linestyle="--", color="tab:red", linewidth=1.2, label="identity (y = x)")
        axes.set_xlim(low, high)
        axes.set_ylim(low, high)
        axes.set_box_aspect(1)  # square box + equal limits = equal scales, and constrained layout can place it
        axes.set_title(panel["title"], fontsize=11)
        axes.set_xlabel(f"True {panel['name']}")
        axes.set_ylabel(f"Predicted {panel['name']}")
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize=8)
    return save_figure(figure, path)


def _axis_limits(true: np.ndarray, predicted: np.ndarray, value_range) -> tuple[float, float]:
    values = np.concatenate([true, predicted])
    values = values[np.isfinite(values)]
    low = float(values.min()) if values.size else 0.0
    high = float(values.max()) if values.size else 1.0
    if value_range is not None:
        low, high = min(low, value_range[0]), max(high, value_range[1])
    margin = 0.03 * (high - low or 1.0)
    return low - margin, high + margin


# ---------------------------------------------------------------------------------- bar chart
def bar_chart_size(num_categories: int, num_series: int = 1) -> tuple[float, float]:
    return max(5.0, 0.35 * num_categories * max(1, num_series) + 2.5), 4.8


def bar_chart(
    path: str | os.PathLike,
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    errors: Mapping[str, Sequence[float]] | None = None,
    title: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
) -> str:
    """Grouped bar chart with optional error bars (e.g. mean ± std over seeds per ablation cell).

    ``series`` maps a legend name to one value per category; ``errors`` gives the matching error
    bar half-lengths. A NaN value (e.g. a failed run) draws no bar but an "n/a" mark, so a missing
    result is visible instead of looking like a score of zero.
    """
    categories = [str(c) for c in categories]
    if not categories:
        raise ValueError("bar_chart needs at least one category")
    if not series:
        raise ValueError("bar_chart needs at least one series")
    for name, values in {**series, **(errors or {})}.items():
        if len(values) != len(categories):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(categories)} categories")
    unknown = set(errors or {}) - set(series)
    if unknown:
        raise ValueError(f"errors given for unknown series {sorted(unknown)}")

    figure = new_figure(*bar_chart_size(len(categories), len(series)))
    axes = figure.subplots()
    positions = np.arange(len(categories), dtype=float)
    width = 0.8 / len(series)
    for index, (name, values) in enumerate(series.items()):
        values = np.asarray(values, dtype=float)
        offsets = positions - 0.4 + width * (index + 0.5)
        error = np.asarray(errors[name], dtype=float) if errors and name in errors else None
        shown = np.where(np.isnan(values), 0.0, values)
        axes.bar(
            offsets,
            shown,
            width=width * 0.95,
            yerr=None if error is None else np.where(np.isnan(values), 0.0, np.nan_to_num(error)),
            capsize=3,
            label=name,
        )
        for x, value in zip(offsets, values):
            if np.isnan(value):  # x in data units, y as a fraction of the axes height
                axes.text(x, 0.02, "n/a", transform=axes.get_xaxis_transform(), ha="center", va="bottom",
                          fontsize=9, fontweight="bold", color="tab:red", rotation=90)
    axes.set_xticks(positions, labels=categories, rotation=45 if len(categories) > 4 else 0, ha="right" if len(categories) > 4 else "center")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=12)
    if ylim is not None:
        axes.set_ylim(*ylim)
    axes.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize=8)
    return save_figure(figure, path)
