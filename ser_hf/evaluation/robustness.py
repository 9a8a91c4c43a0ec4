"""Robustness report: a model's scores under controlled degradations of the test audio.

Why: a strategy that wins on clean acted speech may collapse on noisy, reverberant or telephone-band
speech. ``ser-hf evaluate --perturb noise:20,10,0 reverb band_limit`` scores the same checkpoint on
the clean split and on each degraded copy (built with the augmentation code, ``ser_hf.data.augment``,
deterministic per utterance), and writes ``robustness.csv`` and ``robustness.png`` (metric vs severity,
one panel per degradation, the clean score as a dashed line).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from ser_hf.data.augment import SEVERITY_UNITS, Perturbation, parse_perturbations
from ser_hf.io import write_csv_atomic, write_json_atomic

CSV_FILE = "robustness.csv"
PNG_FILE = "robustness.png"
JSON_FILE = "robustness.json"


def robustness_report(
    model_dir: str,
    data_args,
    perturb: list[str],
    *,
    split: str = "test",
    batch_size: int = 16,
    max_seconds: float | None = None,
    output_dir: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score ``model_dir`` on ``split`` clean and under each perturbation; write CSV/PNG/JSON to ``output_dir``."""
    from tqdm.auto import tqdm

    from ser_hf.evaluation.report import compute_evaluation
    from ser_hf.experiment import predict_split

    conditions = parse_perturbations(perturb, seed=seed)
    rows: list[dict[str, Any]] = []
    for perturbation in tqdm(conditions, desc="robustness conditions"):
        config, dataset, predictions, _, _ = predict_split(
            model_dir, data_args, split=split, batch_size=batch_size, max_seconds=max_seconds,
            perturbation=None if perturbation.kind == "clean" else perturbation,
        )
        metrics = compute_evaluation(predictions, dataset, config, n_resamples=0)
        rows.append(
            {"condition": perturbation.label, "kind": perturbation.kind, "severity": perturbation.severity,
             **{k: metrics[k] for k in ("macro_f1", "uar", "accuracy", "ccc_mean") if k in metrics}}
        )
    metric_names = [k for k in ("macro_f1", "uar", "accuracy", "ccc_mean") if k in rows[0]]
    result = {"model": model_dir, "corpus": data_args.corpus, "split": split, "conditions": rows}
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        write_csv_atomic(
            os.path.join(output_dir, CSV_FILE),
            ["condition", "kind", "severity", *metric_names],
            [[r["condition"], r["kind"], "" if r["severity"] is None else r["severity"], *(r[m] for m in metric_names)] for r in rows],
        )
        robustness_figure(rows, metric_names, os.path.join(output_dir, PNG_FILE), title=f"{data_args.corpus} {split}: {_short(model_dir)}")
        result["files"] = [CSV_FILE, PNG_FILE, JSON_FILE]
        write_json_atomic(os.path.join(output_dir, JSON_FILE), result)
    return result


def _short(path: str) -> str:
    parts = os.path.normpath(path).split(os.sep)
    return os.sep.join(parts[-3:])


def robustness_figure(rows: list[dict], metric_names: list[str], path: str, title: str = "") -> str:
    """One panel per degradation kind: each metric vs severity, the clean score dashed."""
    from ser_hf.plotting import new_figure, save_figure

    kinds = [k for k in dict.fromkeys(r["kind"] for r in rows) if k != "clean"]
    clean = next((r for r in rows if r["kind"] == "clean"), None)
    figure = new_figure(4.0 * max(len(kinds), 1), 3.4)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for p, kind in enumerate(kinds or ["clean"]):
        axes = figure.add_subplot(1, max(len(kinds), 1), p + 1)
        points = [r for r in rows if r["kind"] == kind]
        severities = [r["severity"] for r in points]
        positions = np.arange(len(points))
        for metric, color in zip(metric_names, colors):
            axes.plot(positions, [r[metric] for r in points], marker="o", color=color, label=metric)
            if clean is not None:
                axes.axhline(clean[metric], color=color, linestyle="--", linewidth=0.8)
        axes.set_xticks(positions, [f"{s:g}" for s in severities])
        axes.set_xlabel(f"{kind} ({SEVERITY_UNITS.get(kind, 'severity')})")
        axes.set_ylim(0, 1)
        axes.grid(alpha=0.3)
        if p == 0:
            axes.set_ylabel("score (dashed: clean)")
            axes.legend(fontsize=8, loc="best")
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


__all__ = ["Perturbation", "robustness_figure", "robustness_report"]
