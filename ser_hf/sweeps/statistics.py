"""Numbers over the runs of a sweep: mean and sample std per cell, paired effects of one setting,
and the choice of the primary metric. Pure functions of result rows (see ``runner.collect_results``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

SCORE_METRICS = ("macro_f1", "uar", "accuracy", "micro_f1", "ccc_mean", "ccc_arousal", "ccc_valence", "ccc_dominance")
METRIC_LABELS = {"macro_f1": "macro-F1", "uar": "UAR", "accuracy": "accuracy", "micro_f1": "micro-F1", "ccc_mean": "mean CCC"}


def choose_metric(results: Sequence[dict], metric: str | None = None) -> str:
    """The primary metric: the one asked for, else macro-F1 (categorical) or mean CCC (attributes)."""
    present = {name for row in results for name, value in row["metrics"].items() if isinstance(value, (int, float))}
    if metric is not None:
        if present and metric not in present:
            raise ValueError(f"metric {metric!r} is not among the run metrics {sorted(present)}")
        return metric
    for name in ("macro_f1", "ccc_mean", *SCORE_METRICS):
        if name in present:
            return name
    return min(present) if present else "macro_f1"


def summarize(results: Sequence[dict], grid_keys: Sequence[str], metrics: Sequence[str]) -> list[dict]:
    """Per cell (in plan order): runs ok/failed/missing, and mean and sample std over seeds of each metric."""
    cells: dict[tuple, list[dict]] = {}
    for row in results:
        cells.setdefault(tuple(row[k] for k in grid_keys), []).append(row)
    summary = []
    for key, rows in cells.items():
        ok = [r for r in rows if r["status"] == "ok"]
        entry = {**dict(zip(grid_keys, key)), "n_ok": len(ok), "n_failed": sum(r["status"] == "failed" for r in rows),
                 "n_missing": sum(r["status"] == "missing" for r in rows), "seeds": " ".join(str(r["seed"]) for r in ok)}
        for name in metrics:
            values = [float(r["metrics"][name]) for r in ok if isinstance(r["metrics"].get(name), (int, float))]
            entry[f"{name}_mean"] = sum(values) / len(values) if values else math.nan
            entry[f"{name}_std"] = (
                math.sqrt(sum((v - entry[f"{name}_mean"]) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else math.nan
            )
        entry["errors"] = "; ".join(f"seed {r['seed']}: {r['error']}" for r in rows if r["status"] == "failed")
        summary.append(entry)
    return summary



def paired_effects(
    results: Sequence[dict], grid_keys: Sequence[str], metric: str, *, compare: str | None = None
) -> list[dict]:
    """How much each grid value changes ``metric`` against the key's first value, paired.

    For key K with first value a and another value b, every pair of successful runs that differ only
    in K (same other settings, same seed) gives one difference score(b) - score(a). Pairing removes
    the spread that seeds and the other settings add, which a difference of cell means keeps. With
    ``compare`` the effects are computed separately for each of its values.
    """
    def score(row):
        value = row["metrics"].get(metric)
        return float(value) if row["status"] == "ok" and isinstance(value, (int, float)) else None

    groups = list(dict.fromkeys(r[compare] for r in results)) if compare else [None]
    effects = []
    for group in groups:
        rows = [r for r in results if compare is None or r[compare] == group]
        for key in grid_keys:
            if key == compare:
                continue
            values = list(dict.fromkeys(r[key] for r in rows))
            others = [k for k in grid_keys if k not in (key, compare)]
            index = {(r[key], tuple(r[k] for k in others), r["seed"]): score(r) for r in rows}
            for value in values[1:]:
                diffs = []
                for (v, rest, seed), s in index.items():
                    base = index.get((values[0], rest, seed))
                    if v == value and s is not None and base is not None:
                        diffs.append(s - base)
                mean = sum(diffs) / len(diffs) if diffs else math.nan
                std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else math.nan
                effects.append({
                    "group": group, "key": key, "value": value, "baseline": values[0], "pairs": len(diffs),
                    "mean_diff": mean, "std_diff": std, "better": sum(d > 0 for d in diffs),
                })
    return effects



_NOISE = {"runtime", "samples_per_second", "steps_per_second", "epoch"}