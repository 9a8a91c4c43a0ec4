"""An exported ser-hf model run by onnxruntime, with the calling convention of the torch models.

`ORTSERModel` takes the same keyword tensors as `SERModelForSpeech` / `SERModelForText` /
`SERJointModel` / `SERFusionModel` and returns an `SEROutput`, so `ser_hf.inference.predict` (and
anything else written against the torch models' interface) runs it unchanged with ``backend="onnx"``.
"""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import numpy as np
import torch

from ser_hf.export.onnx import (
    ONNX_EXPORT_FILE,
    ONNX_MODEL_FILE,
    ONNX_QUANTIZED_FILE,
    is_onnx_export,
)


class ORTSERModel:
    """An ONNX export folder loaded into an ``onnxruntime.InferenceSession`` (CPU by default)."""

    def __init__(self, path: str | os.PathLike, *, quantized: bool = False, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoConfig

        import ser_hf.modeling  # noqa: F401  (registers the ser-hf configs)

        path = os.fspath(path)
        if not is_onnx_export(path):
            raise ValueError(f"{path}: not an ONNX export of a ser-hf model (no {ONNX_MODEL_FILE} + {ONNX_EXPORT_FILE}); run `ser-hf export`")
        with open(os.path.join(path, ONNX_EXPORT_FILE), encoding="utf-8") as handle:
            self.record = json.load(handle)
        file = ONNX_MODEL_FILE
        if quantized:
            if "quantized" not in self.record:
                raise ValueError(f"{path}: exported without --quantize; no {ONNX_QUANTIZED_FILE}")
            file = self.record["quantized"]["file"]
        self.path = path
        self.ser_kind = self.record["kind"]
        self.config = AutoConfig.from_pretrained(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            os.path.join(path, file), sess_options=options, providers=providers or ["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if self.ser_kind == "joint":
            self.speech = SimpleNamespace(config=self.config.part_config("speech"))
            self.text = SimpleNamespace(config=self.config.part_config("text"))
        if self.ser_kind in ("speech", "text"):
            self.pooled_size = int(self.session.get_outputs()[self.output_names.index("pooled_output")].shape[-1])

    # The torch models' housekeeping methods, so callers need not special-case this backend.
    def to(self, device):
        if torch.device(device).type != "cpu":
            raise ValueError("the onnx backend runs on CPU here; use backend='torch' for GPUs")
        return self

    def eval(self):
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def run(self, inputs: dict) -> dict[str, np.ndarray]:
        """Raw outputs ``{name: array}`` for keyword inputs (torch tensors or arrays)."""
        feed = {}
        for name in self.input_names:
            if name not in inputs:
                raise ValueError(f"{self.path}: the ONNX graph needs input {name!r}; got {sorted(inputs)}")
            value = inputs[name]
            value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            feed[name] = value.astype(np.float32 if np.issubdtype(value.dtype, np.floating) else np.int64, copy=False)
        return dict(zip(self.output_names, self.session.run(self.output_names, feed)))

    def __call__(self, features=None, **inputs):
        from ser_hf.modeling.base import SEROutput

        if self.ser_kind == "fusion":
            if features is None:
                raise ValueError(f"a fusion head takes features (blocks {self.record['blocks']})")
            if isinstance(features, torch.Tensor):
                features = dict(zip(self.record["blocks"], torch.split(features, list(self.record["blocks"].values()), dim=-1)))
            inputs = dict(features)
        outputs = {k: torch.from_numpy(v) for k, v in self.run(inputs).items()}
        return SEROutput(logits=outputs.get("logits"), attributes=outputs.get("attributes"), pooled_output=outputs.get("pooled_output"))

    forward = __call__

    def pool(self, **inputs) -> torch.Tensor:
        """The pooled utterance vector (what a fusion head reads)."""
        if "pooled_output" not in self.output_names:
            raise ValueError(f"{self.path}: this {self.ser_kind} export has no pooled_output")
        return torch.from_numpy(self.run(inputs)["pooled_output"])


def load_onnx_model(path: str | os.PathLike, **kwargs) -> ORTSERModel:
    return ORTSERModel(path, **kwargs)


__all__ = ["ORTSERModel", "load_onnx_model"]
