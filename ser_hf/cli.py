"""The `ser-hf` console script: one subcommand per stage of the pipeline.

Each subcommand lives in ``ser_hf.commands.<name>`` with a ``main(argv) -> int`` and is imported
only when used, so ``ser-hf --help`` is fast and a broken optional dependency affects one command.

Errors for people are handled here, once for every command: a `ser_hf.errors.SERUserError` (bad
data, config or argument) or a missing file prints ``ser-hf <command>: error: <message>`` to stderr
and exits with status 2, without a traceback; ``ser-hf --debug <command> ...`` (or
``SER_HF_DEBUG=1``) re-raises it so the traceback shows.
"""
from __future__ import annotations

import importlib
import os
import sys

COMMANDS: dict[str, str] = {
    "train": "Fine-tune a speech or text model (YAML config + CLI overrides; works under accelerate launch).",
    "evaluate": "Evaluate a checkpoint on a corpus split; writes metrics JSON and a report.",
    "validate": "Check a corpus/manifest for bad rows (missing/corrupt audio, unknown labels, bad attributes).",
    "transcribe": "Fill missing transcripts with an ASR model (batched, cached, resumable).",
    "extract": "Cache pooled features of a fine-tuned model as a datasets Dataset on disk.",
    "fuse": "Train the fusion head on cached audio and text features.",
    "predict": "Run a trained model on audio files or folders (long files in windows).",
    "export": "Export a trained model to ONNX (dynamic batch/length axes, parity-checked with onnxruntime).",
    "serve": "Start a web demo (Gradio) of a speech model: upload or record audio, see its emotions.",
    "ablate": "Run a grid of training strategies over seeds and tabulate the results.",
    "cv": "Cross-validate: every fold of a protocol (leave-one-speaker/session-out, K folds) as its own run; pooled results.",
    "crosscorpus": "Train on corpus A, test on corpus B for every pair on a shared class set; matrix + heatmap.",
    "ensemble": "Combine several checkpoints (mean, majority vote or stacking) and evaluate them as one model.",
    "demo": "Run the whole pipeline on the embedded synthetic corpus with tiny models.",
    "recipes": "Copy the shipped recipe configs (recipes/) out of the installed package.",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ser-hf <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "Run `ser-hf <command> --help` for a command's options.",
              "Errors in data, config or arguments exit with status 2; `ser-hf --debug <command> ...` shows tracebacks."]
    return "\n".join(lines)


def debug_enabled() -> bool:
    return os.environ.get("SER_HF_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_enabled()
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ser-hf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if "--debug" in rest:  # also accepted after the command name
        debug, rest = True, [arg for arg in rest if arg != "--debug"]
    from ser_hf.errors import SERUserError

    try:
        module = importlib.import_module(f"ser_hf.commands.{name}")
        return int(module.main(rest) or 0)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2, message already printed); 75: preempted
        if exit_.code is None or isinstance(exit_.code, int):
            return exit_.code or 0
        print(exit_.code, file=sys.stderr)  # what the interpreter does with SystemExit("message")
        return 1
    except (SERUserError, FileNotFoundError) as error:
        if debug:
            raise
        print(f"ser-hf {name}: error: {_message(error)}", file=sys.stderr)
        print("(run `ser-hf --debug ...` or set SER_HF_DEBUG=1 for the traceback)", file=sys.stderr)
        return 2


def _message(error: BaseException) -> str:
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.strerror or 'file not found'}: {error.filename}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
