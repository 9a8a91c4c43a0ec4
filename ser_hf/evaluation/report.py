"""The evaluation report: every number and picture a paper needs about one model on one split.

`write_evaluation_report` takes per-utterance predictions aligned with the evaluated rows and
writes, next to ``metrics.json``: per-class precision/recall/F1, the confusion matrix (CSV and a
counts + row-normalised PNG), prediction-vs-truth scatters with CCC for attributes, metrics per
gender and per speaker, 95% bootstrap intervals for macro-F1, UAR and every CCC, the challenge
submission CSVs and a predictions CSV. The headline numbers come from the local ``evaluate`` modules
the trainer uses (``ser_hf.metrics``), so the report and the training logs never disagree; bootstrap
intervals and per-group breakdowns use ``ser_hf.metrics.functional`` (same scikit-learn calls, tested equal).

Rows without a target (MSP-Podcast's O/X rows for the class task, unrated attributes, an
unlabelled test set) are predicted and written to the predictions and submission files but left
out of the metrics; the report counts them.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_hf.io import write_csv_atomic, write_json_atomic
from ser_hf.metrics import compute_metric
from ser_hf.metrics.functional import bootstrap_ci, ccc, ccc_per_attribute, classification_metrics

logger = logging.getLogger(__name__)

FILES = {
    "metrics": "metrics.json",
    "per_class": "per_class.csv",
    "confusion_csv": "confusion_matrix.csv",
    "confusion_png": "confusion_matrix.png",
    "scatter_png": "attributes_scatter.png",
    "by_gender": "metrics_by_gender.csv",
    "by_speaker": "metrics_by_speaker.csv",
    "predictions": "predictions.csv",
    "task1": "submission_task1.csv",
    "task2": "submission_task2.csv",
}
GROUP_COLUMNS = ("gender", "speaker")

__all__ = [
    "FILES",
    "Predictions",
    "References",
    "compute_evaluation",
    "display_names",
    "references_from_rows",
    "write_evaluation_report",
]


# ------------------------------------------------------------------------------------------ inputs
@dataclass
class Predictions:
    """Model outputs for the evaluated rows, in row order.

    ``logits``: N x K class scores (categorical / multitask models); ``attributes``: N x D
    attribute predictions on the corpus scale (attribute / multitask models).
    """

    logits: np.ndarray | None = None
    attributes: np.ndarray | None = None

    def __post_init__(self):
        for name in ("logits", "attributes"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64)
                if value.ndim != 2:
                    raise ValueError(f"{name} must be N x {'K' if name == 'logits' else 'D'}, got shape {value.shape}")
                if not np.isfinite(value).all():
                    row = int(np.flatnonzero(~np.isfinite(value).all(axis=1))[0])
                    raise ValueError(f"{name} of row {row} are not finite: {value[row].tolist()}")
                setattr(self, name, value)
        if self.logits is None and self.attributes is None:
            raise ValueError("Predictions needs logits, attributes or both")
        if self.logits is not None and self.attributes is not None and len(self.logits) != len(self.attributes):
            raise ValueError(f"{len(self.logits)} rows of logits but {len(self.attributes)} rows of attributes")

    def __len__(self) -> int:
        return len(self.logits if self.logits is not None else self.attributes)

    @classmethod
    def from_model_output(cls, config, output) -> "Predictions":
        """From `Trainer.predict(...).predictions`: logits and/or attributes in the model's output order."""
        parts = list(output) if isinstance(output, (tuple, list)) else [output]
        names = (["logits"] if config.has_categorical else []) + (["attributes"] if config.has_attributes else [])
        if len(parts) != len(names):
            raise ValueError(f"expected model outputs {names}, got {len(parts)} arrays")
        return cls(**dict(zip(names, parts)))

    @property
    def probabilities(self) -> np.ndarray:
        """Softmax of the logits (rows sum to one)."""
        if self.logits is None:
            raise ValueError("these predictions have no logits")
        shifted = self.logits - self.logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)

    @property
    def predicted_ids(self) -> np.ndarray:
        if self.logits is None:
            raise ValueError("these predictions have no logits")
        return self.logits.argmax(axis=1).astype(np.int64)


@dataclass
class References:
    """Targets read from the rows: class ids (-100 where unlabelled) and attributes (NaN where unrated)."""

    label_ids: np.ndarray | None
    attributes: np.ndarray | None


def references_from_rows(rows: Sequence[Mapping], config) -> References:
    """Targets of ``rows`` for the model's task; a class code the model does not know is an error naming the row."""
    from ser_hf.data.collators import SERTargets

    label_ids = attributes = None
    if config.has_categorical:
        targets = SERTargets(labels=config.labels)
        label_ids = np.array([targets.label_id(row) for row in rows], dtype=np.int64)
    if config.has_attributes:
        attributes = np.array(
            [[np.nan if row.get(name) is None else float(row[name]) for name in config.attributes] for row in rows],
            dtype=np.float64,
        ).reshape(len(rows), len(config.attributes))
    return References(label_ids, attributes)


