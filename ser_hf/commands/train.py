"""`ser-hf train --config recipe.yaml [--any_argument value ...]` (also under `accelerate launch`)."""
from __future__ import annotations

import logging

from ser_hf.arguments import DataArguments, ModelArguments
from ser_hf.config_parser import parse_config
from ser_hf.training_args import SERTrainingArguments


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_args, model_args, training_args = parse_config(
        (DataArguments, ModelArguments, SERTrainingArguments), argv, prog="ser-hf train"
    )
    from accelerate import PartialState

    from ser_hf.errors import SERUserError
    from ser_hf.experiment import dump_json, train
    from ser_hf.resume import TrainingPreempted

    try:
        results = train(data_args, model_args, training_args)
    except TrainingPreempted as stopped:
        # SIGTERM (a scheduler's preemption notice): a checkpoint was saved; say how to continue.
        logging.getLogger("ser_hf.train").warning("%s", stopped)
        PartialState().destroy_process_group()
        return stopped.exit_code
    except SERUserError:  # bad data or config (the dispatcher prints it): leave the process group cleanly
        PartialState().destroy_process_group()
        raise
    if training_args.process_index == 0 and results:
        print(dump_json({"test": results}))
    # Under accelerate launch, close the process group before the interpreter exits (a process
    # group left to the interpreter's teardown can abort a rank at exit).
    PartialState().destroy_process_group()
    return 0
