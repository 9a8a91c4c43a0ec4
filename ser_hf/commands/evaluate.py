"""`ser-hf evaluate --model DIR --corpus NAME --data_path PATH [--split test] [--output_dir DIR]`; an ensemble
with `--models A B C [--ensemble_method mean|vote|stack]` (the report is the ensemble's, as `ser-hf ensemble`).

With ``--output_dir`` the evaluation report is written there (metrics.json, per-class table,
confusion matrix, attribute scatters, per-gender/per-speaker metrics, bootstrap intervals,
predictions and challenge submission CSVs; see `ser_hf.evaluation.report`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ser_hf.arguments import DataArguments
from ser_hf.config_parser import parse_config
from ser_hf.errors import ConfigError


@dataclass
class EvaluateArguments:
    model: str | None = field(default=None, metadata={"help": "Saved ser-hf checkpoint directory."})
    models: list[str] | None = field(
        default=None,
        metadata={"help": "An ensemble instead of --model: two or more checkpoint directories (seeds, folds) predicting "
                          "the same classes/attributes; the report is the ensemble's, metrics.json adds each member's scores."},
    )
    ensemble_method: str = field(
        default="mean",
        metadata={"help": "With --models: mean (probabilities/attributes), vote (majority) or stack (logistic regression "
                          "fitted on --ensemble_dev_split); see ser_hf.evaluation.ensemble."},
    )
    ensemble_dev_split: str | None = field(default=None, metadata={"help": "With --ensemble_method stack: the split it is fitted on."})
    split: str = field(default="test", metadata={"help": "Split to evaluate ('a+b' joins splits)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where metrics.json (and the report) go."})
    batch_size: int = field(default=16, metadata={"help": "Evaluation batch size per device."})
    max_seconds: float | None = field(default=None, metadata={"help": "Crop length (default: the model's)."})
    report: bool = field(default=True, metadata={"help": "Write the full report beside metrics.json (needs output_dir)."})
    bootstrap_resamples: int = field(
        default=1000, metadata={"help": "Bootstrap resamples for the 95%% intervals (0: no intervals)."}
    )
    perturb: list[str] | None = field(
        default=None,
        metadata={
            "help": "Robustness report instead of one evaluation: degradations with severities, e.g. "
            "noise:20,10,0 reverb:0.3,0.6,1.0 band_limit:4000,2000,1000 (speed, gain too); writes robustness.csv/png "
            "to output_dir (see ser_hf.evaluation.robustness)."
        },
    )


def summary(results: dict) -> dict:
    """The scalar metrics of a report and their intervals (what the console shows; the files hold the rest)."""
    shown = {key: value for key, value in results.items() if isinstance(value, (int, float, str)) and key != "task"}
    for key, interval in results.get("confidence_intervals", {}).items():
        if isinstance(interval, dict):
            shown[f"{key}_ci{round(100 * results['confidence_intervals']['level'])}"] = [interval["low"], interval["high"]]
    return shown


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    eval_args, data_args = parse_config(
        (EvaluateArguments, DataArguments), argv, prog="ser-hf evaluate", ignore_extra_keys=True
    )
    if eval_args.bootstrap_resamples < 0:
        raise ConfigError(f"bootstrap_resamples must be >= 0, got {eval_args.bootstrap_resamples}")
    if (eval_args.model is None) == (not eval_args.models):
        raise ConfigError("give exactly one of --model DIR or --models DIR DIR ... (an ensemble)")
    from ser_hf.experiment import dump_json, evaluate_checkpoint

    if eval_args.models:
        if eval_args.perturb:
            raise ConfigError("--perturb scores one model: give --model (or run it for each member)")
        if eval_args.ensemble_method not in ("mean", "vote", "stack"):
            raise ConfigError(f"--ensemble_method must be mean, vote or stack, got {eval_args.ensemble_method!r}")
        if len(eval_args.models) < 2:
            raise ConfigError("--models needs two or more checkpoint directories (one model: --model)")
        from ser_hf.evaluation.ensemble import evaluate_ensemble

        results = evaluate_ensemble(
            eval_args.models, data_args, method=eval_args.ensemble_method, split=eval_args.split,
            dev_split=eval_args.ensemble_dev_split, batch_size=eval_args.batch_size, max_seconds=eval_args.max_seconds,
            output_dir=eval_args.output_dir if eval_args.report else None, bootstrap_resamples=eval_args.bootstrap_resamples,
        )
        if eval_args.output_dir and not eval_args.report:
            import os

            from ser_hf.io import write_json_atomic

            write_json_atomic(os.path.join(eval_args.output_dir, "metrics.json"), results)
        shown = summary(results)
        shown["member_mean"] = results["member_mean"]
        print(dump_json(shown))
        return 0

    if eval_args.perturb:
        from ser_hf.evaluation.robustness import robustness_report

        if not eval_args.output_dir:
            raise ValueError("--perturb writes robustness.csv/png: give --output_dir")
        result = robustness_report(
            eval_args.model, data_args, eval_args.perturb, split=eval_args.split, batch_size=eval_args.batch_size,
            max_seconds=eval_args.max_seconds, output_dir=eval_args.output_dir,
        )
        print(dump_json(result["conditions"]))
        return 0
    results = evaluate_checkpoint(
        eval_args.model,
        data_args,
        split=eval_args.split,
        batch_size=eval_args.batch_size,
        max_seconds=eval_args.max_seconds,
        output_dir=eval_args.output_dir,
        report=eval_args.report,
        bootstrap_resamples=eval_args.bootstrap_resamples,
    )
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(dump_json(summary(results)))
    return 0
