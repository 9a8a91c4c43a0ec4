"""Cross-corpus evaluation (`ser-hf crosscorpus`): train on corpus A, test on corpus B, for every
pair of several corpora, on a class set they share (``label_map``, default ``shared``: neutral,
happy, angry, sad; classes outside it are dropped and counted per corpus).

One run per (training corpus x seed) on the sweep engine (own process, resumable); after training,
the run's own process evaluates its model on the test split of every corpus and writes
``transfer_metrics.json``. The diagonal of the matrix is the in-corpus result.

Written to ``--output_dir``: ``matrix.csv`` (one row per train/test pair and seed), ``matrix.md``
(mean over seeds, one table per metric, plus the dropped-class counts) and ``matrix.png`` (a heatmap
of the primary metric).
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ser_hf.io import write_csv_atomic, write_json_atomic, write_text_atomic
from ser_hf.sweeps.grid import check_run_arguments
from ser_hf.sweeps.runner import (
    TRANSFER_FILE, Run, SweepCounts, SweepEngine, load_result, plan_sweep, read_json, refuse_stale, resolve_devices,
)  # fmt: skip
from ser_hf.sweeps.statistics import METRIC_LABELS

OUTPUT_FILES = {"plan": "crosscorpus.json", "csv": "matrix.csv", "md": "matrix.md", "png": "matrix.png"}
CORPUS_KEYS = ("data_path", "corpus_options", "train_split", "eval_split", "test_split", "labels")
_SET_BY_CROSSCORPUS = ("corpus", "label_map", *CORPUS_KEYS)


@dataclasses.dataclass
class CrossCorpusReport:
    output_dir: str
    runs: list[Run]
    corpora: list[str]
    counts: SweepCounts
    matrix: dict[str, dict[str, dict[str, float]]]  # metric -> train corpus -> test corpus -> mean over seeds
    dropped: dict[str, dict[str, int]]
    heatmap: str | None


def parse_corpora(items: Sequence[str]) -> dict[str, dict]:
    """``["emodb=/data/emodb", "synthetic"]`` -> ``{"emodb": {"data_path": "/data/emodb"}, "synthetic": {}}``."""
    corpora: dict[str, dict] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"--corpora entry {item!r}: expected NAME or NAME=PATH")
        if name in corpora:
            raise ValueError(f"--corpora: {name!r} is given twice")
        corpora[name] = {"data_path": path.strip()} if sep and path.strip() else {}
    return corpora


def _corpus_settings(name: str, settings: Mapping[str, Any]) -> dict:
    unknown = sorted(set(settings) - set(CORPUS_KEYS) - {"corpus"})
    if unknown:
        raise ValueError(f"corpus {name!r}: unknown settings {unknown} (allowed: {list(CORPUS_KEYS)})")
    return {"corpus": settings.get("corpus", name), **{k: v for k, v in settings.items() if k != "corpus"}}


def dropped_counts(corpora: Mapping[str, dict], label_map: str) -> dict[str, dict[str, int]]:
    """Per corpus: how many labelled rows of each class the label map drops (all splits)."""
    from ser_hf.data.corpora import get_corpus_spec, load_corpus
    from ser_hf.data.label_maps import apply_label_map, resolve_label_map

    resolved = resolve_label_map(label_map)
    out = {}
    for name, settings in corpora.items():
        corpus = load_corpus(settings["corpus"], settings.get("data_path"), **(settings.get("corpus_options") or {}))
        kept = sum(sum(label is not None for label in split["label"]) for split in corpus.values())
        _, dropped = apply_label_map(corpus, settings["corpus"], resolved)
        total = sum(dropped.values(), Counter())
        names = get_corpus_spec(settings["corpus"]).label_names or {}
        out[name] = {
            "kept": kept - sum(total.values()),
            "dropped": sum(total.values()),
            "dropped_classes": ", ".join(
                f"{names.get(k, k)}{f' ({k})' if names.get(k, k) != k else ''} {v}" for k, v in sorted(total.items())
            ),
        }
    return out


def plan_crosscorpus_runs(
    base: Mapping[str, Any], corpora: Mapping[str, dict], seeds: Sequence[int], output_dir: str, label_map: str,
    fixed: Mapping[str, Any] | None = None,
) -> list[Run]:
    """One run per training corpus and seed (seed-major), each evaluated on every corpus's test split."""
    targets = []
    for name, settings in corpora.items():
        target = {k: v for k, v in settings.items() if k in ("corpus", "data_path", "corpus_options")}
        targets.append({**target, "name": name, "label_map": label_map, "split": settings.get("test_split") or "test"})
    runs, problems = [], []
    for seed in seeds:
        for name, settings in corpora.items():
            run_dir = os.path.join(output_dir, "runs", f"train-{name}", f"seed{seed}")
            config = {**base, **(fixed or {}), **settings, "label_map": label_map, "seed": int(seed), "output_dir": run_dir}
            if seed == seeds[0]:
                try:
                    check_run_arguments(config)
                except (ValueError, TypeError) as exc:
                    problems.append(f"train on {name}: {exc}")
            runs.append(Run((("train", name),), int(seed), run_dir, config, evaluate_on=tuple(targets)))
    if problems:
        raise ValueError("invalid cross-corpus settings (nothing was run):\n  " + "\n  ".join(problems))
    return runs


