"""Mean/variance normalisation of log-mel input features, per utterance or per speaker.

Why: on small acted corpora such as EmoDB, a speaker-independent model mostly fails on the test
speakers' voice and channel (level, spectral tilt), not on their emotions.

- ``utterance``: each utterance's own mean and scale per mel bin (over its real frames) are removed.
  It needs nothing but the utterance, but it also removes the utterance's level and tilt, which carry
  arousal (measured to hurt on EmoDB).
- ``speaker``: the mean and scale per mel bin of *all the speaker's utterances* are removed
  (speaker-level z-normalisation, a standard of speaker-independent SER). What is left is each
  utterance relative to its speaker's voice: loud anger stays loud for that speaker. The statistics
  come from the data pipeline (its speaker statistics module: unlabelled audio of each speaker,
  test speakers included) as ``speaker_mean`` / ``speaker_std`` inputs; an input without them (a
  single recording in ``predict``, the web demo, an exported graph) is normalised by the training
  population's statistics, which the speech model keeps as buffers.
"""
from __future__ import annotations

import torch

INPUT_NORMALIZATIONS = ("none", "utterance", "speaker")


def mel_frame_mask(attention_mask: torch.Tensor | None, num_frames: int, hop_length: int) -> torch.Tensor | None:
    """Boolean (batch, frames) mask of the mel frames computed from real samples.

    Accepts the feature extractor's mel-frame mask or a sample-level one (counted in hops)."""
    if attention_mask is None:
        return None
    if attention_mask.shape[-1] == num_frames:
        return attention_mask.bool()
    lengths = torch.div(attention_mask.sum(-1) + hop_length - 1, hop_length, rounding_mode="floor")
    return torch.arange(num_frames, device=attention_mask.device).unsqueeze(0) < lengths.unsqueeze(1)


def normalize_with_statistics(
    features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, frame_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``(features - mean) / std`` with per-utterance, per-bin ``mean`` and ``std`` (batch, bins), e.g. the
    statistics of each utterance's speaker; padded frames become 0 (the normalised mean)."""
    out = (features - mean.to(features.dtype).unsqueeze(-1)) / std.to(features.dtype).unsqueeze(-1)
    if frame_mask is not None:
        out = out * frame_mask.unsqueeze(1).to(features.dtype)
    return out


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
