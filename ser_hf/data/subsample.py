"""Make a training split imbalanced on purpose: keep only a fraction of some classes.

Why: on a balanced corpus such as EmoDB, class balancing (samplers, weighted/focal losses) has
nothing to fix, so a comparison of those strategies says little. Subsampling chosen classes of the
*training* split (never the test split) recreates the long-tail situation of in-the-wild corpora
like MSP-Podcast while keeping the test set, and hence the scores, comparable.

The spec is a string of ``CLASS:KEEP_FRACTION`` pairs separated by spaces or semicolons, e.g.
``"A:0.15 E:0.15 F:0.3"``: keep 15 % of classes A and E and 30 % of F, every other class whole.
``"none"`` (or an empty string) keeps everything. Which rows survive depends only on the rows,
the spec and ``seed``, not on the training seed, so every training seed sees the same subset.
"""
from __future__ import annotations

import logging
import re

import datasets
import numpy as np

from ser_hf.data.schema import column_values

logger = logging.getLogger(__name__)

_PAIR = re.compile(r"^(?P<label>[^:\s;]+):(?P<fraction>[^:\s;]+)$")


def parse_imbalance(spec: str | None) -> dict[str, float]:
    """``"A:0.15 E:0.15"`` -> ``{"A": 0.15, "E": 0.15}``; ``None``/``""``/``"none"`` -> ``{}``."""
    if spec is None or not spec.strip() or spec.strip().lower() == "none":
        return {}
    fractions: dict[str, float] = {}
    for item in re.split(r"[\s;]+", spec.strip()):
        match = _PAIR.match(item)
        if match is None:
            raise ValueError(f"imbalance={spec!r}: {item!r} is not CLASS:KEEP_FRACTION (e.g. 'A:0.15 E:0.15')")
        label = match["label"]
        try:
            fraction = float(match["fraction"])
        except ValueError:
            raise ValueError(f"imbalance={spec!r}: keep fraction {match['fraction']!r} of class {label!r} is not a number") from None
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"imbalance={spec!r}: keep fraction of class {label!r} must be in [0, 1], got {fraction}")
        if label in fractions:
            raise ValueError(f"imbalance={spec!r}: class {label!r} is given twice")
        fractions[label] = fraction
    return fractions


def subsample_classes(
    dataset: datasets.Dataset,
    keep_fractions: dict[str, float],
    *,
    seed: int = 0,
    labels: list[str] | None = None,
) -> tuple[datasets.Dataset, dict[str, tuple[int, int]]]:
    """Keep ``round(fraction * n)`` rows of each listed class (at least 1 if fraction > 0).

    Rows are drawn without replacement by a generator seeded from ``seed`` and the class code, so
    one class's subset does not change when another class's fraction does. Kept rows stay in their
    original order. Returns the subset and ``{class: (rows before, rows after)}`` for every class.
    Unknown classes in ``keep_fractions`` (not in ``labels`` or not in the data) are an error.
    """
    codes = column_values(dataset, "label")
    present = sorted({c for c in codes if c is not None})
    known = set(labels) if labels is not None else set(present)
    unknown = sorted(set(keep_fractions) - known)
    if unknown:
        raise ValueError(f"imbalance names classes {unknown} that are not among the labels {sorted(known)}")
    missing = sorted(set(keep_fractions) - set(present))
    if missing:
        raise ValueError(f"imbalance names classes {missing} that have no rows in the training split")
    keep = np.ones(len(codes), dtype=bool)
    report: dict[str, tuple[int, int]] = {}
    for label in present:
        rows = np.flatnonzero(np.array([c == label for c in codes]))
        fraction = keep_fractions.get(label, 1.0)
        n_keep = 0 if fraction == 0 else max(1, round(fraction * len(rows)))
        if n_keep < len(rows):
            rng = np.random.default_rng([seed, *label.encode("utf-8")])
            dropped = np.setdiff1d(rows, rng.choice(rows, size=n_keep, replace=False))
            keep[dropped] = False
        report[label] = (len(rows), n_keep)
    return dataset.select(np.flatnonzero(keep).tolist()), report


def apply_imbalance(
    dataset: datasets.Dataset, spec: str | None, *, seed: int = 0, labels: list[str] | None = None
) -> datasets.Dataset:
    """`subsample_classes` from a spec string, logging the class counts before and after."""
    fractions = parse_imbalance(spec)
    if not fractions:
        return dataset
    subset, report = subsample_classes(dataset, fractions, seed=seed, labels=labels)
    counts = ", ".join(f"{label} {before}->{after}" for label, (before, after) in report.items())
    logger.info("imbalance %r (seed %d): training rows %d -> %d (%s)", spec, seed, len(dataset), len(subset), counts)
    return subset
