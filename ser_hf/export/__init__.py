"""Running trained models outside PyTorch training: ONNX export, the onnxruntime backend, the web demo."""
from ser_hf.export.onnx import (
    ONNX_EXPORT_FILE,
    ONNX_MODEL_FILE,
    export_onnx,
    is_onnx_export,
)
from ser_hf.export.onnx_runtime import ORTSERModel, load_onnx_model

__all__ = ["ONNX_EXPORT_FILE", "ONNX_MODEL_FILE", "ORTSERModel", "export_onnx", "is_onnx_export", "load_onnx_model"]
