"""`ser-hf ensemble --models A B C --corpus NAME --data_path PATH [--method mean|vote|stack] [--output_dir DIR]`.

Combines saved checkpoints (seeds, folds, modalities with the same labels) by averaging class
probabilities and attributes, by majority vote, or by a logistic regression stacked on a development
split (``--dev_split``), and writes the usual evaluation report (metrics.json, per-class table,
confusion matrix, predictions, submission files) for the ensemble; metrics.json also holds every
member's scores and their mean (see `ser_hf.evaluation.ensemble`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ser_hf.arguments import DataArguments
from ser_hf.config_parser import parse_config


@dataclass
class EnsembleArguments:
    models: list[str] = field(metadata={"help": "Two or more saved ser-hf checkpoint directories."})
    method: str = field(default="mean", metadata={"help": "mean (probabilities/attributes), vote (majority), stack (logistic regression on --dev_split) "
                                                        "or weights (average the checkpoints' weights, e.g. the last k of one run; saved to output_dir/averaged_model)."})
    split: str = field(default="test", metadata={"help": "Split to evaluate."})
    dev_split: str | None = field(default=None, metadata={"help": "Split the stacker is fitted on (method stack)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where the ensemble's report goes."})
    batch_size: int = field(default=16, metadata={"help": "Evaluation batch size."})
    max_seconds: float | None = field(default=None, metadata={"help": "Crop length (default: each model's)."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Bootstrap resamples for the 95%% intervals (0: none)."})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args, data_args = parse_config((EnsembleArguments, DataArguments), argv, prog="ser-hf ensemble", ignore_extra_keys=True)
    from ser_hf.commands.evaluate import summary
    from ser_hf.evaluation.ensemble import evaluate_ensemble
    from ser_hf.experiment import dump_json

    results = evaluate_ensemble(
        args.models, data_args, method=args.method, split=args.split, dev_split=args.dev_split, batch_size=args.batch_size,
        max_seconds=args.max_seconds, output_dir=args.output_dir, bootstrap_resamples=args.bootstrap_resamples,
    )
    shown = summary(results)
    if "member_mean" in results:
        shown["member_mean"] = results["member_mean"]
    print(dump_json(shown))
    return 0
