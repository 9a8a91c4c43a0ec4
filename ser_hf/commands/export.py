"""`ser-hf export MODEL_DIR --format onnx --output_dir DIR [--quantize] [--opset N]`.

Writes a self-contained ONNX folder (graph, config with labels, processor files, export record);
`ser-hf predict --backend onnx` and `ser_hf.inference.predict(..., backend="onnx")` run it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

FORMATS = ("onnx",)


def build_parser() -> argparse.ArgumentParser:
    from ser_hf.export.onnx import DEFAULT_OPSET, PARITY_TOLERANCE

    parser = argparse.ArgumentParser(
        prog="ser-hf export",
        description="Export a trained ser-hf model (speech, text, joint or fusion; LoRA adapters merged) to ONNX "
        "with dynamic batch and length axes. The export is checked against PyTorch with onnxruntime on a padded "
        "batch of mixed lengths and refused if any output differs by more than --tolerance.",
    )
    parser.add_argument("model", help="Saved ser-hf checkpoint folder (full or LoRA adapter checkpoint).")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="Export format (default: onnx).")
    parser.add_argument("--output_dir", required=True, help="Folder for model.onnx, config.json, processor files and onnx_export.json.")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default: {DEFAULT_OPSET}).")
    parser.add_argument("--quantize", action="store_true", help="Also write model.int8.onnx (onnxruntime dynamic int8 quantisation).")
    parser.add_argument(
        "--tolerance", type=float, default=PARITY_TOLERANCE,
        help=f"Largest accepted |onnxruntime - torch| on any output (default: {PARITY_TOLERANCE:g}).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("ser-hf export: needs onnx and onnxruntime (pip install 'ser-hf[onnx]')", file=sys.stderr)
        return 2
    from ser_hf.export.onnx import export_onnx

    record = export_onnx(args.model, args.output_dir, opset=args.opset, quantize=args.quantize, tolerance=args.tolerance)
    print(json.dumps({k: record[k] for k in ("kind", "inputs", "outputs", "parity_max_abs_diff")}, indent=2))
    print(f"exported to {args.output_dir}")
    return 0
