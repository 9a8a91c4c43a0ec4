"""Per-example randomness as a pure function of (seed, epoch, example index, stream).

Why: a resumed run must see exactly the crops, augmentations and mixing partners of the
uninterrupted run without replaying skipped batches, and dataloader workers must not change
the draws. Every random choice made for a training example therefore comes from
``example_generator(seed, epoch, index, stream)``, never from a stateful generator.

Contract shared by the sampler/dataset wrapper, the collators and augmentation: during training each
row handed to a collator carries ``EPOCH_KEY`` (int) and ``INDEX_KEY`` (the row's index in the
training dataset). Evaluation rows carry neither and evaluation is deterministic.
"""
from __future__ import annotations

import zlib

import numpy as np

EPOCH_KEY = "__ser_epoch__"
INDEX_KEY = "__ser_index__"


def stream_id(stream: str) -> int:
    """A stable integer for a named stream ("crop", "noise", "mixup", ...)."""
    return zlib.crc32(stream.encode("utf-8"))


def example_generator(seed: int, epoch: int, index: int, stream: str) -> np.random.Generator:
    """The generator for one example's draws of one kind; independent across streams."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), stream_id(stream)])


def row_generator(row: dict, seed: int, stream: str) -> np.random.Generator | None:
    """The generator for a training row (None for an evaluation row, which must not be random)."""
    if EPOCH_KEY not in row or INDEX_KEY not in row:
        return None
    return example_generator(seed, row[EPOCH_KEY], row[INDEX_KEY], stream)


__all__ = ["EPOCH_KEY", "INDEX_KEY", "example_generator", "row_generator", "stream_id"]
