"""Collators: manifest rows -> model batches. Audio is decoded here, lazily, one batch at a time,
so memory does not grow with the corpus and dataloader workers share the decoding."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ser_hf.data.audio import crop, describe_audio, load_audio
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
        # A ``datasets.ClassLabel`` integer is already the index into the names the model was built from.
        if isinstance(code, (int, np.integer)) and not isinstance(code, bool) and 0 <= code < len(self.labels or ()):
            return int(code)
        try:
            return self._index[code]
        except KeyError:
            raise ValueError(
                f"row {row.get('id')!r} ({describe_audio(row.get('audio'))}): label {code!r} is not one of the "
                f"model's labels {self.labels}"
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
    drawn); evaluation crops deterministically from the start. Crops are reproducible: the generator
    is seeded from ``seed`` and the dataloader worker.
    """

    feature_extractor: Any
    targets: SERTargets
    sampling_rate: int = 16000
    max_seconds: float | None = 12.0
    random_crop: bool = False
    seed: int = 0
    train_max_seconds: float | None = None  # training crop when different from the eval one
    _rng: np.random.Generator | None = field(default=None, repr=False)

    def train_mode(self, seed: int | None = None) -> "SpeechCollator":
        """A copy that crops at random (for the training dataloader)."""
        clone = copy.copy(self)
        clone.random_crop = True
        clone.max_seconds = self.train_max_seconds or self.max_seconds
        clone.seed = self.seed if seed is None else seed
        clone._rng = None
        return clone

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            worker = info.id if info is not None else 0
            self._rng = np.random.default_rng([self.seed, worker])
        return self._rng

    def load(self, row: dict) -> np.ndarray:
        wave = load_audio(row["audio"], self.sampling_rate)
        max_samples = int(self.max_seconds * self.sampling_rate) if self.max_seconds else None
        return crop(wave, max_samples, random=self.random_crop, rng=self._generator() if self.random_crop else None)

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        waves = [self.load(row) for row in rows]
        batch = dict(
            self.feature_extractor(
                waves,
                sampling_rate=self.sampling_rate,
                padding=True if not _is_whisper(self.feature_extractor) else "max_length",
                return_attention_mask=True,
                return_tensors="pt",
            )
        )
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
