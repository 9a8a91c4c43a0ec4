"""`ser-hf validate --config recipe.yaml [any train option ...]`: check exactly what `train` would read.

Takes the same config and options as `ser-hf train` (parsed by the same code, so they cannot
drift) and runs the same checks train runs before building a model: options (task, modality,
splits, label set, attribute range), then every row of the splits the run reads, all problems at
once, each named by file and line. It also decodes every audio file once (``--scan_audio false``
skips that) to warn about silent or clipped recordings. Exit status: 0 when train would start
(warnings may be printed), 2 with the list of problems otherwise. Nothing is written.
"""
from __future__ import annotations

import logging


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ser_hf.arguments import DataArguments, ModelArguments
    from ser_hf.config_parser import parse_config
    from ser_hf.training_args import SERTrainingArguments

    data_args, model_args, training_args = parse_config(
        (DataArguments, ModelArguments, SERTrainingArguments),
        argv,
        prog="ser-hf validate",
        defaults={"scan_audio": True},
        description=__doc__,
    )
    from ser_hf.experiment import check_training_data

    checked = check_training_data(data_args, model_args, training_args, progress=True)
    report = checked.report
    if report.warnings:
        print(report.format_warnings())
    n_used = sum(len(ds) for ds in checked.corpus.values())
    if checked.dropped:
        print(
            f"OK with --on_invalid_rows drop: {n_used} rows usable; train would drop {len(checked.dropped)} "
            f"bad rows:\n" + "\n".join(f"  {p}" for p in checked.dropped)
        )
    else:
        print(f"OK: {n_used} rows in splits {', '.join(checked.corpus)}; no problems")
    return 0
