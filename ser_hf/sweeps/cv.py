"""Cross-validation (`ser-hf cv`): every fold of a protocol as its own run on the sweep engine,
composed with an optional grid of settings and several seeds (cell x seed x fold).

Each fold run is ``ser-hf train`` with ``cv_folds``/``cv_fold`` set (its ``config.yaml`` repeats it)
and also writes its test predictions, so the folds are pooled without loading a model again. A
killed ``cv`` resumes: finished folds are skipped (their ``result.json`` and predictions exist).

Written to ``--output_dir``:

* ``results.csv``   one row per run (cell, seed, fold, held-out speakers, status, test metrics).
* ``summary.md``    per cell: mean ± std over folds, metrics pooled over all folds' predictions,
                    then a per-fold table; ``summary.csv`` holds the same numbers.
* ``pooled/<cell>/`` ``pooled_metrics.json``, ``pooled_predictions.csv`` and the pooled confusion
                    matrix PNG (predictions of every fold and seed of that cell together).

Mean ± std over folds weights folds equally (the usual "5-fold LOSO" number); pooled metrics weight
utterances equally and are what a single confusion matrix shows. Both are reported because papers
use both.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ser_hf.io import write_csv_atomic, write_json_atomic, write_text_atomic
from ser_hf.sweeps.grid import plan_runs, typed_values
from ser_hf.sweeps.predictions import read_predictions
from ser_hf.sweeps.runner import (
    PREDICTIONS_FILE,
    Run,
    SweepCounts,
    collect_results,
    load_result,
    SweepEngine,
    plan_sweep,
    refuse_stale,
    resolve_devices,
    show_value,
)
from ser_hf.sweeps.statistics import METRIC_LABELS, SCORE_METRICS, choose_metric

OUTPUT_FILES = {
    "results": "results.csv",
    "summary_csv": "summary.csv",
    "summary_md": "summary.md",
    "plan": "cv.json",
    "pooled_dir": "pooled",
    "pooled_metrics": "pooled_metrics.json",
    "pooled_predictions": "pooled_predictions.csv",
    "pooled_confusion": "pooled_confusion_matrix.png",
}
_SET_BY_CV = ("cv_folds", "cv_fold", "cv_dev_fold", "train_split", "eval_split", "test_split")


@dataclasses.dataclass
class CVReport:
    output_dir: str
    runs: list[Run]
    fold_names: list[str]
    counts: SweepCounts
    results: list[dict]
    summary: list[dict]
    metric: str
    confusion_pngs: list[str]


# ------------------------------------------------------------------------------------------ planning
def fold_names_for(config: Mapping[str, Any], folds: str) -> list[str]:
    """Load the corpus index once (no audio is read) and name what each fold holds out."""
    from ser_hf.arguments import DataArguments
    from ser_hf.data.folds import fold_assignment
    from ser_hf.experiment import load_data

    fields = {f.name for f in dataclasses.fields(DataArguments)}
    data_args = DataArguments(**{k: v for k, v in config.items() if k in fields and k not in _SET_BY_CV})
    corpus = load_data(data_args)
    rows = [row for name in corpus for row in corpus[name].select_columns(["id", "speaker", "gender"]).to_list()]
    return fold_assignment(rows, folds, data_args.corpus)[0]


def plan_cv_runs(
    base: Mapping[str, Any],
    grid: Mapping[str, list[Any]],
    seeds: Sequence[int],
    output_dir: str,
    folds: str,
    num_folds: int,
    *,
    fixed: Mapping[str, Any] | None = None,
    dev_fold: bool = False,
    only_folds: Sequence[int] | None = None,
) -> list[Run]:
    """cell x seed x fold, seed-major then cell then fold (a cell's folds finish together)."""
    fold_settings = {
        "cv_folds": str(folds), "cv_dev_fold": bool(dev_fold),
        "train_split": "train", "eval_split": "dev" if dev_fold else "none", "test_split": "test",
    }  # fmt: skip
    if not dev_fold and str(base.get("eval_strategy", "no")) not in ("no", "none"):
        raise ValueError("eval_strategy needs a dev split during cv: pass --dev_fold or set eval_strategy: 'no'")
    cells = plan_runs({**base, **fold_settings, "cv_fold": 0}, grid, seeds, output_dir, fixed=fixed)
    wanted = list(range(num_folds)) if only_folds is None else sorted(set(only_folds))
    bad = [f for f in wanted if not 0 <= f < num_folds]
    if bad:
        raise ValueError(f"--only_folds {bad} out of range: the protocol has {num_folds} folds (0..{num_folds - 1})")
    runs = []
    for cell_run in cells:
        for fold in wanted:
            run_dir = os.path.join(cell_run.run_dir, f"fold{fold}")
            config = {**cell_run.config, **fold_settings, "cv_fold": fold, "output_dir": run_dir}
            runs.append(Run(cell_run.cell, cell_run.seed, run_dir, config, fold=fold, save_predictions=True))
    return runs


# ------------------------------------------------------------------------------------------ numbers
def _class_names(labels: Sequence[str], corpus: str | None) -> list[str]:
    names = {}
    if corpus:
        try:
            from ser_hf.data.corpora import get_corpus_spec

            names = get_corpus_spec(corpus).label_names or {}
        except ValueError:
            names = {}
    return [f"{names[c]} ({c})" if names.get(c, c) != c else c for c in labels]


def pooled_numbers(prediction_files: Sequence[str]) -> tuple[dict[str, Any], list[dict]]:
    """(metrics, rows) over the concatenated predictions of several runs (classes from the prob_ columns)."""
    from ser_hf.metrics.functional import ccc, classification_metrics

    labels, rows = None, []
    for path in prediction_files:
        file_labels, file_rows = read_predictions(path)
        if labels is None:
            labels = file_labels
        elif file_labels != labels:
            raise ValueError(f"{path}: classes {file_labels} differ from the other folds' {labels}")
        rows += file_rows
    if not rows:
        raise ValueError("no predictions to pool")
    out: dict[str, Any] = {"num_examples": len(rows), "num_runs": len(prediction_files)}
    if labels:
        index = {code: i for i, code in enumerate(labels)}
        labelled = [r for r in rows if r.get("true_label") not in (None, "")]
        unknown = sorted({r["true_label"] for r in labelled} - set(index))
        if unknown:
            raise ValueError(f"pooled predictions hold true labels {unknown} outside the model's classes {labels}")
        refs = np.array([index[r["true_label"]] for r in labelled])
        preds = np.array([index[r["predicted_label"]] for r in labelled])
        out.update(classification_metrics(preds, refs, num_classes=len(labels), labels=list(range(len(labels)))))
        counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
        np.add.at(counts, (refs, preds), 1)
        out["labels"] = list(labels)
        out["confusion_matrix"] = counts.tolist()
        out["num_labelled"] = len(labelled)
    attributes = [k.removeprefix("true_") for k in rows[0] if k.startswith("true_") and k != "true_label"]
    values = []
    for name in attributes:
        pairs = [(r[f"predicted_{name}"], r[f"true_{name}"]) for r in rows if not math.isnan(r[f"true_{name}"])]
        if pairs:
            out[f"ccc_{name}"] = ccc(*map(np.array, zip(*pairs)))
            values.append(out[f"ccc_{name}"])
    if values:
        out["ccc_mean"] = float(np.mean(values))
    return out, rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
    return mean, std


def _fmt(mean: float, std: float = math.nan, digits: int = 3) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


# ------------------------------------------------------------------------------------------ reports
def write_cv_reports(
    output_dir: str,
    runs: Sequence[Run],
    grid_keys: Sequence[str],
    fold_names: Sequence[str],
    *,
    metric: str | None = None,
    command: str | None = None,
    protocol: str = "",
    corpus: str | None = None,
) -> dict[str, Any]:
    """results.csv, summary.csv, summary.md and each cell's pooled files from the results so far."""
    from ser_hf.plotting import confusion_matrix_figure
    from ser_hf.sweeps.grid import cell_slugs

    results = collect_results(runs)
    for row, run in zip(results, runs):
        row["held_out"] = fold_names[run.fold] if run.fold is not None and run.fold < len(fold_names) else ""
    metric = choose_metric(results, metric)
    present = [m for m in SCORE_METRICS if any(m in r["metrics"] for r in results)]
    metrics = [metric] + [m for m in present if m != metric]
    write_csv_atomic(
        os.path.join(output_dir, OUTPUT_FILES["results"]),
        ["run", *grid_keys, "seed", "fold", "held_out", "status", *metrics, "num_test", "seconds", "error", "run_dir"],
        [[r["run"], *(r[k] for k in grid_keys), r["seed"], r["fold"], r["held_out"], r["status"],
          *(f"{r['metrics'][m]:.6f}" if isinstance(r["metrics"].get(m), (int, float)) else "" for m in metrics),
          _num_test(r), "" if r["seconds"] is None else r["seconds"], r["error"] or "", r["run_dir"]] for r in results],
    )  # fmt: skip
    cells: dict[tuple, list[tuple[Run, dict]]] = {}
    for run, row in zip(runs, results):
        cells.setdefault(run.cell, []).append((run, row))
    slugs = dict(zip(cells, cell_slugs(list(cells))))
    summary, pngs = [], []
    lines = ["# Cross-validation summary", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "failed", "missing")}
    lines += [
        f"Protocol: {protocol}. {len(results)} runs: {counts['ok']} ok, "
        f"{counts['failed']} failed, {counts['missing']} missing.",
        "",
        "Fold mean ± std: every fold's test score weighted equally (sample std over folds and seeds). "
        "Pooled: one score over the predictions of all folds together (every utterance weighted equally).",
        "",
    ]
    shown = [m for m in metrics if m in ("macro_f1", "uar", "accuracy", "ccc_mean", "ccc_arousal", "ccc_valence", "ccc_dominance")]
    header = [*grid_keys, "folds ok"] + [f"{METRIC_LABELS.get(m, m)} (fold mean ± std)" for m in shown] + [
        f"{METRIC_LABELS.get(m, m)} (pooled)" for m in shown
    ]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    per_fold_sections = []
    for cell, members in cells.items():
        ok = [(run, row) for run, row in members if row["status"] == "ok"]
        entry: dict[str, Any] = {**{k: show_value(v) for k, v in cell}, "n_ok": len(ok), "n_runs": len(members)}
        for m in metrics:
            entry[f"{m}_mean"], entry[f"{m}_std"] = _mean_std([row["metrics"].get(m) for _, row in ok])
        files = [os.path.join(run.run_dir, PREDICTIONS_FILE) for run, _ in ok]
        pooled = {}
        if files and len(ok) == len(members):
            pooled, rows = pooled_numbers(files)
            folder = os.path.join(output_dir, OUTPUT_FILES["pooled_dir"], slugs[cell])
            write_json_atomic(os.path.join(folder, OUTPUT_FILES["pooled_metrics"]), pooled)
            _write_pooled_predictions(os.path.join(folder, OUTPUT_FILES["pooled_predictions"]), rows)
            if "confusion_matrix" in pooled:
                label = " ".join(f"{k}={show_value(v)}" for k, v in cell)
                pngs.append(confusion_matrix_figure(
                    pooled["confusion_matrix"], _class_names(pooled["labels"], corpus),
                    os.path.join(folder, OUTPUT_FILES["pooled_confusion"]),
                    title=f"Pooled over {len(ok)} fold runs{(' — ' + label) if label else ''}",
                ))  # fmt: skip
        for m in metrics:
            entry[f"{m}_pooled"] = pooled.get(m, math.nan)
        summary.append(entry)
        table.append("| " + " | ".join(
            [*(entry[k] for k in grid_keys), f"{len(ok)}/{len(members)}"]
            + [_fmt(entry[f"{m}_mean"], entry[f"{m}_std"]) for m in shown]
            + [_fmt(entry[f"{m}_pooled"]) if pooled else "incomplete" for m in shown]
        ) + " |")  # fmt: skip
        label = " ".join(f"{k}={show_value(v)}" for k, v in cell) or "base config"
        section = [f"### Per fold: {label}", "", "| seed | fold | held out | n test | " + " | ".join(
            METRIC_LABELS.get(m, m) for m in shown) + " | status |", "|" + "---|" * (len(shown) + 5)]
        for run, row in members:
            section.append("| " + " | ".join(
                [str(run.seed), str(run.fold), row["held_out"], str(_num_test(row))]
                + [f"{row['metrics'][m]:.3f}" if isinstance(row["metrics"].get(m), (int, float)) else "" for m in shown]
                + [row["status"] if row["status"] != "failed" else f"failed: {row['error']}"]
            ) + " |")  # fmt: skip
        if pooled:
            section += ["", f"Pooled confusion matrix: `{OUTPUT_FILES['pooled_dir']}/{slugs[cell]}/{OUTPUT_FILES['pooled_confusion']}`"]
        per_fold_sections += section + [""]
    lines += table + ["", "## Folds", ""] + per_fold_sections
    write_text_atomic(os.path.join(output_dir, OUTPUT_FILES["summary_md"]), "\n".join(lines).rstrip() + "\n")
    columns = [*grid_keys, "n_ok", "n_runs"] + [f"{m}_{s}" for m in metrics for s in ("mean", "std", "pooled")]
    write_csv_atomic(
        os.path.join(output_dir, OUTPUT_FILES["summary_csv"]),
        columns,
        [[f"{e[c]:.6f}" if isinstance(e[c], float) and not math.isnan(e[c]) else "" if isinstance(e[c], float) else e[c]
          for c in columns] for e in summary],
    )  # fmt: skip
    return {"results": results, "summary": summary, "metric": metric, "pngs": pngs, "counts": counts}


