"""Tabulate the issue-13 EmoDB strategy sweeps (docs/emodb_augmentation.md): mean ± std of UAR and
macro-F1 per strategy and data variant over seeds, a bar chart, and the per-run CSV (with each run's
training CPU seconds where the run recorded them).

    python benchmarks/emodb_strategies_summary.py --runs /work/runs --out docs             # round 1 (8 epochs)
    python benchmarks/emodb_strategies_summary.py --runs /work/runs --out docs --round 2   # round 2 (16 epochs)
    python benchmarks/emodb_strategies_summary.py --runs /work/runs4 --out docs --round 3  # round 3 (speaker normalisation)

Round 3 reads round 2's baseline sweeps from the same root (links to them are fine).
"""
from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np

# sweep folder -> strategy shown in the table, per round of measurements
ROUNDS = {
    1: {
        "strategies_plain": "plain: CE, mean pooling, no sampler",
        "strategies_default": "recipe: focal + up + Mish + ASP",
        "strategies_augment_only": "recipe + augment (waveform+specaugment)",
        "strategies_mixup_only": "recipe + manifold mixup",
        "strategies_combo": "recipe + augment + manifold mixup",
        "strategies_plain_augmix": "plain + augment + manifold mixup",
        "strategies_combo16": "recipe + augment + manifold mixup, 16 epochs",
        "strategies_overlap/mixing-input": "recipe + augment + input mixup",
        "strategies_overlap/mixing-overlap": "recipe + augment + overlap mixing",
    },
    2: {
        "r2_plain_cos16": "plain",
        "r2_default_cos16": "recipe + augment + manifold mixup",
        "r2_plain_cos16_norm": "plain + utterance normalisation",
        "r2_plain_avg8": "plain + average last 8 epochs",
        "r2_default_avg8": "recipe + augment + manifold mixup + average last 8",
        "r2_plain_augmix_avg8": "plain + augment + manifold mixup + average last 8",
        "r2_lite_avg8": "CE + mean + up + augment + average last 8",
        "r2_plain32_avg16": "plain, 32 epochs + average last 16",
    },
    3: {
        "r2_plain_cos16": "plain (round 2)",
        "r2_plain_avg8": "plain + average last 8 (round 2)",
        "r2_lite_avg8": "lite: up + augment + average last 8 (round 2 default)",
        "plain_avg8_stats": "plain + average last 8 + statistics pooling",
        "plain_avg8_lw": "plain + average last 8 + weighted sum of layers",
        "L1_stats": "1 encoder layer + statistics pooling + average last 8",
        "L0_stats": "conv front end only + statistics pooling + average last 8",
        "L0_stats_spk": "conv front end only + statistics pooling + average last 8 + speaker norm.",
        "R_plain_avg8_spk": "plain + average last 8 + speaker normalisation",
        "R_lite_spk": "lite + speaker normalisation (new default)",
    },
}
TITLES = {
    1: "EmoDB speaker-independent (test 03, 08), Whisper-style encoder from scratch, 8 epochs unless noted",
    2: "EmoDB speaker-independent (test 03, 08), Whisper-style encoder from scratch, 16 epochs, cosine decay",
    3: "EmoDB speaker-independent (test 03, 08), from scratch, 16 epochs cosine: pooling, depth, speaker normalisation",
}
SWEEPS = ROUNDS[1]


def collect(root: str, sweeps: dict[str, str] = SWEEPS) -> list[dict]:
    runs = []
    for sweep, name in sweeps.items():
        folder, _, cell = sweep.partition("/")
        for path in sorted(glob.glob(os.path.join(root, folder, "runs", cell or "*", "seed*", "test_metrics.json"))):
            metrics = json.load(open(path))
            cell = os.path.basename(os.path.dirname(os.path.dirname(path)))
            variant = "imbalanced" if "imbalance-F" in cell else "original"
            seed = int(os.path.basename(os.path.dirname(path)).removeprefix("seed"))
            train_metrics = os.path.join(os.path.dirname(path), "train_metrics.json")
            cpu = json.load(open(train_metrics)).get("train_cpu_seconds") if os.path.exists(train_metrics) else None
            runs.append({"strategy": name, "sweep": sweep, "variant": variant, "seed": seed, "uar": metrics["uar"],
                         "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"], "cpu_seconds": cpu,
                         "run": os.path.dirname(path)})
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", default="/work/runs")
    parser.add_argument("--out", default="docs")
    parser.add_argument("--round", type=int, choices=sorted(ROUNDS), default=1)
    args = parser.parse_args()
    sweeps = ROUNDS[args.round]
    stem = "emodb_augmentation" if args.round == 1 else f"emodb_augmentation_r{args.round}"
    from ser_hf.io import write_csv_atomic
    from ser_hf.plotting import new_figure, save_figure

    runs = collect(args.runs, sweeps)
    write_csv_atomic(os.path.join(args.out, f"{stem}_runs.csv"), ["strategy", "variant", "seed", "uar", "macro_f1", "accuracy", "train_cpu_seconds"],
                     [[r["strategy"], r["variant"], r["seed"], f"{r['uar']:.4f}", f"{r['macro_f1']:.4f}", f"{r['accuracy']:.4f}",
                       "" if r["cpu_seconds"] is None else r["cpu_seconds"]] for r in runs])
    table, summary = [], []
    print("| strategy | UAR original | UAR imbalanced | macro-F1 original | macro-F1 imbalanced |")
    print("|---|---|---|---|---|")
    for name in sweeps.values():
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
    write_csv_atomic(os.path.join(args.out, f"{stem}.csv"), ["strategy", "variant", "metric", "mean", "std", "runs"], table)
    figure = new_figure(10, 4.2) if args.round < 3 else new_figure(13, 5.5)
    for p, metric in enumerate(("uar", "macro_f1")):
        axes = figure.add_subplot(1, 2, p + 1)
        x = np.arange(len(summary))
        variants = [(v, c) for v, c in (("original", "tab:blue"), ("imbalanced", "tab:orange")) if any(cell[v][metric] for _, cell in summary)]
        width = 0.76 / len(variants)
        for k, (variant, color) in enumerate(variants):
            means = [c[variant][metric][0] if c[variant][metric] else np.nan for _, c in summary]
            stds = [c[variant][metric][1] if c[variant][metric] else 0 for _, c in summary]
            axes.bar(x + (k - (len(variants) - 1) / 2) * width, means, width, yerr=stds, color=color, label=variant, capsize=3)
        names = [n.split(":")[0] if args.round == 1 else n for n, _ in summary]
        if args.round == 1:
            names = [n.replace("recipe + ", "+") for n in names]
        axes.set_xticks(x, names, rotation=25, ha="right", fontsize=7)
        axes.set_ylabel(f"test {metric} (mean ± std over seeds)")
        axes.axhline(1 / 7, color="grey", linestyle=":", linewidth=1)
        axes.set_ylim(0, 0.8)
        axes.grid(axis="y", alpha=0.3)
        if p == 0:
            axes.legend(fontsize=8)
    figure.suptitle(TITLES[args.round])
    save_figure(figure, os.path.join(args.out, f"{stem}.png"))


if __name__ == "__main__":
    main()
