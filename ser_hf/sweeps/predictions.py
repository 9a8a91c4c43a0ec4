"""Per-utterance test predictions of a finished run, written by the run's own process so that a
sweep can pool them (cross-validation folds) without loading any model again. They cover exactly
the rows the run's ``test_metrics.json`` was computed on.

The CSV has the columns of the evaluation report's ``predictions.csv`` (``id, speaker, gender,
true_label, predicted_label, prob_<class>...`` and ``true_/predicted_<attribute>``).
"""
from __future__ import annotations

import csv
import math
import os


def tested_rows(data_args, model_args):
    """The rows ``experiment.train`` tests on: the test split after the run's row checks (the same
    `check_run_data` call, so ``on_invalid_rows drop`` drops the same rows) and without rows that
    have no target for the task."""
    from ser_hf.experiment import drop_unusable_rows, select_split
    from ser_hf.preflight import check_run_data

    checked = check_run_data(
        data_args, task=model_args.task, modality=model_args.modality, scan_audio=False, progress=False
    )
    return drop_unusable_rows(select_split(checked.corpus, data_args.test_split), model_args.task)


def write_test_predictions(path: str, data_args, model_args, training_args) -> str:
    """Predict the run's test rows with the checkpoint it just saved and write ``path`` atomically."""
    from ser_hf.evaluation.report import _write_predictions
    from ser_hf.experiment import predict_split

    seconds = training_args.max_eval_audio_seconds or training_args.max_audio_seconds
    config, dataset, predictions, _, is_main = predict_split(
        training_args.output_dir,
        data_args,
        split=data_args.test_split,
        batch_size=training_args.per_device_eval_batch_size,
        max_seconds=seconds,
        dataset=tested_rows(data_args, model_args),
    )
    if is_main:
        _write_predictions(path, dataset.to_list(), predictions, config)
    return path


def read_predictions(path: str) -> tuple[list[str], list[dict]]:
    """(class codes from the ``prob_`` columns, rows as dicts with numbers parsed) of a predictions CSV."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        rows = []
        for row in reader:
            for key, value in row.items():
                if key.startswith(("prob_", "true_", "predicted_")) and key not in ("true_label", "predicted_label"):
                    row[key] = float(value) if value not in ("", None) else math.nan
            rows.append(row)
    labels = [name.removeprefix("prob_") for name in fields if name.startswith("prob_")]
    if not fields:
        raise ValueError(f"{path}: empty predictions file")
    return labels, rows


def predictions_path(run_dir: str) -> str:
    from ser_hf.sweeps.runner import PREDICTIONS_FILE

    return os.path.join(run_dir, PREDICTIONS_FILE)


def write_transfer_metrics(path: str, targets, data_args, model_args, training_args) -> str:
    """Metrics of the run's saved model on each target corpus split (``targets``: mappings of data
    arguments plus ``name`` and ``split``), written to ``path`` as ``{name: metrics}`` atomically."""
    import dataclasses

    from ser_hf.arguments import DataArguments
    from ser_hf.experiment import evaluate_checkpoint
    from ser_hf.io import write_json_atomic

    fields = {f.name for f in dataclasses.fields(DataArguments)}
    seconds = training_args.max_eval_audio_seconds or training_args.max_audio_seconds
    results = {}
    for target in targets:
        target_args = DataArguments(**{k: v for k, v in target.items() if k in fields})
        metrics = evaluate_checkpoint(
            training_args.output_dir, target_args, split=target["split"], batch_size=training_args.per_device_eval_batch_size,
            max_seconds=seconds, report=False, bootstrap_resamples=0,
        )  # fmt: skip
        results[target["name"]] = {
            k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        } | {"split": target["split"], "corpus": target_args.corpus}
    write_json_atomic(path, results)
    return path
