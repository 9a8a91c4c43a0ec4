"""SER metrics as plain functions: input checks, then scikit-learn / scipy.

The Trainer and `ser-hf evaluate` report through the local ``evaluate`` modules (``ser_hf.metrics``),
which are self-contained so they can be pushed as Hub metric spaces; these functions make the same
scikit-learn calls and serve what needs many fast evaluations (``scipy.stats.bootstrap`` resamples,
per-segment breakdowns). Tests check both give the same numbers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

__all__ = ["ccc", "ccc_per_attribute", "classification_metrics", "bootstrap_ci"]


def _as_1d(values, what: str, dtype=np.float64) -> np.ndarray:
    array = np.asarray(values, dtype=dtype)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    return array


def _check_same_length(preds: np.ndarray, targets: np.ndarray, what: str = "predictions and references") -> None:
    if len(preds) != len(targets):
        raise ValueError(f"{what} differ in length: {len(preds)} vs {len(targets)}")


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def ccc(preds, targets) -> float:
    """Lin's concordance correlation coefficient with population (1/N) moments.

    CCC = 2 cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))^2). It rewards correlation *and*
    agreement in location and scale, which is why it scores the A/V/D task.
    Degenerate cases: the denominator is zero only when both inputs are the same constant, i.e. the
    prediction is exactly right, so 1.0 is returned; a constant prediction against varying targets
    (or two different constants) has zero covariance and scores 0.0.
    Non-finite values are rejected: drop missing targets before calling (see ``ccc_per_attribute``).
    """
    p = _as_1d(preds, "predictions")
    t = _as_1d(targets, "targets")
    _check_same_length(p, t, "predictions and targets")
    for name, array in (("predictions", p), ("targets", t)):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"{name} row {_first_bad_row(bad)} is not finite ({array[bad][0]})")
    mean_p, mean_t = p.mean(), t.mean()
    var_p = np.mean((p - mean_p) ** 2)
    var_t = np.mean((t - mean_t) ** 2)
    cov = np.mean((p - mean_p) * (t - mean_t))
    denominator = var_p + var_t + (mean_p - mean_t) ** 2
    if denominator == 0.0:
        return 1.0
    return float(2.0 * cov / denominator)


def ccc_per_attribute(preds, targets, names: Sequence[str]) -> dict[str, float]:
    """CCC for each column of N x D predictions/targets, plus their unweighted mean.

    Returns ``{"ccc_<name>": ..., "ccc_mean": ...}``. A NaN target means "not annotated" (corpora
    annotate attributes independently), so that row is left out of that attribute only. A NaN or
    infinite prediction, an infinite target, or an attribute with no annotated rows is an error.
    """
    names = list(names)
    p = np.asarray(preds, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    for what, array in (("predictions", p), ("targets", t)):
        if array.ndim != 2:
            raise ValueError(f"{what} must be N x D, got shape {array.shape}")
    if p.shape != t.shape:
        raise ValueError(f"predictions shape {p.shape} differs from targets shape {t.shape}")
    if p.shape[0] == 0:
        raise ValueError("predictions and targets are empty")
    if len(names) != p.shape[1]:
        raise ValueError(f"got {len(names)} attribute names {names} for {p.shape[1]} columns")
    if len(set(names)) != len(names):
        raise ValueError(f"attribute names are not unique: {names}")
    result: dict[str, float] = {}
    for column, name in enumerate(names):
        bad_pred = ~np.isfinite(p[:, column])
        if bad_pred.any():
            raise ValueError(f"prediction for {name!r} in row {_first_bad_row(bad_pred)} is not finite")
        infinite = np.isinf(t[:, column])
        if infinite.any():
            raise ValueError(f"target for {name!r} in row {_first_bad_row(infinite)} is infinite")
        annotated = ~np.isnan(t[:, column])
        if not annotated.any():
            raise ValueError(f"no row has an annotated {name!r} target, so its CCC is undefined")
        result[f"ccc_{name}"] = ccc(p[annotated, column], t[annotated, column])
    result["ccc_mean"] = float(np.mean(list(result.values())))
    return result


def _as_class_ids(values, what: str, num_classes: int | None) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional class ids, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if array.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integer class ids, got dtype {array.dtype} (take the argmax of logits first)")
    negative = array < 0
    if negative.any():
        row = _first_bad_row(negative)
        raise ValueError(f"{what} row {row} has negative class id {array[row]} (filter ignore-index rows first)")
    if num_classes is not None:
        too_large = array >= num_classes
        if too_large.any():
            row = _first_bad_row(too_large)
            raise ValueError(f"{what} row {row} has class id {array[row]} >= num_classes={num_classes}")
    return array.astype(np.int64)


def classification_metrics(
    preds,
    references,
    num_classes: int | None = None,
    labels: Sequence[int] | None = None,
    per_class: bool = False,
) -> dict:
    """Macro-F1 (the task-1 score), micro-F1, accuracy and UAR for integer class ids.

    Class set: ``labels`` when given, otherwise the classes occurring in predictions or references
    (sklearn's default). Classes absent from both are left out because their F1 is 0/0 and would only
    drag the macro mean down for reasons unrelated to the model. ``num_classes`` only validates ids.
    Zero divisions count as 0, so a class that is never predicted has precision 0.
    ``accuracy`` uses every row; ``uar`` (unweighted average recall, i.e. balanced accuracy) averages
    recall over the classes of the set that occur in the references.
    With ``per_class=True`` a ``per_class`` entry maps each class id to precision/recall/f1/support.
    """
    p = _as_class_ids(preds, "predictions", num_classes)
    r = _as_class_ids(references, "references", num_classes)
    _check_same_length(p, r)
    if labels is None:
        classes = np.union1d(p, r)
    else:
        classes = _as_class_ids(labels, "labels", num_classes)
        if len(np.unique(classes)) != len(classes):
            raise ValueError(f"labels contain duplicates: {classes.tolist()}")

    from sklearn.metrics import f1_score, precision_recall_fscore_support, recall_score

    support = np.array([np.sum(r == c) for c in classes])
    if not support.any():
        raise ValueError(f"none of the classes {classes.tolist()} occurs in the references")
    result = {
        "macro_f1": float(f1_score(r, p, labels=classes, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(r, p, labels=classes, average="micro", zero_division=0)),
        "accuracy": float(np.mean(p == r)),
        "uar": float(recall_score(r, p, labels=classes[support > 0], average="macro", zero_division=0)),
    }
    if per_class:
        precision, recall, f1, counts = precision_recall_fscore_support(r, p, labels=classes, zero_division=0)
        result["per_class"] = {
            int(c): {"precision": float(precision[k]), "recall": float(recall[k]), "f1": float(f1[k]), "support": int(counts[k])}
            for k, c in enumerate(classes)
        }
    return result


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    preds,
    refs,
    n_resamples: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a scalar metric, resampling utterances (rows).

    Reports use it to show how much a score could move on another draw of the same-sized test set.
    ``metric_fn(preds_subset, refs_subset)`` must return a finite float (wrap dict-valued metrics in a
    lambda). Returns the ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled scores.
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = np.asarray(preds)
    r = np.asarray(refs)
    if p.ndim == 0 or len(p) == 0:
        raise ValueError("predictions are empty")
    _check_same_length(p, r)
    from scipy.stats import bootstrap

    def statistic(rows):  # resampled row indices: rows of N x D attribute arrays stay whole
        rows = rows.astype(np.int64)
        score = metric_fn(p[rows], r[rows])
        if not isinstance(score, (float, int, np.floating, np.integer)) or not np.isfinite(score):
            raise ValueError(f"metric_fn must return a finite number, got {score!r}")
        return float(score)

    result = bootstrap(
        (np.arange(len(p)),), statistic, n_resamples=n_resamples, confidence_level=1.0 - alpha, method="percentile",
        vectorized=False, random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
