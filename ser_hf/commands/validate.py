"""`ser-hf validate --corpus NAME --data_path PATH [--task categorical]`: check every row, report all problems."""
from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="ser-hf validate", description=__doc__)
    parser.add_argument("--config", help="a recipe YAML to take corpus, data_path, corpus_options, labels and task from")
    parser.add_argument("--corpus")
    parser.add_argument("--data_path")
    parser.add_argument("--task", choices=("categorical", "attributes", "multitask"))
    parser.add_argument("--no_audio", action="store_true", help="skip opening audio files")
    args = parser.parse_args(argv)

    from ser_hf.arguments import DataArguments
    from ser_hf.config_parser import load_yaml
    from ser_hf.data.validation import validate_dataset
    from ser_hf.experiment import corpus_labels, load_data

    values = load_yaml(args.config) if args.config else {}
    data_args = DataArguments(
        corpus=args.corpus or values.get("corpus", "synthetic"),
        data_path=args.data_path or values.get("data_path"),
        corpus_options=values.get("corpus_options"),
        labels=values.get("labels"),
    )
    task = args.task or values.get("task", "categorical")
    labels, _, attribute_range = corpus_labels(data_args)
    report = validate_dataset(
        load_data(data_args),
        labels=labels if task != "attributes" else None,
        attribute_range=attribute_range,
        require_attributes=task == "attributes",
        check_audio=not args.no_audio,
        progress=True,
    )
    if report.ok:
        print(f"OK: {report.n_rows} rows, no problems")
        return 0
    print(report.format(), file=sys.stderr)
    return 1
