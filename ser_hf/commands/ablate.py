"""`ser-hf ablate --config base.yaml --grid loss=ce,focal sampler=none,up [--seeds 0,1,2] ...`

Runs every grid combination x seed (each in its own process, resumable) and writes results.csv,
summary.csv, summary.md and summary.png to --output_dir. See `ser_hf.sweeps.ablation`.

Exit status: 0 when every run started by this call succeeded, 1 when some failed (they are listed in
the tables; rerunning retries them), 2 when the arguments are invalid (nothing was run).
"""
from __future__ import annotations

import argparse
import shlex
import sys

from ser_hf.commands.sweep_options import add_engine_arguments, add_run_set_arguments, engine_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-hf ablate",
        description="Train every combination of a grid of settings over seeds; tabulate mean ± std and plot it.",
    )
    parser.add_argument("--config", required=True, help="Base YAML config (as for ser-hf train).")
    parser.add_argument(
        "--grid", nargs="+", required=True, metavar="KEY=V1,V2",
        help="Grid axes: any DataArguments/ModelArguments/SERTrainingArguments field with comma-separated values.",
    )
    add_run_set_arguments(parser, default_output="ablations/<config name>")
    add_engine_arguments(parser)
    parser.add_argument("--metric", default=None, help="Primary metric (default macro_f1, or ccc_mean for attributes).")
    parser.add_argument("--compare", default=None, help="Grid key shown side by side: one table column and bar series per value.")
    parser.add_argument("--dry_run", action="store_true", help="Validate and list the runs, run nothing, write the tables.")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from ser_hf.sweeps.ablation import run_ablation
    from ser_hf.sweeps.grid import parse_assignments

    try:
        grid = parse_assignments(args.grid, what="--grid")
        fixed = {k: v for k, v in parse_assignments(args.fixed, what="--set", multiple=False).items()}
        report = run_ablation(
            args.config,
            grid,
            seeds=args.seeds,
            output_dir=args.output_dir,
            fixed=fixed,
            engine=engine_from_args(args),
            metric=args.metric,
            compare=args.compare,
            dry_run=args.dry_run,
            command=shlex.join(["ser-hf", "ablate", *argv]),
        )
    except ValueError as exc:
        print(f"ser-hf ablate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C or kill: finished runs are kept, the same command resumes
        print("ser-hf ablate: interrupted", file=sys.stderr)
        return 130
    return 1 if report.counts.failed else 0
