"""Annotator label distributions ("soft labels"): parsing, vote counting and the majority label.

Why: emotion is ambiguous and corpora with several raters per utterance (MSP-Podcast's
``labels_detailed.csv``, IEMOCAP, CREMA-D, ...) record how the raters split. Training on that
split (soft cross-entropy, focal on soft targets) keeps the information a single consensus label
throws away, while metrics still score the hard (majority) label.

Stored form: the optional schema column ``label_distribution`` -- a list of floats aligned with the
corpus's label list (the model's ``config.labels``), summing to 1. Manifests may give it as a list,
a JSON string of a list, or a JSON object ``{"A": 0.75, "N": 0.25}`` keyed by class code; raw counts
go in ``label_votes`` (same forms) and are normalised here.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "distribution_from_votes",
    "majority_label",
    "parse_distribution",
    "soft_label_metrics",
]


def _as_values(value, labels: Sequence[str] | None, what: str) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{what} {text!r} is not JSON ({exc.msg}); give a list like [0.5, 0.5] or an object like {{\"A\": 2}}") from None
    if isinstance(value, Mapping):
        if labels is None:
            raise ValueError(f"{what} is keyed by class ({sorted(value)}) but no label list is known to align it with")
        unknown = sorted(set(value) - set(labels))
        if unknown:
            raise ValueError(f"{what} names classes {unknown} that are not in the labels {list(labels)}")
        value = [value.get(code, 0.0) for code in labels]
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            values = [float(v) for v in value]
        except (TypeError, ValueError):
            raise ValueError(f"{what} {value!r} must hold numbers") from None
        if labels is not None and len(values) != len(labels):
            raise ValueError(f"{what} has {len(values)} entries but there are {len(labels)} classes {list(labels)}")
        bad = [v for v in values if not math.isfinite(v) or v < 0]
        if bad:
            raise ValueError(f"{what} {values} has entries that are negative or not finite")
        if not values or sum(values) <= 0:
            raise ValueError(f"{what} {values} is empty or sums to 0")
        return values
    raise ValueError(f"{what} {value!r} must be a list of numbers, a JSON string or a mapping class -> number")


def parse_distribution(value, labels: Sequence[str] | None = None, *, tolerance: float = 1e-3) -> list[float] | None:
    """A label distribution as a list of floats summing to 1 (None when empty/missing).

    Raises ``ValueError`` saying what is wrong: not numbers, negative, wrong length, keyed by an
    unknown class, or a sum that is not 1 within ``tolerance`` (use votes for raw counts).
    """
    values = _as_values(value, labels, "label_distribution")
    if values is None:
        return None
    total = sum(values)
    if abs(total - 1.0) > tolerance:
        raise ValueError(f"label_distribution {values} sums to {total:g}, not 1 (put raw counts in label_votes)")
    return [v / total for v in values]


def distribution_from_votes(value, labels: Sequence[str] | None = None) -> list[float] | None:
    """Per-class vote counts (list, JSON, or mapping class -> count) normalised to a distribution."""
    values = _as_values(value, labels, "label_votes")
    if values is None:
        return None
    total = sum(values)
    return [v / total for v in values]


def majority_label(distribution: Sequence[float] | None, labels: Sequence[str]) -> str | None:
    """The class with the most mass; None for a tie at the top (no majority), as MSP-Podcast's X."""
    if distribution is None:
        return None
    values = np.asarray(distribution, dtype=np.float64)
    top = values.max()
    winners = np.flatnonzero(np.isclose(values, top, rtol=0, atol=1e-9))
    return labels[int(winners[0])] if len(winners) == 1 else None


def soft_label_metrics(probabilities: np.ndarray, distributions: np.ndarray, eps: float = 1e-12) -> dict[str, float]:
    """Mean cross-entropy and KL divergence (nats) from the annotator distribution to the model's.

    Rows whose distribution is all zeros (no annotation) are left out; ``soft_label_rows`` counts the rest.
    ``soft_kl = soft_ce - H(annotators)``: 0 when the model reproduces the raters' split exactly.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    q = np.asarray(distributions, dtype=np.float64)
    keep = q.sum(1) > 0
    if not keep.any():
        return {}
    p, q = p[keep], q[keep]
    q = q / q.sum(1, keepdims=True)
    log_p = np.log(np.clip(p, eps, None))
    ce = -(q * log_p).sum(1)
    entropy = -(q * np.log(np.where(q > 0, q, 1.0))).sum(1)
    return {"soft_ce": float(ce.mean()), "soft_kl": float((ce - entropy).mean()), "soft_label_rows": int(keep.sum())}
