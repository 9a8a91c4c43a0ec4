"""`ser-hf serve MODEL_DIR [--host H] [--port P] [--backend auto|torch|onnx]`: the Gradio web demo (see `ser_hf.serve`)."""
from __future__ import annotations


def build_parser():
    from ser_hf.serve import build_parser

    return build_parser()


def main(argv: list[str] | None = None) -> int:
    from ser_hf.serve import main as serve

    return serve(argv)
