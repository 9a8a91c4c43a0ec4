"""Parameter bookkeeping shared by the trainer, fine-tuning policies and model cards.

Why here: `ser_hf.trainer` (optimizer groups), `ser_hf.finetuning` (what trains, per group) and
`ser_hf.hub` (counts on the card) all need it; living below them, it keeps imports pointing down
instead of in a circle.
"""
from __future__ import annotations

from torch import nn

PARAMETER_PARTS = ("backbone", "pooling", "head")


def parameter_part(name: str) -> str:
    """Which learning-rate group (backbone / pooling / head) a parameter belongs to, from its name."""
    parts = name.split(".")
    if "backbone" in parts:
        return "backbone"
    if "pooling" in parts or "layer_weights" in parts:
        return "pooling"
    return "head"


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


__all__ = ["PARAMETER_PARTS", "count_parameters", "parameter_part"]
