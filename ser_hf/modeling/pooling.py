"""Utterance-level pooling over frames (speech) or tokens (text), masked to valid positions.

Padding must not change a pooled vector: a padded batch gives the same result as each item alone.
"""
from __future__ import annotations

import torch
from torch import nn


def _float_mask(mask: torch.Tensor | None, hidden: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return hidden.new_ones(hidden.shape[:2])
    return mask.to(hidden.dtype)


class MeanPooling(nn.Module):
    """Average of the valid frames' hidden states (H)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.output_size = hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        weights = _float_mask(mask, hidden)
        total = (hidden * weights.unsqueeze(-1)).sum(1)
        return total / weights.sum(1, keepdim=True).clamp(min=1.0)


class StatisticsPooling(nn.Module):
    """Mean and standard deviation of the valid frames, concatenated (2H): x-vector statistics pooling.

    The spread of a frame feature over an utterance (how much pitch and energy move) carries emotion
    that a mean alone averages away; unlike the attentive variant there is nothing to learn, which
    matters when training from scratch on a few hundred utterances.
    """

    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.output_size = 2 * hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        weights = _float_mask(mask, hidden).unsqueeze(-1)
        count = weights.sum(1).clamp(min=1.0)
        mean = (hidden * weights).sum(1) / count
        var = (weights * (hidden - mean.unsqueeze(1)) ** 2).sum(1) / count
        return torch.cat([mean, torch.sqrt(var.clamp(min=self.eps))], dim=-1)


class AttentiveStatisticsPooling(nn.Module):
    """Attention-weighted mean and standard deviation of valid frames, concatenated (2H).

    A small MLP scores each frame; the softmax over valid frames weights both statistics, so
    emotionally salient stretches count more than silence.
    """

    def __init__(self, hidden_size: int, attention_hidden_size: int = 128, eps: float = 1e-6):
        super().__init__()
        self.scorer = nn.Sequential(
            nn.Linear(hidden_size, attention_hidden_size), nn.Tanh(), nn.Linear(attention_hidden_size, 1)
        )
        self.eps = eps
        self.output_size = 2 * hidden_size

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.scorer(hidden).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask.bool(), torch.finfo(scores.dtype).min)
        alpha = torch.softmax(scores, dim=1).unsqueeze(-1)
        mean = (alpha * hidden).sum(1)
        var = (alpha * (hidden - mean.unsqueeze(1)) ** 2).sum(1)
        return torch.cat([mean, torch.sqrt(var.clamp(min=self.eps))], dim=-1)


def build_pooling(name: str, hidden_size: int, attention_hidden_size: int = 128) -> nn.Module:
    if name == "mean":
        return MeanPooling(hidden_size)
    if name == "stats":
        return StatisticsPooling(hidden_size)
    if name == "attentive_stats":
        return AttentiveStatisticsPooling(hidden_size, attention_hidden_size)
    raise ValueError(f"unknown pooling {name!r}; choose 'attentive_stats', 'stats' or 'mean'")
