"""Batch shapes from a small fixed set, so `torch.compile` builds a bounded number of graphs.

Length-grouped batches each have their own longest utterance: with static shapes every new time
length is a new graph (and a new CUDA-graph recording), and dynamo gives up after its recompile
limit. Padding the time axis up to a multiple of a bucket size (masked like any other padding)
bounds the shapes at ``max_length / bucket`` per batch size, for a padding cost below one bucket.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# Tensors padded on their last (time / token) axis, with the value that padding takes. Whisper's
# ``input_features`` are already padded to the encoder's fixed window, so they are left alone.
_AUDIO_KEYS = {"input_values": 0.0, "attention_mask": 0}
_TEXT_KEYS = {"attention_mask": 0, "token_type_ids": 0}


def bucket_length(length: int, multiple: int) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (unchanged when ``multiple`` <= 1)."""
    return length if multiple <= 1 else int(math.ceil(length / multiple) * multiple)


def pad_batch_to_bucket(batch: dict[str, Any], *, audio_multiple: int, text_multiple: int, pad_token_id: int = 0) -> dict[str, Any]:
    """Pad a collated batch's time axis (``input_values``) or token axis (``input_ids``) up to its bucket.

    Masks and token type ids are padded with 0, so the padding is ignored wherever the model already
    ignores padding; the batch is changed in place and returned.
    """
    if torch.is_tensor(batch.get("input_values")) and batch["input_values"].dim() == 2:
        keys, multiple, length = dict(_AUDIO_KEYS), audio_multiple, batch["input_values"].shape[-1]
    elif torch.is_tensor(batch.get("input_ids")) and batch["input_ids"].dim() == 2:
        keys, multiple, length = {"input_ids": pad_token_id, **_TEXT_KEYS}, text_multiple, batch["input_ids"].shape[-1]
    else:
        return batch
    extra = bucket_length(length, multiple) - length
    if extra <= 0:
        return batch
    for key, value in keys.items():
        tensor = batch.get(key)
        if torch.is_tensor(tensor) and tensor.dim() == 2 and tensor.shape[-1] == length:
            batch[key] = F.pad(tensor, (0, extra), value=value)
    return batch


@dataclass
class BucketPaddingCollator:
    """A collator whose batches are padded to length buckets (picklable, for dataloader workers)."""

    collator: Any
    audio_multiple: int
    text_multiple: int
    pad_token_id: int = 0

    def __getattr__(self, name: str):
        # The trainer reads the wrapped collator's settings (window_long_inputs, max_seconds, ...).
        if name == "collator":  # not set yet (unpickling in a dataloader worker)
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __call__(self, rows: list[dict]) -> dict[str, Any]:
        return pad_batch_to_bucket(
            self.collator(rows), audio_multiple=self.audio_multiple, text_multiple=self.text_multiple,
            pad_token_id=self.pad_token_id,
        )

    @classmethod
    def wrap(cls, collator, *, bucket_seconds: float, bucket_tokens: int, sampling_rate: int = 16000, pad_token_id: int = 0):
        """``collator`` wrapped, or itself when both bucket sizes are off."""
        audio = int(round(bucket_seconds * sampling_rate)) if bucket_seconds else 0
        if audio <= 1 and bucket_tokens <= 1:
            return collator
        return cls(collator, audio, int(bucket_tokens), pad_token_id)


def shape_count_bound(max_seconds: float | None, bucket_seconds: float) -> int | None:
    """How many time lengths bucketed audio batches can take (None when unbounded)."""
    if not max_seconds or not bucket_seconds:
        return None
    return int(math.ceil(max_seconds / bucket_seconds))


__all__ = ["BucketPaddingCollator", "bucket_length", "pad_batch_to_bucket", "shape_count_bound"]
