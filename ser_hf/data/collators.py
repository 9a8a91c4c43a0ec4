"""Collators: manifest rows -> model batches. Audio is decoded here, lazily, one batch at a time,
so memory does not grow with the corpus and dataloader workers share the decoding."""
from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ser_hf.data.audio import load_audio, load_audio_crop, window_bounds
from ser_hf.data.randomness import example_generator, row_generator
from ser_hf.data.schema import ATTRIBUTES

IGNORE_INDEX = -100


@dataclass
class SERTargets:
    """Turns a row's ``label`` (class code) and attribute columns into the tensors a model's task needs.

    Rows without a category get ``-100`` (ignored by categorical losses); missing attributes are NaN
    (masked by attribute losses), so one multi-task batch may mix partially labelled rows.
    """

    labels: list[str] | None = None
    attributes: tuple[str, ...] | list[str] | None = None

    def __post_init__(self):
        self._index = {code: i for i, code in enumerate(self.labels or [])}

    def label_id(self, row: dict) -> int:
        code = row.get("label")
        if code is None:
            return IGNORE_INDEX
        try:
            return self._index[code]
        except KeyError:
            raise ValueError(
                f"row {row.get('id')!r} ({row.get('audio')}): label {code!r} is not one of the model's labels "
                f"{self.labels}"
            ) from None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if self.labels:
            out["labels"] = torch.tensor([self.label_id(row) for row in rows], dtype=torch.long)
        if self.attributes:
            values = [[_as_float(row.get(name)) for name in self.attributes] for row in rows]
            out["attribute_labels"] = torch.tensor(values, dtype=torch.float32)
        return out

    @classmethod
    def for_config(cls, config) -> "SERTargets":
        return cls(
            labels=config.labels if config.has_categorical else None,
            attributes=tuple(config.attributes) if config.has_attributes else None,
        )


def _as_float(value) -> float:
    return math.nan if value is None else float(value)


@dataclass
class SpeechCollator:
    """Decode, resample, crop and featurise a batch of manifest rows for a speech model.

    ``random_crop`` is for training (a fresh window of ``max_seconds`` each time an utterance is
    drawn); evaluation crops deterministically from the start. Only the cropped frames are read from
    disk. A training crop is a pure function of ``(seed, epoch, index)`` taken from the row's
    ``EPOCH_KEY``/``INDEX_KEY`` (see `ser_hf.data.randomness`), so a resumed run, skipped batches
    and dataloader workers all give the crops of the uninterrupted run. Rows without those keys
    (the collator called outside the trainer) get a crop keyed by their id, the same every call.
    """

    feature_extractor: Any
    targets: SERTargets
    sampling_rate: int = 16000
    max_seconds: float | None = 12.0
    random_crop: bool = False
    seed: int = 0
    train_max_seconds: float | None = None  # training crop when different from the eval one
    # Evaluation of utterances longer than ``max_seconds``: score the whole utterance as windows of
    # ``max_seconds`` (hop ``window_hop`` of a window, as ``predict`` does) and let `SERTrainer`
    # average them, instead of scoring only the first window. Off for feature extraction.
    window_long_inputs: bool = False
    window_hop: float = 0.5

    def train_mode(self, seed: int | None = None) -> "SpeechCollator":
        """A copy that crops at random (for the training dataloader)."""
        clone = copy.copy(self)
        clone.random_crop = True
        clone.max_seconds = self.train_max_seconds or self.max_seconds
        clone.seed = self.seed if seed is None else seed
        clone.window_long_inputs = False
        return clone

    def crop_generator(self, row: dict) -> np.random.Generator | None:
        """The generator of a row's training crop (None in evaluation mode: crop from the start)."""
        if not self.random_crop:
            return None
        rng = row_generator(row, self.seed, "crop")
        if rng is None:
            key = zlib.crc32(str(row.get("id", row.get("audio"))).encode("utf-8"))
            rng = example_generator(self.seed, 0, key, "crop")
        return rng

    def load(self, row: dict) -> np.ndarray:
        max_samples = int(self.max_seconds * self.sampling_rate) if self.max_seconds else None
        return load_audio_crop(row["audio"], self.sampling_rate, max_samples, rng=self.crop_generator(row))

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if self.window_long_inputs and not self.random_crop and self.max_seconds:
            return self._windowed(rows)
        batch = self._features([self.load(row) for row in rows])
        batch.update(self.targets(rows))
        return batch

    def _features(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        return dict(
            self.feature_extractor(
                waves,
                sampling_rate=self.sampling_rate,
                padding=True if not _is_whisper(self.feature_extractor) else "max_length",
                return_attention_mask=True,
                return_tensors="pt",
            )
        )

    def _windowed(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Whole utterances; a long one becomes several windows. Adds ``window_rows`` (the row of each
        window) and ``window_weights`` (its length) when any row has more than one window."""
        window = int(self.max_seconds * self.sampling_rate)
        hop = max(1, int(window * self.window_hop))
        waves, owners, lengths = [], [], []
        for k, row in enumerate(rows):
            wave = load_audio(row["audio"], self.sampling_rate)
            for start, end in window_bounds(len(wave), window, hop):
                waves.append(wave[start:end])
                owners.append(k)
                lengths.append(end - start)
        batch = self._features(waves)
        if len(waves) > len(rows):
            batch["window_rows"] = torch.tensor(owners, dtype=torch.long)
            batch["window_weights"] = torch.tensor(lengths, dtype=torch.float32)
        batch.update(self.targets(rows))
        return batch


def _is_whisper(feature_extractor) -> bool:
    return type(feature_extractor).__name__.startswith("Whisper")


@dataclass
class TextCollator:
    """Tokenise a batch of transcripts for a text model (dynamic padding)."""

    tokenizer: Any
    targets: SERTargets
    max_length: int = 128
    text_column: str = "transcript"

    def train_mode(self, seed: int | None = None) -> "TextCollator":
        return self

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts = []
        for row in rows:
            text = row.get(self.text_column)
            if text is None:
                raise ValueError(f"row {row.get('id')!r}: no {self.text_column!r}; transcribe it first (ser-hf transcribe)")
            texts.append(text)
        batch = dict(
            self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        )
        batch.update(self.targets(rows))
        return batch


__all__ = ["ATTRIBUTES", "IGNORE_INDEX", "SERTargets", "SpeechCollator", "TextCollator"]
