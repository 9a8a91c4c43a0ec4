"""`ser-hf crosscorpus --config base.yaml --corpora emodb=/data/emodb iemocap=/data/IEMOCAP [...]`

Trains one model per corpus on a shared class set (``--label_map shared``: neutral, happy, angry,
sad; other classes dropped and counted) and tests each on every corpus's test split: a
train-on-A / test-on-B matrix written as matrix.md, matrix.csv and a heatmap matrix.png. Each
training is a resumable run of the sweep engine. See `ser_hf.sweeps.crosscorpus`.

Per-corpus settings beyond a path (corpus_options, train_split, test_split) go in a YAML file given
with ``--corpora_file`` (``{name: {data_path: ..., corpus_options: {...}, train_split: train+dev}}``).
Exit status: 0 ok, 1 some runs failed, 2 invalid arguments, 130 interrupted (the same command resumes).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ser_hf.commands.sweep_options import add_engine_arguments, add_run_set_arguments, engine_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ser-hf crosscorpus", description="Train on corpus A, test on corpus B, for every pair.")
    parser.add_argument("--config", required=True, help="Base YAML config (model and training settings; corpus keys are set per corpus).")
    parser.add_argument("--corpora", nargs="+", default=[], metavar="NAME[=PATH]", help="Corpora and their folders (emodb=/data/emodb synthetic).")
    parser.add_argument("--corpora_file", default=None, help="YAML mapping name -> {data_path, corpus_options, train_split, test_split, corpus}.")
    parser.add_argument("--label_map", default="shared", help="Shared class set: 'shared' (neutral, happy, angry, sad) or a YAML label map.")
    add_run_set_arguments(parser, default_output="crosscorpus/<corpora>")
    parser.add_argument("--metric", default="macro_f1", help="Metric of the heatmap (macro_f1, uar or accuracy).")
    add_engine_arguments(parser, partial_runs=False)
    parser.add_argument("--dry_run", action="store_true", help="Validate and list the runs, run nothing.")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from ser_hf.config_parser import load_yaml
    from ser_hf.data.validation import DataValidationError
    from ser_hf.sweeps.crosscorpus import parse_corpora, run_crosscorpus
    from ser_hf.sweeps.grid import parse_assignments

    try:
        corpora = parse_corpora(args.corpora)
        if args.corpora_file:
            extra = load_yaml(args.corpora_file)
            if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
                raise ValueError(f"{args.corpora_file}: expected a mapping name -> settings mapping")
            for name, settings in extra.items():
                corpora[name] = {**corpora.get(name, {}), **settings}
        report = run_crosscorpus(
            args.config, corpora, label_map=args.label_map, seeds=args.seeds, output_dir=args.output_dir,
            fixed=parse_assignments(args.fixed, what="--set", multiple=False), engine=engine_from_args(args),
            metric=args.metric, dry_run=args.dry_run, command=shlex.join(["ser-hf", "crosscorpus", *argv]),
        )  # fmt: skip
    except (ValueError, FileNotFoundError, DataValidationError) as exc:
        print(f"ser-hf crosscorpus: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-hf crosscorpus: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 1 if report.counts.failed else 0
