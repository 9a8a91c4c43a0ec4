"""SER metrics: numpy functions plus the same numbers as local (offline) evaluate modules."""
from __future__ import annotations

from pathlib import Path

from ser_hf.metrics.functional import bootstrap_ci, ccc, ccc_per_attribute, classification_metrics

METRIC_DIR = Path(__file__).resolve().parent

_ALIASES = {
    "ser_ccc": "ser_ccc",
    "ccc": "ser_ccc",
    "ser_classification": "ser_classification",
    "classification": "ser_classification",
}

__all__ = [
    "METRIC_DIR",
    "bootstrap_ci",
    "ccc",
    "ccc_per_attribute",
    "classification_metrics",
    "load_metric",
    "metric_path",
]


def metric_path(name: str) -> Path:
    """Path of the evaluate module script for ``name`` (or one of its aliases)."""
    try:
        module = _ALIASES[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(_ALIASES)}") from None
    return METRIC_DIR / module / f"{module}.py"


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a shipped metric by local path, so nothing is fetched from the Hub.

    ``kwargs`` go to ``evaluate.load`` (e.g. ``keep_in_memory=True``, ``experiment_id``).
    evaluate is imported here rather than at module level so the numpy functions stay cheap to import.
    """
    import evaluate

    return evaluate.load(str(metric_path(name)), **kwargs)
