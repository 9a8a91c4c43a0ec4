"""Manifold mixup (Verma et al., 2019) on the pooled utterance vector, model-side.

Why a forward hook: every ser-hf model turns its encoder output into one pooled vector with a
``pooling`` module before the heads, so mixing that module's output mixes the heads' input for speech
and text models alike without touching their ``forward``. The partners and weights come from the
collator (``ser_hf.data.mixing``), drawn per example from (seed, epoch, index).
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def manifold_mixup(model: torch.nn.Module, index: torch.Tensor, lam: torch.Tensor):
    """Within the block, ``pooled = lam * pooled + (1 - lam) * pooled[index]`` for ``model``'s forward."""
    pooling = getattr(model, "pooling", None)
    if pooling is None:
        raise ValueError(f"manifold mixup needs a model with a `pooling` module; {type(model).__name__} has none")

    def hook(_module, _inputs, output):
        if not torch.is_tensor(output):
            raise ValueError("manifold mixup expects the pooling module to return one tensor")
        i = index.to(output.device)
        w = lam.to(device=output.device, dtype=output.dtype).unsqueeze(1)
        return w * output + (1 - w) * output[i]

    handle = pooling.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


__all__ = ["manifold_mixup"]
