#!/usr/bin/env python
"""The IEMOCAP recipe: speech, text and fusion on the 4-class task, 5-fold leave-one-session-out.

    python recipes/iemocap/run.py --iemocap_root /data/IEMOCAP_full_release --output_dir runs/iemocap

Stages (each resumable; rerunning the same command continues where it stopped):

1. ``speech``  ``ser-hf cv --config speech.yaml --folds iemocap_loso``: one WavLM model per fold.
2. ``text``    ``ser-hf cv --config text.yaml --folds iemocap_loso``: one RoBERTa model per fold.
3. ``fusion``  per fold: ``ser-hf extract`` of that fold's speech and text models on the fold's
               train and test sessions, then ``ser-hf fuse`` (a Mish head on the frozen pooled
               features), tested on the held-out session.

Results: ``<output_dir>/speech/summary.md`` and ``text/summary.md`` (per fold, mean ± std, pooled,
pooled confusion matrix) and ``fusion/summary.md`` (per fold and mean ± std over folds).

``--overrides FILE.yaml`` with ``{speech: {...}, text: {...}, fusion: {...}}`` changes stage
settings (written to ``<output_dir>/configs/<stage>.yaml``, so a run is reproducible from its
folder); ``--dry_run`` prints the commands without running them.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
STAGES = ("speech", "text", "fusion")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iemocap_root", required=True, help="IEMOCAP_full_release folder (Session1..5).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--stages", default=",".join(STAGES), help="Comma-separated subset of speech,text,fusion.")
    parser.add_argument("--folds", default="iemocap_loso", help="Fold protocol (default: 5-fold leave-one-session-out).")
    parser.add_argument("--overrides", default=None, help="YAML {speech|text|fusion: {key: value}} applied to the stage configs.")
    parser.add_argument("--devices", default="auto", help="Passed to ser-hf cv.")
    parser.add_argument("--dry_run", action="store_true", help="Print the commands, run nothing.")
    return parser.parse_args(argv)


def stage_configs(args) -> dict[str, str]:
    """Write each stage's YAML with the run's data path and overrides to <output_dir>/configs/."""
    overrides = {}
    if args.overrides:
        with open(args.overrides, encoding="utf-8") as handle:
            overrides = yaml.safe_load(handle) or {}
        unknown = sorted(set(overrides) - set(STAGES))
        if unknown:
            raise SystemExit(f"{args.overrides}: unknown stages {unknown} (use {list(STAGES)})")
    paths = {}
    for stage in STAGES:
        with open(os.path.join(HERE, f"{stage}.yaml"), encoding="utf-8") as handle:
            config = yaml.safe_load(handle)
        if stage != "fusion":
            config["data_path"] = os.path.abspath(args.iemocap_root)
        config.update(overrides.get(stage) or {})
        paths[stage] = os.path.join(args.output_dir, "configs", f"{stage}.yaml")
        os.makedirs(os.path.dirname(paths[stage]), exist_ok=True)
        with open(paths[stage], "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)
    return paths


def run(command: list[str], dry_run: bool) -> None:
    print("+ " + shlex.join(command), flush=True)
    if not dry_run:
        subprocess.run(command, check=True)


def ser_hf(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "ser_hf.cli", *arguments]


def fold_dirs(cv_dir: str) -> list[str]:
    """Fold run folders of a finished `ser-hf cv` (from its plan, in fold order)."""
    with open(os.path.join(cv_dir, "cv.json"), encoding="utf-8") as handle:
        return list(json.load(handle)["runs"])


def fusion_summary(folder: str, folds: list[str], fold_names: list[str]) -> str:
    lines = ["# IEMOCAP fusion, per fold", "", "| fold | held out | macro-F1 | UAR | accuracy |", "|---|---|---|---|---|"]
    scores: dict[str, list[float]] = {"macro_f1": [], "uar": [], "accuracy": []}
    for k, fold_dir in enumerate(folds):
        with open(os.path.join(fold_dir, "test_metrics.json"), encoding="utf-8") as handle:
            metrics = json.load(handle)
        for name in scores:
            scores[name].append(float(metrics[name]))
        lines.append(f"| {k} | {fold_names[k]} | {metrics['macro_f1']:.3f} | {metrics['uar']:.3f} | {metrics['accuracy']:.3f} |")

    def mean_std(values):
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else float("nan")
        return f"{mean:.3f} ± {std:.3f}"

    lines.append(f"| mean ± std | | {mean_std(scores['macro_f1'])} | {mean_std(scores['uar'])} | {mean_std(scores['accuracy'])} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(folder, "summary.md"), "w", encoding="utf-8") as handle:
        handle.write(text)
    return text


def main(argv=None) -> int:
    args = parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = sorted(set(stages) - set(STAGES))
    if bad:
        raise SystemExit(f"unknown stages {bad}; choose from {list(STAGES)}")
    configs = stage_configs(args)
    out = {stage: os.path.join(args.output_dir, stage) for stage in STAGES}
    for stage in ("speech", "text"):
        if stage in stages:
            run(ser_hf("cv", "--config", configs[stage], "--folds", args.folds, "--output_dir", out[stage],
                       "--devices", args.devices), args.dry_run)  # fmt: skip
    if "fusion" not in stages:
        return 0
    if args.dry_run and not os.path.isfile(os.path.join(out["speech"], "cv.json")):
        print("(fusion runs per fold once the speech and text stages have finished)")
        return 0
    speech_folds, text_folds = fold_dirs(out["speech"]), fold_dirs(out["text"])
    with open(os.path.join(out["speech"], "cv.json"), encoding="utf-8") as handle:
        plan = json.load(handle)
    with open(configs["speech"], encoding="utf-8") as handle:
        speech_config = yaml.safe_load(handle)
    data = ["--corpus", "iemocap", "--data_path", speech_config["data_path"], "--cv_folds", str(plan["folds"]),
            "--validate_audio", "false"]  # fmt: skip
    if speech_config.get("corpus_options"):
        data += ["--corpus_options", json.dumps(speech_config["corpus_options"])]
    fused = []
    for k, (speech_dir, text_dir) in enumerate(zip(speech_folds, text_folds)):
        fold_out = os.path.join(out["fusion"], f"fold{k}")
        fused.append(fold_out)
        if os.path.isfile(os.path.join(fold_out, "test_metrics.json")):
            print(f"fusion fold {k}: done", flush=True)
            continue
        features = {}
        for name, model in (("speech", speech_dir), ("text", text_dir)):
            features[name] = os.path.join(out["fusion"], "features", name, f"fold{k}")
            run(ser_hf("extract", "--model", model, *data, "--cv_fold", str(k), "--split", "train+test",
                       "--output_dir", features[name]), args.dry_run)  # fmt: skip
        run(ser_hf("fuse", "--config", configs["fusion"], "--audio_features", features["speech"],
                   "--text_features", features["text"], "--output_dir", fold_out), args.dry_run)  # fmt: skip
    if not args.dry_run:
        print(fusion_summary(out["fusion"], fused, plan["fold_names"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
