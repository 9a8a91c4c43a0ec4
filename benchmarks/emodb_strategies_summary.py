"""Tabulate the issue-13 EmoDB strategy sweeps (docs/emodb_augmentation.md): mean ± std of UAR and
macro-F1 per strategy and data variant over seeds, a bar chart, and the per-run CSV.

    python benchmarks/emodb_strategies_summary.py --runs /work/runs --out docs
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

# sweep folder -> strategy shown in the table
SWEEPS = {
    "strategies_plain": "plain: CE, mean pooling, no sampler",
    "strategies_default": "recipe: focal + up + Mish + ASP",
    "strategies_augment_only": "recipe + augment (waveform+specaugment)",
    "strategies_mixup_only": "recipe + manifold mixup",
    "strategies_combo": "recipe + augment + manifold mixup",
    "strategies_plain_augmix": "plain + augment + manifold mixup",
    "strategies_combo16": "recipe + augment + manifold mixup, 16 epochs",
    "strategies_overlap/mixing-input": "recipe + augment + input mixup",
    "strategies_overlap/mixing-overlap": "recipe + augment + overlap mixing",
}


def collect(root: str) -> list[dict]:
    runs = []
    for sweep, name in SWEEPS.items():
        folder, _, cell = sweep.partition("/")
        for path in sorted(glob.glob(os.path.join(root, folder, "runs", cell or "*", "seed*", "test_metrics.json"))):
            metrics = json.load(open(path))
            cell = os.path.basename(os.path.dirname(os.path.dirname(path)))
            variant = "imbalanced" if "imbalance-F" in cell else "original"
            seed = int(os.path.basename(os.path.dirname(path)).removeprefix("seed"))
            runs.append({"strategy": name, "sweep": sweep, "variant": variant, "seed": seed, "uar": metrics["uar"],
                         "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"], "run": os.path.dirname(path)})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="/work/runs")
    parser.add_argument("--out", default="docs")
    args = parser.parse_args()
    from ser_hf.io import write_csv_atomic
    from ser_hf.plotting import new_figure, save_figure

    runs = collect(args.runs)
    write_csv_atomic(os.path.join(args.out, "emodb_augmentation_runs.csv"), ["strategy", "variant", "seed", "uar", "macro_f1", "accuracy"],
                     [[r["strategy"], r["variant"], r["seed"], f"{r['uar']:.4f}", f"{r['macro_f1']:.4f}", f"{r['accuracy']:.4f}"] for r in runs])
    table, summary = [], []
    print("| strategy | UAR original | UAR imbalanced | macro-F1 original | macro-F1 imbalanced |")
    print("|---|---|---|---|---|")
    for name in SWEEPS.values():
        cells = {}
        for variant in ("original", "imbalanced"):
            sel = [r for r in runs if r["strategy"] == name and r["variant"] == variant]
            cells[variant] = {m: (np.mean([r[m] for r in sel]), np.std([r[m] for r in sel], ddof=1) if len(sel) > 1 else 0.0, len(sel))
                              if sel else None for m in ("uar", "macro_f1")}
        fmt = lambda c: "–" if c is None else f"{c[0]:.3f} ± {c[1]:.3f} ({c[2]})"  # noqa: E731
        print(f"| {name} | {fmt(cells['original']['uar'])} | {fmt(cells['imbalanced']['uar'])} | "
              f"{fmt(cells['original']['macro_f1'])} | {fmt(cells['imbalanced']['macro_f1'])} |")
        summary.append((name, cells))
        for variant in ("original", "imbalanced"):
            for metric in ("uar", "macro_f1"):
                c = cells[variant][metric]
                if c is not None:
                    table.append([name, variant, metric, f"{c[0]:.4f}", f"{c[1]:.4f}", c[2]])
    write_csv_atomic(os.path.join(args.out, "emodb_augmentation.csv"), ["strategy", "variant", "metric", "mean", "std", "runs"], table)
    figure = new_figure(10, 4.2)
    for p, metric in enumerate(("uar", "macro_f1")):
        axes = figure.add_subplot(1, 2, p + 1)
        x = np.arange(len(summary))
        for k, (variant, color) in enumerate((("original", "tab:blue"), ("imbalanced", "tab:orange"))):
            means = [c[variant][metric][0] if c[variant][metric] else np.nan for _, c in summary]
            stds = [c[variant][metric][1] if c[variant][metric] else 0 for _, c in summary]
            axes.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=stds, color=color, label=variant, capsize=3)
        axes.set_xticks(x, [n.split(":")[0].replace("recipe + ", "+").replace("recipe", "recipe") for n, _ in summary], rotation=20, ha="right", fontsize=8)
        axes.set_ylabel(f"test {metric} (mean ± std over seeds)")
        axes.axhline(1 / 7, color="grey", linestyle=":", linewidth=1)
        axes.set_ylim(0, 0.8)
        axes.grid(axis="y", alpha=0.3)
        if p == 0:
            axes.legend(fontsize=8)
    figure.suptitle("EmoDB speaker-independent (test 03, 08), Whisper-style encoder from scratch, 8 epochs unless noted")
    save_figure(figure, os.path.join(args.out, "emodb_augmentation.png"))


if __name__ == "__main__":
    main()