def display_names(config) -> list[str]:
    """Readable class names for figures and tables, e.g. "angry (A)"; the bare code when it has no name."""
    names = config.label_names or {}
    return [f"{names[code]} ({code})" if names.get(code, code) != code else code for code in config.labels]


def _as_rows(dataset_rows) -> list[dict]:
    if hasattr(dataset_rows, "to_list"):  # datasets.Dataset
        return dataset_rows.to_list()
    return [dict(row) for row in dataset_rows]


# ------------------------------------------------------------------------------------------ numbers
def compute_evaluation(
    predictions: Predictions,
    dataset_rows,
    config,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every number of the report as a JSON-ready dict (nothing is written).

    ``n_resamples=0`` skips the bootstrap intervals (the slow part) when only the scores are wanted.

    Top-level scalars are the trainer's metrics (``macro_f1``, ``uar``, ``accuracy``, ``micro_f1``,
    ``ccc_<attribute>``, ``ccc_mean``) over the rows that have targets; nested entries hold the
    per-class table, confusion counts, confidence intervals and the gender / speaker breakdowns.
    """
    rows = _as_rows(dataset_rows)
    if len(rows) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(rows)} rows; they must be aligned one to one")
    if not rows:
        raise ValueError("nothing to evaluate: no rows")
    if config.has_categorical and (predictions.logits is None or predictions.logits.shape[1] != config.num_classes):
        shape = None if predictions.logits is None else predictions.logits.shape
        raise ValueError(f"the model has {config.num_classes} classes but the logits have shape {shape}")
    if config.has_attributes and (predictions.attributes is None or predictions.attributes.shape[1] != len(config.attributes)):
        shape = None if predictions.attributes is None else predictions.attributes.shape
        raise ValueError(f"the model predicts {config.attributes} but the attribute predictions have shape {shape}")
    references = references_from_rows(rows, config)
    notes: list[str] = []
    result: dict[str, Any] = {"num_examples": len(rows), "task": config.task, "notes": notes}
    if config.has_categorical:
        result.update(_categorical_numbers(predictions, references, config, notes))
    if config.has_attributes:
        result.update(_attribute_numbers(predictions, references, config, notes))
    if n_resamples > 0:
        result["confidence_intervals"] = _confidence_intervals(
            predictions, references, config, result, n_resamples, confidence, seed
        )
    for column in GROUP_COLUMNS:
        values = [row.get(column) for row in rows]
        if all(value is None for value in values):
            notes.append(f"no row has a {column}: no per-{column} breakdown")
            continue
        result[f"by_{column}"] = _breakdown(values, predictions, references, config)
    for note in notes:
        logger.info("evaluation: %s", note)
    return result


def _categorical_numbers(predictions, references, config, notes) -> dict:
    labelled = references.label_ids != -100
    out: dict[str, Any] = {"num_labelled": int(labelled.sum())}
    if not labelled.any():
        notes.append("no row has a class label: class metrics are not computed")
        return out
    predicted = predictions.predicted_ids[labelled]
    truth = references.label_ids[labelled]
    metrics = compute_metric(  # the local evaluate module (ser_hf.metrics)
        "ser_classification", predictions=predicted, references=truth, labels=list(range(config.num_classes)), per_class=True
    )
    per_class = metrics.pop("per_class")
    out.update(metrics)
    names = display_names(config)
    out["per_class"] = {code: {"name": names[i], **per_class[i]} for i, code in enumerate(config.labels)}
    counts = np.zeros((config.num_classes, config.num_classes), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    out["confusion_matrix"] = {
        "labels": list(config.labels),
        "rows": "true class",
        "columns": "predicted class",
        "counts": counts.tolist(),
    }
    return out


def _attribute_numbers(predictions, references, config, notes) -> dict:
    names = list(config.attributes)
    annotated = ~np.isnan(references.attributes)
    out: dict[str, Any] = {f"num_annotated_{name}": int(annotated[:, i].sum()) for i, name in enumerate(names)}
    rated = [i for i in range(len(names)) if annotated[:, i].any()]
    missing = [names[i] for i in range(len(names)) if i not in rated]
    if missing:
        notes.append(f"no row has a rating for {missing}: their CCC is not computed")
    if rated:
        rated_names = [names[i] for i in rated]
        out.update(
            compute_metric(
                "ser_ccc", predictions=predictions.attributes[:, rated], references=references.attributes[:, rated],
                attribute_names=rated_names,
            )
        )
    return out


def _confidence_intervals(predictions, references, config, point, n_resamples, confidence, seed) -> dict:
    """Percentile bootstrap intervals (same resamples for every metric of one row set: same seed)."""
    intervals: dict[str, Any] = {
        "level": confidence,
        "n_resamples": n_resamples,
        "seed": seed,
        "method": "percentile bootstrap over utterances",
    }

    def add(key: str, metric_fn, preds, refs) -> None:
        try:
            low, high = bootstrap_ci(metric_fn, preds, refs, n_resamples=n_resamples, alpha=1.0 - confidence, seed=seed)
        except ValueError as error:  # e.g. a resample holding no rating of a sparsely rated attribute
            intervals[key] = {"estimate": point[key], "low": None, "high": None, "n": len(preds), "error": str(error)}
            return
        intervals[key] = {"estimate": point[key], "low": low, "high": high, "n": len(preds)}

    if "macro_f1" in point:
        labelled = references.label_ids != -100
        class_ids = list(range(config.num_classes))
        predicted, truth = predictions.predicted_ids[labelled], references.label_ids[labelled]
        for key in ("macro_f1", "uar"):
            add(key, lambda p, r, key=key: classification_metrics(p, r, labels=class_ids)[key], predicted, truth)
    if "ccc_mean" in point:
        annotated = ~np.isnan(references.attributes)
        rated = [i for i, name in enumerate(config.attributes) if f"ccc_{name}" in point]
        for i in rated:
            keep = annotated[:, i]
            add(f"ccc_{config.attributes[i]}", ccc, predictions.attributes[keep, i], references.attributes[keep, i])
        rated_names = [config.attributes[i] for i in rated]
        keep = annotated[:, rated].any(axis=1)
        add(
            "ccc_mean",
            lambda p, r: ccc_per_attribute(p, r, rated_names)["ccc_mean"],
            predictions.attributes[keep][:, rated],
            references.attributes[keep][:, rated],
        )
    return intervals


def _breakdown(values: list, predictions, references, config) -> dict:
    """Metrics per group value (a gender, a speaker); rows without a value are counted, not guessed."""
    groups: dict[str, list[int]] = {}
    for index, value in enumerate(values):
        if value is not None:
            groups.setdefault(str(value), []).append(index)
    return {
        "rows_without_value": sum(value is None for value in values),
        "class_set": "classes present in the group's references or predictions",
        "min_rows_for_ccc": 2,
        "groups": {name: _group_metrics(np.array(groups[name]), predictions, references, config) for name in sorted(groups)},
    }


def _group_metrics(index: np.ndarray, predictions, references, config) -> dict:
    metrics: dict[str, Any] = {"n": len(index)}
    if config.has_categorical:
        truth = references.label_ids[index]
        labelled = truth != -100
        metrics["n_labelled"] = int(labelled.sum())
        values = {"accuracy": None, "macro_f1": None, "uar": None}
        if labelled.any():
            found = classification_metrics(predictions.predicted_ids[index][labelled], truth[labelled])
            values = {key: found[key] for key in values}
        metrics.update(values)
    if config.has_attributes:
        scores = []
        for i, name in enumerate(config.attributes):
            truth = references.attributes[index, i]
            keep = ~np.isnan(truth)
            value = ccc(predictions.attributes[index, i][keep], truth[keep]) if keep.sum() >= 2 else None
            metrics[f"ccc_{name}"] = value
            if value is not None:
                scores.append(value)
        metrics["ccc_mean"] = float(np.mean(scores)) if len(scores) == len(config.attributes) else None
    return metrics


# ------------------------------------------------------------------------------------------ files
def write_evaluation_report(
    output_dir: str | os.PathLike,
    predictions: Predictions,
    dataset_rows,
    config,
    *,
    title: str | None = None,
    extra_metrics: Mapping[str, Any] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the whole report into ``output_dir`` and return the content of its ``metrics.json``.

    ``title`` names the run in figure titles (e.g. "emodb test"); ``extra_metrics`` (runtime,
    checkpoint path, ...) are added to metrics.json. Every file is written atomically and
    metrics.json last, so its presence means the report is complete; report files of an earlier
    run that this one does not produce are removed, so the folder never mixes two evaluations.
    """
    from ser_hf.plotting import confusion_matrix_figure, scatter_figure

    output_dir = os.fspath(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    rows = _as_rows(dataset_rows)
    report = compute_evaluation(predictions, rows, config, n_resamples=n_resamples, confidence=confidence, seed=seed)
    prefix = f"{title}: " if title else ""
    written: list[str] = []

    def path(key: str) -> str:
        written.append(FILES[key])
        return os.path.join(output_dir, FILES[key])

    if "per_class" in report:
        _write_csv(
            path("per_class"),
            ["class", "name", "precision", "recall", "f1", "support"],
            [[code, v["name"], v["precision"], v["recall"], v["f1"], v["support"]] for code, v in report["per_class"].items()],
        )
        counts = np.array(report["confusion_matrix"]["counts"])
        _write_csv(
            path("confusion_csv"),
            ["true \\ predicted", *config.labels],
            [[code, *counts[i].tolist()] for i, code in enumerate(config.labels)],
        )
        confusion_matrix_figure(counts, display_names(config), path("confusion_png"), title=f"{prefix}confusion matrix")
    if config.has_attributes and any(f"ccc_{name}" in report for name in config.attributes):
        references = references_from_rows(rows, config)
        panels = []
        for i, name in enumerate(config.attributes):
            if f"ccc_{name}" not in report:
                continue
            keep = ~np.isnan(references.attributes[:, i])
            panels.append(
                {
                    "name": name,
                    "true": references.attributes[keep, i],
                    "predicted": predictions.attributes[keep, i],
                    "title": f"{name}: CCC = {report[f'ccc_{name}']:.3f} (n={int(keep.sum())})",
                }
            )
        scatter_figure(
            panels,
            path("scatter_png"),
            title=f"{prefix}predicted vs. true attributes",
            value_range=tuple(config.attribute_range),
        )
    for column in GROUP_COLUMNS:
        if f"by_{column}" in report:
            _write_breakdown(path(f"by_{column}"), report[f"by_{column}"], column, config)
    _write_predictions(path("predictions"), rows, predictions, config)
    written.extend(_write_submissions(output_dir, rows, predictions, config, report))
    if extra_metrics:
        report.update({key: value for key, value in extra_metrics.items() if key not in report})
    report["files"] = sorted(written) + [FILES["metrics"]]
    for name in set(FILES.values()) - set(report["files"]):  # left by an earlier report in this folder
        stale = os.path.join(output_dir, name)
        if os.path.exists(stale):
            logger.info("removing %s from an earlier report (this evaluation has no such output)", stale)
            os.remove(stale)
    write_json_atomic(os.path.join(output_dir, FILES["metrics"]), report)
    return report


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else f"{float(value):.6g}"
    return str(value)


def _write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    write_csv_atomic(path, list(header), ([_format(value) for value in row] for row in rows))


def _write_breakdown(path: str, breakdown: dict, column: str, config) -> None:
    keys = ["n"]
    if config.has_categorical:
        keys += ["n_labelled", "accuracy", "macro_f1", "uar"]
    if config.has_attributes:
        keys += [f"ccc_{name}" for name in config.attributes] + ["ccc_mean"]
    _write_csv(path, [column, *keys], [[name, *(m[k] for k in keys)] for name, m in breakdown["groups"].items()])


def _write_predictions(path: str, rows: list[dict], predictions: Predictions, config) -> None:
    header = ["id", "speaker", "gender"]
    if config.has_categorical:
        header += ["true_label", "predicted_label", *(f"prob_{code}" for code in config.labels)]
        probabilities = predictions.probabilities
        predicted = predictions.predicted_ids
    if config.has_attributes:
        header += [f"{kind}_{name}" for name in config.attributes for kind in ("true", "predicted")]

    def lines():
        for i, row in enumerate(rows):
            line = [row.get("id"), row.get("speaker"), row.get("gender")]
            if config.has_categorical:
                line += [row.get("label"), config.labels[predicted[i]], *probabilities[i]]
            if config.has_attributes:
                for j, name in enumerate(config.attributes):
                    line += [row.get(name), predictions.attributes[i, j]]
            yield line

    _write_csv(path, header, lines())


def _write_submissions(output_dir: str, rows: list[dict], predictions: Predictions, config, report: dict) -> list[str]:
    """The challenge files for every row (labelled or not): task 1 classes, task 2 A/V/D."""
    from ser_hf.evaluation.submission import ATTRIBUTE_COLUMNS, submission_file_name, write_task1_submission, write_task2_submission

    names = [submission_file_name(row) for row in rows]
    written = []
    if config.has_categorical:
        classes = [config.labels[i] for i in predictions.predicted_ids]
        write_task1_submission(os.path.join(output_dir, FILES["task1"]), names, classes)
        written.append(FILES["task1"])
    if config.has_attributes:
        if sorted(config.attributes) != sorted(ATTRIBUTE_COLUMNS):
            report["notes"].append(
                f"no task-2 submission: it needs attributes {sorted(ATTRIBUTE_COLUMNS)}, the model predicts {config.attributes}"
            )
        else:
            # Submissions are on the corpus scale, clipped to it as the challenge baseline does
            # (metrics above use the raw predictions).
            low, high = config.attribute_range
            clipped = np.clip(predictions.attributes, low, high)
            values = {name: clipped[:, j] for j, name in enumerate(config.attributes)}
            write_task2_submission(os.path.join(output_dir, FILES["task2"]), names, values)
            written.append(FILES["task2"])
    return written
