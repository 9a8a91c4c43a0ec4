"""The emotion head and its activation registry.

The paper's ablation swaps only the head's activation (Mish beat ReLU), so the activation is a
name in the config, not code.
"""
from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "mish": nn.Mish,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
}


def get_activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name.lower()]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(sorted(ACTIVATIONS))}") from None


class EmotionHead(nn.Sequential):
    """dropout -> linear -> LayerNorm -> activation -> dropout -> linear."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, activation: str = "mish", dropout: float = 0.1):
        super().__init__(
            nn.Dropout(dropout),
            nn.Linear(input_size, hidden_size),
            nn.LayerNorm(hidden_size),
            get_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, output_size),
        )