def collect_matrix(runs: Sequence[Run], names: Sequence[str], metrics: Sequence[str]) -> tuple[list[list], dict]:
    """(CSV rows per pair and seed, {metric: {train: {test: mean over seeds}}})."""
    rows, values = [], {m: {a: {b: [] for b in names} for a in names} for m in metrics}
    for run in runs:
        source = dict(run.cell)["train"]
        result = load_result(run) or {}
        transfer = read_json(os.path.join(run.run_dir, TRANSFER_FILE)) if result.get("status") == "ok" else None
        for target in names:
            scores = (transfer or {}).get(target) or {}
            status = "ok" if scores else result.get("status", "missing")
            rows.append([source, target, run.seed, status, *(scores.get(m, "") for m in metrics), scores.get("num_examples", ""),
                         (result.get("error") or "") if status != "ok" else ""])  # fmt: skip
            for m in metrics:
                if isinstance(scores.get(m), (int, float)):
                    values[m][source][target].append(float(scores[m]))
    means = {m: {a: {b: (sum(v) / len(v) if v else math.nan) for b, v in row.items()} for a, row in table.items()}
             for m, table in values.items()}  # fmt: skip
    return rows, means


def matrix_markdown(means: dict, names: Sequence[str], metrics: Sequence[str], *, dropped: Mapping, label_map: str,
                    classes: Sequence[str], seeds: Sequence[int], command: str | None) -> str:  # fmt: skip
    lines = ["# Cross-corpus matrix", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [
        f"Rows: training corpus; columns: test corpus (its test split). Classes ({label_map}): {', '.join(classes)}. "
        f"Mean over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}; the diagonal is the in-corpus result.",
        "",
    ]
    for metric in metrics:
        lines += [f"## {METRIC_LABELS.get(metric, metric)}", "", "| train \\ test | " + " | ".join(names) + " |",
                  "|" + "---|" * (len(names) + 1)]  # fmt: skip
        for a in names:
            cells = ["n/a" if math.isnan(means[metric][a][b]) else f"{means[metric][a][b]:.3f}" for b in names]
            cells = [f"**{c}**" if a == b and c != "n/a" else c for c, b in zip(cells, names)]
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Labelled rows per corpus after the label map (all splits)", "",
              "| corpus | kept | dropped | dropped classes |", "|---|---|---|---|"]  # fmt: skip
    for name, counts in dropped.items():
        lines.append(f"| {name} | {counts['kept']} | {counts['dropped']} | {counts['dropped_classes'] or '-'} |")
    return "\n".join(lines) + "\n"


