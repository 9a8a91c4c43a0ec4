"""The `ser-hf` console script: one subcommand per stage of the pipeline.

Each subcommand lives in ``ser_hf.commands.<name>`` with a ``main(argv) -> int`` and is imported
only when used, so ``ser-hf --help`` is fast and a broken optional dependency affects one command.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, str] = {
    "train": "Fine-tune a speech or text model (YAML config + CLI overrides; works under accelerate launch).",
    "evaluate": "Evaluate a checkpoint on a corpus split; writes metrics JSON and a report.",
    "validate": "Check a corpus/manifest for bad rows (missing/corrupt audio, unknown labels, bad attributes).",
    "transcribe": "Fill missing transcripts with an ASR model (batched, cached, resumable).",
    "extract": "Cache pooled features of a fine-tuned model as a datasets Dataset on disk.",
    "fuse": "Train the fusion head on cached audio and text features.",
    "predict": "Run a trained model on audio files or folders (long files in windows).",
    "ablate": "Run a grid of training strategies over seeds and tabulate the results.",
    "demo": "Run the whole pipeline on the embedded synthetic corpus with tiny models.",
    "recipes": "Copy the shipped recipe configs (recipes/) out of the installed package.",
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: ser-hf <command> [options]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    lines += ["", "Run `ser-hf <command> --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ser-hf: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"ser_hf.commands.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