def _num_test(row: Mapping[str, Any]) -> str:
    path = os.path.join(row["run_dir"], PREDICTIONS_FILE)
    if row["status"] != "ok" or not os.path.isfile(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return str(sum(1 for _ in handle) - 1)


def _write_pooled_predictions(path: str, rows: list[dict]) -> None:
    header = list(rows[0])
    write_csv_atomic(path, header, [["" if isinstance(r.get(k), float) and math.isnan(r[k]) else r.get(k) for k in header] for r in rows])


# ------------------------------------------------------------------------------------------ one call
def run_cv(
    config: str | Mapping[str, Any],
    folds: str,
    *,
    grid: Mapping[str, Sequence[str]] | None = None,
    seeds: Sequence[int] | None = None,
    output_dir: str | None = None,
    fixed: Mapping[str, Sequence[str]] | None = None,
    dev_fold: bool = False,
    only_folds: Sequence[int] | None = None,
    engine: SweepEngine | None = None,
    metric: str | None = None,
    dry_run: bool = False,
    command: str | None = None,
) -> CVReport:
    """Check everything, run the unfinished folds, write the tables and pooled files, return them."""
    from ser_hf.data.folds import PRESETS, resolve_scheme

    engine = engine or SweepEngine()
    progress = engine.progress
    plan = plan_sweep(config, fixed, seeds, output_dir, default_root="cv")
    base, typed_fixed, seeds, output_dir = plan.base, plan.fixed, plan.seeds, plan.output_dir
    typed_grid = typed_values(grid or {})
    clash = sorted((set(typed_grid) | set(typed_fixed)) & set(_SET_BY_CV))
    if clash:
        raise ValueError(f"{clash} are set by ser-hf cv for every fold; use --folds/--dev_fold instead")
    overlap = sorted(set(typed_grid) & set(typed_fixed))
    if overlap:
        raise ValueError(f"keys {overlap} are both grid axes and --set values")
    merged = {**base, **typed_fixed}
    corpus = str(merged.get("corpus", "synthetic"))
    resolve_scheme(folds, corpus)  # a bad --folds or a preset of another corpus fails before loading anything
    fold_names = fold_names_for(merged, folds)
    runs = plan_cv_runs(
        base, typed_grid, seeds, output_dir, folds, len(fold_names), fixed=typed_fixed, dev_fold=dev_fold, only_folds=only_folds
    )
    refuse_stale(runs, output_dir)
    resolve_devices(engine.devices)
    preset = PRESETS.get(str(folds).strip().lower())
    protocol = preset.description if preset else f"{corpus}, folds={folds} ({len(fold_names)} folds)"
    write_json_atomic(
        os.path.join(output_dir, OUTPUT_FILES["plan"]),
        {"command": command, "base_config": base, "folds": folds, "protocol": protocol, "fold_names": fold_names,
         "grid": list(typed_grid.items()), "fixed": typed_fixed, "seeds": seeds, "runs": [r.run_dir for r in runs]},
    )  # fmt: skip
    progress(f"[cv] {protocol}: {len(fold_names)} folds x {len(seeds)} seeds x {len(runs) // max(1, len(fold_names) * len(seeds))} cells")
    counts = SweepCounts(planned=len(runs))
    if dry_run:
        for run in runs:
            state = (load_result(run) or {}).get("status", "to run")
            progress(f"[cv] {run.run_id} (held out: {fold_names[run.fold]}): {state}")
    else:
        counts = engine.run(runs, tag="cv")
    written = write_cv_reports(
        output_dir, runs, list(typed_grid), fold_names, metric=metric, command=command, protocol=protocol, corpus=corpus
    )
    progress(
        f"[cv] summary: {os.path.join(output_dir, OUTPUT_FILES['summary_md'])} ({written['counts']['ok']} ok, "
        f"{written['counts']['failed']} failed, {written['counts']['missing']} missing)"
        + (f"; pooled confusion matrix: {written['pngs'][0]}" if written["pngs"] else "")
    )
    return CVReport(output_dir, runs, fold_names, counts, written["results"], written["summary"], written["metric"], written["pngs"])
