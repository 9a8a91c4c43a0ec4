"""Per-utterance mean/variance normalisation of log-mel input features (instance normalisation).

Why: on small acted corpora such as EmoDB, a speaker-independent model mostly fails on the test
speakers' voice and channel (level, spectral tilt), not on their emotions. Removing each utterance's
own mean and scale per mel bin, computed over its real (unpadded) frames only, takes that offset out
before the encoder sees it; unlike per-speaker normalisation it needs nothing but the utterance
itself, so it is the same at training, evaluation and inference time.
"""
from __future__ import annotations

import torch

INPUT_NORMALIZATIONS = ("none", "utterance")


def mel_frame_mask(attention_mask: torch.Tensor | None, num_frames: int, hop_length: int) -> torch.Tensor | None:
    """Boolean (batch, frames) mask of the mel frames computed from real samples.

    Accepts the feature extractor's mel-frame mask or a sample-level one (counted in hops)."""
    if attention_mask is None:
        return None
    if attention_mask.shape[-1] == num_frames:
        return attention_mask.bool()
    lengths = torch.div(attention_mask.sum(-1) + hop_length - 1, hop_length, rounding_mode="floor")
    return torch.arange(num_frames, device=attention_mask.device).unsqueeze(0) < lengths.unsqueeze(1)


def normalize_per_utterance(features: torch.Tensor, frame_mask: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """``(features - mean) / std`` per utterance and mel bin over the valid frames of ``features``
    (batch, bins, frames); padded frames become 0 (the normalised mean)."""
    if frame_mask is None:
        frame_mask = torch.ones(features.shape[0], features.shape[-1], dtype=torch.bool, device=features.device)
    weights = frame_mask.unsqueeze(1).to(features.dtype)  # (batch, 1, frames)
    count = weights.sum(-1, keepdim=True).clamp(min=1.0)
    mean = (features * weights).sum(-1, keepdim=True) / count
    variance = (((features - mean) * weights) ** 2).sum(-1, keepdim=True) / count
    return (features - mean) / torch.sqrt(variance + eps) * weights
