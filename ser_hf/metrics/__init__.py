"""SER metrics as local (offline) ``evaluate`` modules, the path the Trainer and ``ser-hf evaluate``
report through, plus the same numbers as plain functions for resampling (``functional``).

Each module folder (``ser_classification/``, ``ser_ccc/``) is self-contained (script, metric card
README.md, app.py, requirements.txt) and can be pushed unchanged as a Hub metric space.
"""
from __future__ import annotations

import functools
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
    "compute_metric",
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


@functools.lru_cache(maxsize=None)
def _cached(name: str):
    return load_metric(name, keep_in_memory=True)  # no Arrow cache files: safe in parallel processes


def compute_metric(name: str, **kwargs) -> dict:
    """``load_metric(name).compute(**kwargs)`` with the module loaded once per process."""
    return _cached(metric_path(name).stem).compute(**kwargs)
