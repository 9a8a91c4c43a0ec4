"""`ser-hf cv --config base.yaml --folds speaker|session|K|PRESET [--grid ...] [--seeds 0,1] ...`

Runs every fold of a cross-validation protocol as its own run (one process each, resumable; with a
grid and seeds: cell x seed x fold) and writes per-fold metrics, mean ± std over folds, metrics
pooled over all folds' predictions, the pooled confusion matrix and summary.md. See `ser_hf.sweeps.cv`.

Exit status: 0 when every run started by this call succeeded, 1 when some failed, 2 when the
arguments are invalid (nothing was run), 130 when interrupted (the same command resumes).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ser_hf.commands.sweep_options import add_engine_arguments, add_run_set_arguments, engine_from_args


def _folds_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--only_folds must be comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from ser_hf.data.folds import PRESETS

    presets = "; ".join(f"{name}: {p.description}" for name, p in PRESETS.items())
    parser = argparse.ArgumentParser(
        prog="ser-hf cv",
        description="Cross-validation: train and test every fold of a protocol; per-fold, mean ± std and pooled results.",
    )
    parser.add_argument("--config", required=True, help="Base YAML config (as for ser-hf train); its splits are replaced by the folds.")
    parser.add_argument(
        "--folds", required=True,
        help=f"speaker (leave-one-speaker-out), session (leave-one-session-out), K (K speaker folds) or a preset ({presets}).",
    )
    parser.add_argument("--dev_fold", action="store_true", help="Hold out the next fold as dev (for eval_strategy/early stopping).")
    parser.add_argument("--only_folds", type=_folds_list, default=None, help="Run only these fold indices (comma-separated).")
    parser.add_argument("--grid", nargs="+", default=[], metavar="KEY=V1,V2", help="Optional grid axes (as for ser-hf ablate).")
    add_run_set_arguments(parser, default_output="cv/<config name>")
    add_engine_arguments(parser)
    parser.add_argument("--metric", default=None, help="Primary metric (default macro_f1, or ccc_mean for attributes).")
    parser.add_argument("--dry_run", action="store_true", help="Validate and list the fold runs, run nothing.")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from ser_hf.data.validation import DataValidationError
    from ser_hf.sweeps.cv import run_cv
    from ser_hf.sweeps.grid import parse_assignments

    try:
        report = run_cv(
            args.config,
            args.folds,
            grid=parse_assignments(args.grid, what="--grid"),
            seeds=args.seeds,
            output_dir=args.output_dir,
            fixed=parse_assignments(args.fixed, what="--set", multiple=False),
            dev_fold=args.dev_fold,
            only_folds=args.only_folds,
            engine=engine_from_args(args),
            metric=args.metric,
            dry_run=args.dry_run,
            command=shlex.join(["ser-hf", "cv", *argv]),
        )
    except (ValueError, FileNotFoundError, DataValidationError) as exc:
        print(f"ser-hf cv: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ser-hf cv: interrupted; rerun the same command to resume (finished folds are kept)", file=sys.stderr)
        return 130
    return 1 if report.counts.failed else 0
