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

from ser_hf.data.audio import describe_audio, load_audio, load_audio_crop, window_bounds
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
    # Soft targets (``label_distribution``, B x K) beside the hard ``labels``: "none"; "onehot" (the
    # hard label as a distribution, for mixing); "annotators" (a row's own ``label_distribution`` where
    # it has one, else one-hot). Unlabelled rows get an all-zero row (ignored by the soft losses).
    soft: str = "none"

    def __post_init__(self):
        if self.soft not in ("none", "onehot", "annotators"):
            raise ValueError(f"soft must be none, onehot or annotators, got {self.soft!r}")
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
            if self.soft != "none":
                out["label_distribution"] = self.distributions(rows, out["labels"])
        if self.attributes:
            values = [[_as_float(row.get(name)) for name in self.attributes] for row in rows]
            out["attribute_labels"] = torch.tensor(values, dtype=torch.float32)
        return out

    def distributions(self, rows: list[dict], label_ids: torch.Tensor) -> torch.Tensor:
        k = len(self.labels)
        out = torch.zeros(len(rows), k, dtype=torch.float32)
        for i, (row, label) in enumerate(zip(rows, label_ids.tolist())):
            given = row.get("label_distribution") if self.soft == "annotators" else None
            if given is not None:
                if len(given) != k:
                    raise ValueError(
                        f"row {row.get('id')!r} ({row.get('audio')}): label_distribution has {len(given)} entries but the "
                        f"model has {k} labels {self.labels}"
                    )
                values = torch.tensor([float(v) for v in given], dtype=torch.float32)
                total = float(values.sum())
                if not total > 0 or bool((values < 0).any()):
                    raise ValueError(f"row {row.get('id')!r}: label_distribution {list(given)} is not a distribution")
                out[i] = values / total
            elif label != IGNORE_INDEX:
                out[i, label] = 1.0
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
    augmenter: Any = None  # ser_hf.data.augment.Augmenter: training rows only (rows with epoch/index keys)
    mixer: Any = None  # ser_hf.data.mixing.Mixer: input / overlap / manifold mixup of training batches
    perturbation: Any = None  # ser_hf.data.augment.Perturbation: a fixed degradation (robustness report)
    # Evaluation of utterances longer than ``max_seconds``: score the whole utterance as windows of
    # ``max_seconds`` (hop ``window_hop`` of a window, as ``predict`` does) and let `SERTrainer`
    # average them, instead of scoring only the first window. Off for feature extraction.
    window_long_inputs: bool = False
    window_hop: float = 0.5
    # ser_hf.data.speaker_statistics.SpeakerStatistics: adds ``speaker_mean`` / ``speaker_std`` to
    # log-mel batches for models with ``input_normalization: speaker``.
    speaker_statistics: Any = None

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
        waves = [self.load(row) for row in rows]
        if self.perturbation is not None:
            waves = [self.perturbation(wave, row, self.sampling_rate) for wave, row in zip(waves, rows)]
        if self.augmenter is not None and self.augmenter.has_waveform:
            waves = [self.augmenter.waveform(wave, row) for wave, row in zip(waves, rows)]
        targets = self.targets(rows)
        if self.mixer is not None:
            has_label = None
            if "label_distribution" in targets:
                has_label = (targets["label_distribution"].sum(1) > 0).numpy()
            elif "labels" in targets:
                raise ValueError("mixing needs soft targets (SERTargets(soft='onehot')); SERTrainer sets them")
            plan = self.mixer.plan(rows, waves, has_label)
            if plan is not None:
                waves = self.mixer.mix_waves(waves, plan)
                self.mixer.mix_targets(targets, plan)
                targets.update(self.mixer.model_inputs(plan))
        batch = self._features(waves)
        self._add_speaker_statistics(batch, rows, waves)
        if self.augmenter is not None and self.augmenter.has_spectral:
            if "input_features" not in batch:
                raise ValueError(
                    "augment.specaugment masks log-mel features; this encoder reads raw audio. Use the model's "
                    "mask_time_prob / mask_feature_prob (wav2vec2, WavLM, HuBERT) instead"
                )
            hop = getattr(self.feature_extractor, "hop_length", 160)
            frames = [-(-len(w) // hop) for w in waves]
            batch["input_features"] = self.augmenter.spectral(batch["input_features"], rows, frames)
        batch.update(targets)
        return batch

    def _frames(self, waves: list[np.ndarray], num_frames: int) -> list[int]:
        from ser_hf.data.speaker_statistics import frame_count

        hop = getattr(self.feature_extractor, "hop_length", 160)
        return [frame_count(len(w), hop, num_frames) for w in waves]

    def _add_speaker_statistics(self, batch: dict, rows: list[dict], waves: list[np.ndarray]) -> None:
        if self.speaker_statistics is None or "input_features" not in batch:
            return
        features = batch["input_features"]
        batch.update(self.speaker_statistics.batch_inputs(rows, features, self._frames(waves, features.shape[-1])))

    def speaker_features(self, rows: list[dict]) -> tuple[torch.Tensor, list[int]]:
        """Log-mel features of rows as evaluation sees them (from the start, up to ``max_seconds``, with
        the perturbation if any, no augmentation) and their real frame counts: what per-speaker
        statistics are computed from (`ser_hf.data.speaker_statistics`)."""
        max_samples = int(self.max_seconds * self.sampling_rate) if self.max_seconds else None
        waves = [load_audio_crop(row["audio"], self.sampling_rate, max_samples, rng=None) for row in rows]
        if self.perturbation is not None:
            waves = [self.perturbation(wave, row, self.sampling_rate) for wave, row in zip(waves, rows)]
        batch = self._features(waves)
        if "input_features" not in batch:
            raise ValueError("speaker statistics normalise log-mel features; this encoder reads raw audio")
        features = batch["input_features"]
        return features, self._frames(waves, features.shape[-1])

    def _features(self, waves: list[np.ndarray]) -> dict[str, torch.Tensor]:
        if _is_plain_waveform_extractor(self.feature_extractor):
            return normalise_and_pad(waves, self.feature_extractor)
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
            if self.perturbation is not None:
                wave = self.perturbation(wave, row, self.sampling_rate)
            for start, end in window_bounds(len(wave), window, hop):
                waves.append(wave[start:end])
                owners.append(k)
                lengths.append(end - start)
        batch = self._features(waves)
        self._add_speaker_statistics(batch, [rows[k] for k in owners], waves)
        if len(waves) > len(rows):
            batch["window_rows"] = torch.tensor(owners, dtype=torch.long)
            batch["window_weights"] = torch.tensor(lengths, dtype=torch.float32)
        batch.update(self.targets(rows))
        return batch


def _is_plain_waveform_extractor(feature_extractor) -> bool:
    """A stock wav2vec2-family extractor (WavLM, wav2vec2, HuBERT): raw samples, optional per-utterance
    normalisation, padding; `normalise_and_pad` computes exactly what it would."""
    from transformers import Wav2Vec2FeatureExtractor

    return (type(feature_extractor) is Wav2Vec2FeatureExtractor and feature_extractor.feature_size == 1
            and getattr(feature_extractor, "padding_side", "right") == "right")


def normalise_and_pad(waves: list[np.ndarray], feature_extractor) -> dict[str, torch.Tensor]:
    """``Wav2Vec2FeatureExtractor(waves, padding=True, return_attention_mask=True, return_tensors="pt")``
    without its per-utterance Python path: one padded float32 array filled in place (each utterance
    zero-mean, unit-variance over its real samples when ``do_normalize``, the padding value after),
    handed to torch without a copy.

    Why: the extractor converts lists to arrays and back and normalises a copy of every padded row,
    about as long as decoding the audio; this is the same arithmetic (float32 mean and variance of
    the real samples, as the extractor computes them) on one buffer.
    """
    lengths = np.fromiter((len(w) for w in waves), dtype=np.int64, count=len(waves))
    longest = int(lengths.max(initial=0))
    padding_value = float(feature_extractor.padding_value)
    values = np.empty((len(waves), longest), dtype=np.float32)
    mask = np.zeros((len(waves), longest), dtype=np.int32)
    normalise = bool(feature_extractor.do_normalize)
    for row, row_mask, wave in zip(values, mask, waves):
        wave = np.asarray(wave, dtype=np.float32)
        real = row[: len(wave)]
        if normalise:
            mean = wave.mean()
            np.subtract(wave, mean, out=real)
            real /= np.sqrt(wave.var() + 1e-7)
        else:
            real[:] = wave
        row[len(wave) :] = padding_value
        row_mask[: len(wave)] = 1
    return {"input_values": torch.from_numpy(values), "attention_mask": torch.from_numpy(mask)}


def _is_whisper(feature_extractor) -> bool:
    return type(feature_extractor).__name__.startswith("Whisper")


@dataclass
class TextCollator:
    """Tokenise a batch of transcripts for a text model (dynamic padding)."""

    tokenizer: Any
    targets: SERTargets
    max_length: int = 128
    text_column: str = "transcript"
    mixer: Any = None  # manifold mixup only (text has no input to mix)

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
        targets = self.targets(rows)
        if self.mixer is not None:
            if self.mixer.kind != "manifold":
                raise ValueError(f"mixing type {self.mixer.kind!r} mixes audio; text models support type manifold only")
            has_label = (targets["label_distribution"].sum(1) > 0).numpy() if "label_distribution" in targets else None
            plan = self.mixer.plan(rows, None, has_label)
            if plan is not None:
                self.mixer.mix_targets(targets, plan)
                targets.update(self.mixer.model_inputs(plan))
        batch.update(targets)
        return batch


__all__ = ["ATTRIBUTES", "IGNORE_INDEX", "SERTargets", "SpeechCollator", "TextCollator"]