def run_crosscorpus(
    config: str | Mapping[str, Any],
    corpora: Mapping[str, Mapping[str, Any]],
    *,
    label_map: str = "shared",
    seeds: Sequence[int] | None = None,
    output_dir: str | None = None,
    fixed: Mapping[str, Sequence[str]] | None = None,
    engine: SweepEngine | None = None,
    metric: str = "macro_f1",
    dry_run: bool = False,
    command: str | None = None,
) -> CrossCorpusReport:
    """Check everything, train one model per corpus (and seed), evaluate each on every corpus, write the matrix."""
    from ser_hf.data.label_maps import resolve_label_map
    from ser_hf.sweeps.plots import plot_matrix

    engine = engine or SweepEngine()
    progress = engine.progress
    if len(corpora) < 2:
        raise ValueError(f"a cross-corpus matrix needs at least two corpora, got {list(corpora)}")
    plan = plan_sweep(config, fixed, seeds, output_dir or os.path.join("crosscorpus", "_".join(corpora)), default_root="crosscorpus")
    base, typed_fixed, seeds, output_dir = plan.base, plan.fixed, plan.seeds, plan.output_dir
    clash = sorted(set(typed_fixed) & set(_SET_BY_CROSSCORPUS))
    if clash:
        raise ValueError(f"{clash} are set per corpus by ser-hf crosscorpus (use --corpora / the corpora file)")
    shared = resolve_label_map(label_map)
    settings = {name: _corpus_settings(name, value) for name, value in corpora.items()}
    for name, value in settings.items():
        shared.for_corpus(value["corpus"])  # every corpus must be in the map
    base = {k: v for k, v in base.items() if k not in _SET_BY_CROSSCORPUS or k in ("train_split", "eval_split", "test_split")}
    runs = plan_crosscorpus_runs(base, settings, seeds, output_dir, label_map, typed_fixed)
    refuse_stale(runs, output_dir)
    resolve_devices(engine.devices)
    dropped = dropped_counts(settings, label_map)
    names = list(settings)
    write_json_atomic(os.path.join(output_dir, OUTPUT_FILES["plan"]),
                      {"command": command, "base_config": base, "corpora": settings, "label_map": label_map, "seeds": seeds,
                       "dropped": dropped, "runs": [r.run_dir for r in runs]})  # fmt: skip
    counts = SweepCounts(planned=len(runs))
    if dry_run:
        for run in runs:
            progress(f"[crosscorpus] {run.cell_label} seed={run.seed}: {(load_result(run) or {}).get('status', 'to run')}")
    else:
        counts = engine.run(runs, tag="crosscorpus")
    metrics = [metric] + [m for m in ("uar", "accuracy") if m != metric]
    rows, means = collect_matrix(runs, names, metrics)
    write_csv_atomic(os.path.join(output_dir, OUTPUT_FILES["csv"]),
                     ["train", "test", "seed", "status", *metrics, "num_examples", "error"], rows)  # fmt: skip
    write_text_atomic(os.path.join(output_dir, OUTPUT_FILES["md"]), matrix_markdown(
        means, names, metrics, dropped=dropped, label_map=label_map, classes=shared.classes, seeds=seeds, command=command))
    heatmap = None
    if any(not math.isnan(v) for row in means[metric].values() for v in row.values()):
        heatmap = plot_matrix(
            os.path.join(output_dir, OUTPUT_FILES["png"]), [[means[metric][a][b] for b in names] for a in names], names,
            title=f"Cross-corpus test {METRIC_LABELS.get(metric, metric)} ({', '.join(shared.classes)})",
        )  # fmt: skip
    progress(f"[crosscorpus] matrix: {os.path.join(output_dir, OUTPUT_FILES['md'])}" + (f"; heatmap: {heatmap}" if heatmap else ""))
    return CrossCorpusReport(output_dir, runs, names, counts, means, dropped, heatmap)
