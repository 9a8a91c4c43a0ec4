"""Command-line options shared by the commands that run on the sweep engine (`ablate`, `cv`,
`crosscorpus`), so the three spell each engine flag, its default and its help the same way."""
from __future__ import annotations

import argparse


def seeds_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds must be comma-separated integers, got {text!r}") from None


def add_run_set_arguments(parser: argparse.ArgumentParser, *, default_output: str) -> None:
    """--set, --seeds and --output_dir: what every run of the sweep shares and where it goes."""
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", dest="fixed",
        help="Values for every run on top of the base config (the value is taken whole, commas included).",
    )
    parser.add_argument("--seeds", type=seeds_list, default=None, help="Comma-separated seeds (default: the config's seed).")
    parser.add_argument("--output_dir", default=None, help=f"Sweep folder (default: {default_output}).")


def add_engine_arguments(parser: argparse.ArgumentParser, *, partial_runs: bool = True) -> None:
    """How the engine places and starts runs; ``partial_runs`` adds --max_runs and --no_retry_failed."""
    parser.add_argument(
        "--devices", default="auto",
        help="auto (every visible GPU, else cpu), cpu, or comma-separated GPU ids, one CUDA_VISIBLE_DEVICES per run.",
    )
    parser.add_argument("--jobs", type=int, default=None, help="Runs at a time (default: one per device; 1 on CPU).")
    parser.add_argument(
        "--launcher", choices=("auto", "fork", "subprocess"), default="auto",
        help="fork: children of a preloaded fork server (CPU, saves import time); subprocess: fresh interpreters "
        "(used with GPUs). auto picks.",
    )
    if partial_runs:
        parser.add_argument("--max_runs", type=int, default=None, help="Run at most this many unfinished runs, then stop.")
    parser.add_argument("--run_timeout", type=float, default=None, help="Seconds after which a run is killed and marked failed.")
    if partial_runs:
        parser.add_argument("--no_retry_failed", action="store_true", help="Keep recorded failures instead of rerunning them.")


def engine_from_args(args: argparse.Namespace):
    """The ``SweepEngine`` the parsed engine flags describe; progress lines go to stdout as they happen."""
    from ser_hf.sweeps.runner import SweepEngine

    return SweepEngine(
        devices=args.devices,
        jobs=args.jobs,
        launcher=args.launcher,
        max_runs=getattr(args, "max_runs", None),
        run_timeout=args.run_timeout,
        retry_failed=not getattr(args, "no_retry_failed", False),
        progress=lambda line: print(line, flush=True),
    )
