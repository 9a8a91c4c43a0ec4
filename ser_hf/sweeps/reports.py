"""Tables of a sweep: results.csv (one row per run), summary.csv and summary.md (mean ± std per
cell, best in bold, paired effects), plus the bar chart, from whatever results exist now."""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ser_hf.io import write_csv_atomic, write_text_atomic
from ser_hf.sweeps.plots import plot_summary
from ser_hf.sweeps.runner import Run, collect_results
from ser_hf.sweeps.statistics import _NOISE, METRIC_LABELS, SCORE_METRICS, choose_metric, paired_effects, summarize

OUTPUT_FILES = {
    "results": "results.csv",
    "summary_csv": "summary.csv",
    "summary_md": "summary.md",
    "chart": "summary.png",
    "plan": "ablation.json",
}


def _fmt(value: float, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_std(entry: Mapping[str, Any], metric: str, digits: int = 3) -> str:
    """``"0.412 ± 0.031 (3)"``; a cell without a successful run gives ``"failed"`` or ``"missing"``."""
    mean, std = entry[f"{metric}_mean"], entry[f"{metric}_std"]
    if math.isnan(mean):
        return "failed" if entry["n_failed"] else "missing"
    spread = f" ± {std:.{digits}f}" if not math.isnan(std) else ""
    return f"{mean:.{digits}f}{spread} ({entry['n_ok']})"


def summary_markdown(
    summary: Sequence[dict],
    grid_keys: Sequence[str],
    metrics: Sequence[str],
    *,
    compare: str | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """Markdown table of mean ± std (runs) per cell; the best mean of each column in bold.

    With ``compare`` (a grid key), its values become columns side by side (e.g. original vs.
    imbalanced training data), one column group per metric.
    """
    lines = [f"# {title}", ""] if title else []
    lines += list(notes) + ([""] if notes else [])
    row_keys = [k for k in grid_keys if k != compare]
    columns: list[tuple[str, str | None]] = []
    compare_values = list(dict.fromkeys(e[compare] for e in summary)) if compare else [None]
    for metric in metrics:
        columns += [(metric, v) for v in compare_values]
    groups: dict[tuple, dict] = {}
    for entry in summary:
        groups.setdefault(tuple(entry[k] for k in row_keys), {})[entry[compare] if compare else None] = entry
    best = {}
    for metric, value in columns:
        means = [g[value][f"{metric}_mean"] for g in groups.values() if value in g and not math.isnan(g[value][f"{metric}_mean"])]
        best[(metric, value)] = max(means) if means else None
    header = [*row_keys] + [
        f"{METRIC_LABELS.get(m, m)}" + (f" ({compare}={v})" if compare else "") for m, v in columns
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for key, group in groups.items():
        cells = list(key)
        for metric, value in columns:
            entry = group.get(value)
            if entry is None:
                cells.append("")
                continue
            text = mean_std(entry, metric)
            if best[(metric, value)] is not None and entry[f"{metric}_mean"] == best[(metric, value)]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    failures = [e for e in summary if e["errors"]]
    if failures:
        lines += ["", "Failed runs:", ""]
        for entry in failures:
            label = " ".join(f"{k}={entry[k]}" for k in grid_keys)
            lines.append(f"- {label}: {entry['errors']}")
    missing = [e for e in summary if e["n_missing"]]
    if missing:
        lines += ["", f"Missing runs (not run yet): {sum(e['n_missing'] for e in missing)} in {len(missing)} cells."]
    return "\n".join(lines) + "\n"



def effects_markdown(effects: Sequence[dict], metric: str, *, compare: str | None = None) -> str:
    """The `paired_effects` as a Markdown table."""
    label = METRIC_LABELS.get(metric, metric)
    header = ([compare] if compare else []) + ["setting", "vs.", f"mean Δ {label} ± std", "better in (pairs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in effects:
        diff = "n/a" if math.isnan(e["mean_diff"]) else f"{e['mean_diff']:+.3f}" + (
            "" if math.isnan(e["std_diff"]) else f" ± {e['std_diff']:.3f}"
        )
        cells = ([e["group"]] if compare else []) + [
            f"{e['key']}={e['value']}", f"{e['key']}={e['baseline']}", diff, f"{e['better']}/{e['pairs']}"
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"



def write_reports(
    output_dir: str,
    runs: Sequence[Run],
    grid_keys: Sequence[str],
    *,
    metric: str | None = None,
    compare: str | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """results.csv, summary.csv, summary.md and the bar chart from whatever results exist now."""
    results = collect_results(runs)
    metric = choose_metric(results, metric)
    present = [m for m in SCORE_METRICS if any(m in r["metrics"] for r in results)]
    table_metrics = [metric] + [m for m in present if m != metric]
    summary = summarize(results, grid_keys, table_metrics)
    metric_columns = table_metrics + sorted({k for r in results for k in r["metrics"]} - set(table_metrics) - _NOISE)
    # "loss" is both a grid key and the test loss: metric columns never reuse a grid key's name.
    metric_names = [f"test_{m}" if m in grid_keys or m == "loss" else m for m in metric_columns]
    header = ["run", *grid_keys, "seed", "status", *metric_names, "seconds", "error", "log", "run_dir"]
    write_csv_atomic(
        os.path.join(output_dir, OUTPUT_FILES["results"]),
        header,
        [[r["run"], *(r[k] for k in grid_keys), r["seed"], r["status"],
          *(_fmt(r["metrics"].get(m), 6) if isinstance(r["metrics"].get(m), (int, float)) else "" for m in metric_columns),
          "" if r["seconds"] is None else r["seconds"], r["error"] or "", r["log"] or "", r["run_dir"]] for r in results],
    )
    summary_header = [*grid_keys, "n_ok", "n_failed", "n_missing", "seeds"] + [
        f"{m}_{s}" for m in table_metrics for s in ("mean", "std")
    ] + ["errors"]
    write_csv_atomic(
        os.path.join(output_dir, OUTPUT_FILES["summary_csv"]),
        summary_header,
        [[_fmt(e[c], 6) if isinstance(e[c], float) else e[c] for c in summary_header] for e in summary],
    )
    shown = [metric] + (["uar"] if metric == "macro_f1" and "uar" in present else [])
    shown += [m for m in ("ccc_arousal", "ccc_valence", "ccc_dominance") if metric == "ccc_mean" and m in present]
    notes = [f"Command: `{command}`", ""] if command else []
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "failed", "missing")}
    notes.append(
        f"{len(results)} runs: {counts['ok']} ok, {counts['failed']} failed, {counts['missing']} missing. "
        f"Test-set scores, mean ± sample std over seeds (number of successful runs in brackets); best in bold."
    )
    text = summary_markdown(summary, grid_keys, shown, compare=compare, title="Ablation summary", notes=notes)
    effects = paired_effects(results, grid_keys, metric, compare=compare)
    if effects:
        text += (
            f"\n## Effect of each setting on {METRIC_LABELS.get(metric, metric)}\n\n"
            "Paired differences: runs that differ only in this setting (same other settings and seed).\n\n"
            + effects_markdown(effects, metric, compare=compare)
        )
    write_text_atomic(os.path.join(output_dir, OUTPUT_FILES["summary_md"]), text)
    chart = None
    if any(not math.isnan(e[f"{metric}_mean"]) for e in summary):
        chart = plot_summary(os.path.join(output_dir, OUTPUT_FILES["chart"]), summary, grid_keys, metric, compare=compare)
    return {"results": results, "summary": summary, "metric": metric, "chart": chart, "counts": counts}
