"""`ser-hf predict MODEL PATH... [--output_dir DIR] [--window_seconds S] [--hop_seconds S] ...`, or
`ser-hf predict PATH... --models A B C [--ensemble_method mean|vote]` for an ensemble of checkpoints.

Positional paths (files and folders) do not fit the YAML/dataclass parser of the training commands,
so this command uses argparse; every option maps to an argument of `ser_hf.inference.predict`.
"""
from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser-hf predict",
        description="Predict emotions for audio files or folders (long recordings in overlapping windows). "
        "Writes windows.csv, files.csv, predictions.json and timeline plots to --output_dir, published as one set; "
        "finished files are journaled as they complete, so an interrupted run restarted with the same options resumes.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="MODEL PATH",
        help="Saved ser-hf checkpoint folder (speech, text, joint or fusion model), then audio files or folders "
        "(searched recursively for wav/flac/ogg/mp3). With --models: only the audio paths.",
    )
    parser.add_argument(
        "--models", nargs="+", default=None,
        help="An ensemble instead of one MODEL: two or more checkpoint folders predicting the same classes/attributes "
        "(seeds, folds). Put it after the audio paths, or end it with --.",
    )
    parser.add_argument(
        "--ensemble_method", choices=("mean", "vote"), default="mean",
        help="With --models: mean of class probabilities and attributes, or majority vote (the probabilities written "
        "are then the vote shares; attributes are averaged).",
    )
    parser.add_argument("--output_dir", default="predictions", help="Where results go (default: ./predictions).")
    parser.add_argument("--window_seconds", type=float, default=None, help="Window length (default: the model's crop length).")
    parser.add_argument("--hop_seconds", type=float, default=None, help="Step between windows (default: half a window).")
    parser.add_argument("--batch_size", type=int, default=8, help="Windows per forward pass.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available).")
    parser.add_argument("--transcripts", default=None, help="Models that read text: CSV/JSON of id -> transcript.")
    parser.add_argument("--asr_model", default=None, help="Models that read text: ASR model to transcribe each window.")
    parser.add_argument("--speech_model", default=None, help="Fusion heads: the fine-tuned speech model of the audio features.")
    parser.add_argument("--text_model", default=None, help="Fusion heads: the fine-tuned text model of the text features.")
    parser.add_argument(
        "--backend", choices=("auto", "torch", "onnx"), default="auto",
        help="torch, or onnx for a folder written by `ser-hf export` (run with onnxruntime); auto picks by the folder.",
    )
    parser.add_argument(
        "--num_workers", type=int, default=None,
        help="Processes decoding and feature-extracting batches of short files while the model runs "
        "(default: one per spare core, at most 4; 0: decode in the main process).",
    )
    parser.add_argument(
        "--no_resume", action="store_true",
        help="Ignore the journal of an interrupted run in --output_dir and start again (default: resume, skipping finished files).",
    )
    parser.add_argument("--no_timeline", action="store_true", help="Do not draw timeline plots for long files.")
    parser.add_argument(
        "--same_speaker", action="store_true",
        help="The files are one speaker's recordings: a model trained with input_normalization: speaker normalises "
        "them by their pooled statistics (default: its training population's).",
    )
    parser.add_argument(
        "--on_error", choices=("raise", "skip"), default="raise",
        help="Unreadable files: stop (raise), or report them in predictions.json, continue, and exit with status 1 (skip).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.models:
        args.model, args.paths = list(args.models), args.inputs
        if len(args.model) < 2:
            parser.error("--models needs two or more checkpoint folders (one model: give it as MODEL)")
    else:
        if len(args.inputs) < 2:
            parser.error("give a MODEL folder and at least one audio PATH (or --models A B ... and the paths)")
        args.model, args.paths = args.inputs[0], args.inputs[1:]
    from ser_hf.inference import predict

    results = predict(
        args.model,
        args.paths,
        window_seconds=args.window_seconds,
        hop_seconds=args.hop_seconds,
        batch_size=args.batch_size,
        device=args.device,
        transcripts=args.transcripts,
        asr_model=args.asr_model,
        speech_model=args.speech_model,
        text_model=args.text_model,
        output_dir=args.output_dir,
        timeline=not args.no_timeline,
        on_error=args.on_error,
        backend=args.backend,
        num_workers=args.num_workers,
        resume=not args.no_resume,
        ensemble_method=args.ensemble_method,
        same_speaker=args.same_speaker,
    )
    for row in results.files:
        summary = [f"{row['duration']:.1f}s", f"{row['num_windows']} window(s)"]
        if "label" in row:
            summary.append(f"{row['label']} ({row['probabilities'][row['label']]:.2f})")
        summary += [f"{name}={value:.2f}" for name, value in row.get("attributes", {}).items()]
        print(f"{row['file']}: " + ", ".join(summary))
    for error in results.errors:
        print(f"skipped {error['error']}", file=sys.stderr)
    print(f"results in {args.output_dir}")
    return 1 if results.errors else 0
