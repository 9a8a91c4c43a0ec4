"""Per-speaker log-mel statistics for speaker-level input normalisation (``input_normalization: speaker``).

Why: a model trained from scratch on a few speakers learns their voices; normalising every
utterance by its *speaker's* mean and scale per mel bin leaves what the speaker does differently in
this utterance (level, tilt, spread relative to their own voice), which is what carries emotion. The
statistics of a speaker come from that speaker's own unlabelled audio, so a test speaker is
normalised by the test audio itself (transductive, as in speaker-normalised SER evaluations); no
label is read. They are computed once per run with the collator's own feature extractor (and, for
the robustness report, its perturbation), over each utterance's real frames, from its start up to
``max_seconds``.

The collator adds them to each batch as ``speaker_mean`` / ``speaker_std`` (batch x mel bins). Rows
without a speaker (and a recording scored alone, without any statistics) are normalised by the
*training population's* statistics (all training frames pooled), which the model keeps as buffers
(`SERModelForSpeech.input_mean` / ``input_std``): measured on EmoDB, a speaker-normalised model
scoring test recordings with them stays near an unnormalised model, while each recording's own
statistics (utterance normalisation) halve its UAR.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

SPEAKER_COLUMN = "speaker"
EPS = 1e-5


def speaker_of(row: dict) -> str | None:
    """The row's speaker id as text, or None when it has none."""
    value = row.get(SPEAKER_COLUMN)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def frame_count(num_samples: int, hop_length: int, max_frames: int) -> int:
    """Mel frames computed from real samples (as `ser_hf.modeling.input_normalization.mel_frame_mask`)."""
    return max(1, min(max_frames, -(-int(num_samples) // hop_length)))


@dataclass
class SpeakerStatistics:
    """Mean and standard deviation per mel bin of each speaker's log-mel frames."""

    mean: dict[str, np.ndarray] = field(default_factory=dict)
    std: dict[str, np.ndarray] = field(default_factory=dict)
    utterances: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    # (mean, std) for rows whose speaker has no statistics; None: the row's own statistics.
    fallback: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.mean)

    def __contains__(self, speaker: str) -> bool:
        return speaker in self.mean

    @classmethod
    def from_frames(cls, frames_by_speaker: dict[str, list[np.ndarray]]) -> "SpeakerStatistics":
        """Statistics from each speaker's list of (bins x frames) arrays of real frames."""
        out = cls()
        for speaker, arrays in frames_by_speaker.items():
            stacked = np.concatenate(arrays, axis=1).astype(np.float64)
            out.mean[speaker] = stacked.mean(1).astype(np.float32)
            out.std[speaker] = np.sqrt(stacked.var(1) + EPS).astype(np.float32)
            out.utterances[speaker] = len(arrays)
            out.frames[speaker] = int(stacked.shape[1])
        return out

    def pooled(self, speakers: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std per bin of all the frames of ``speakers`` together (the population statistics)."""
        chosen = [s for s in dict.fromkeys(speakers) if s in self.mean]
        if not chosen:
            raise ValueError("no speaker with statistics to pool")
        weights = np.array([self.frames[s] for s in chosen], dtype=np.float64)[:, None]
        means = np.stack([self.mean[s] for s in chosen]).astype(np.float64)
        second = np.stack([self.std[s] for s in chosen]).astype(np.float64) ** 2 - EPS + means**2
        mean = (weights * means).sum(0) / weights.sum()
        var = np.maximum((weights * second).sum(0) / weights.sum() - mean**2, 0.0)
        return mean.astype(np.float32), np.sqrt(var + EPS).astype(np.float32)

    def batch_inputs(self, rows: list[dict], features: torch.Tensor, frames: list[int]) -> dict[str, torch.Tensor]:
        """``speaker_mean`` / ``speaker_std`` (batch x bins) for the rows of a featurised batch.

        A row whose speaker has no statistics (no speaker id, or one not seen when they were
        computed) gets ``fallback`` (the model's training-population statistics), or without one
        the statistics of its own real frames."""
        means, stds = [], []
        for i, row in enumerate(rows):
            speaker = speaker_of(row)
            if speaker is not None and speaker in self.mean:
                means.append(torch.from_numpy(self.mean[speaker]))
                stds.append(torch.from_numpy(self.std[speaker]))
            elif self.fallback is not None:
                means.append(torch.as_tensor(self.fallback[0], dtype=torch.float32))
                stds.append(torch.as_tensor(self.fallback[1], dtype=torch.float32))
            else:
                own = features[i, :, : frames[i]].double()
                means.append(own.mean(-1).float())
                stds.append(torch.sqrt(own.var(-1, unbiased=False) + EPS).float())
        return {"speaker_mean": torch.stack(means), "speaker_std": torch.stack(stds)}


def compute_speaker_statistics(
    rows: Iterable[dict],
    featurize,
    *,
    batch_size: int = 32,
    progress: bool = False,
    total: int | None = None,
) -> SpeakerStatistics:
    """Statistics of every speaker among ``rows``.

    ``featurize(rows) -> (features, frames)`` turns a list of rows into their log-mel features
    (batch x bins x frames) and the number of real frames of each (the collator's
    ``speaker_features``). Rows without a speaker are skipped."""
    from tqdm.auto import tqdm

    frames_by_speaker: dict[str, list[np.ndarray]] = {}
    pending: list[dict] = []

    def flush():
        if not pending:
            return
        features, frames = featurize(pending)
        for row, feature, n in zip(pending, features, frames):
            frames_by_speaker.setdefault(speaker_of(row), []).append(np.asarray(feature[:, :n], dtype=np.float32))
        bar.update(len(pending))
        pending.clear()

    with tqdm(total=total, desc="speaker statistics", unit="utt", disable=not progress) as bar:
        for row in rows:
            if speaker_of(row) is None:
                bar.update(1)
                continue
            pending.append(row)
            if len(pending) >= batch_size:
                flush()
        flush()
    return SpeakerStatistics.from_frames(frames_by_speaker)


def rows_without_speaker(dataset) -> list[int]:
    """Positions of the rows of a `datasets.Dataset` that have no speaker id."""
    if SPEAKER_COLUMN not in dataset.column_names:
        return list(range(len(dataset)))
    return [i for i, value in enumerate(dataset[SPEAKER_COLUMN]) if speaker_of({SPEAKER_COLUMN: value}) is None]
