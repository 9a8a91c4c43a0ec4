"""`ser-hf evaluate --model DIR --corpus NAME --data_path PATH [--split test] [--output_dir DIR]`."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ser_hf.arguments import DataArguments
from ser_hf.config_parser import parse_config


@dataclass
class EvaluateArguments:
    model: str = field(metadata={"help": "Saved ser-hf checkpoint directory."})
    split: str = field(default="test", metadata={"help": "Split to evaluate ('a+b' joins splits)."})
    output_dir: str | None = field(default=None, metadata={"help": "Where metrics.json (and the report) go."})
    batch_size: int = field(default=16, metadata={"help": "Evaluation batch size per device."})
    max_seconds: float | None = field(default=None, metadata={"help": "Crop length (default: the model's)."})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    eval_args, data_args = parse_config((EvaluateArguments, DataArguments), argv, prog="ser-hf evaluate")
    from ser_hf.experiment import dump_json, evaluate_checkpoint

    results = evaluate_checkpoint(
        eval_args.model,
        data_args,
        split=eval_args.split,
        batch_size=eval_args.batch_size,
        max_seconds=eval_args.max_seconds,
        output_dir=eval_args.output_dir,
    )
    print(dump_json(results))
    return 0
