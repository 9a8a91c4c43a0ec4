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


class EpochTaggedBatchSampler:
    """Wraps a batch sampler so each yielded index also names the epoch it was drawn for.

    Yields batches of ``(epoch, index)`` pairs that `EpochIndexedDataset` turns into rows carrying
    ``EPOCH_KEY``/``INDEX_KEY``. The epoch is read when an epoch's iteration starts (the wrapped
    sampler's ``epoch`` property if it has one, else the last ``set_epoch``), so dataloader workers,
    skipped batches on resume (accelerate's ``SkipBatchSampler`` drops whole batches of indices before
    any row is read or decoded) and persistent workers all see the same tags. Other attributes
    (``batch_size``, ``drop_last``, ``describe``...) are the wrapped sampler's.
    """

    def __init__(self, batch_sampler):
        self.batch_sampler = batch_sampler
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(getattr(self.batch_sampler, "epoch", self._epoch))

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        epoch = self.epoch
        for batch in self.batch_sampler:
            yield [(epoch, int(index)) for index in batch]

    def __getattr__(self, name):
        if name == "batch_sampler":  # not yet set (unpickling): avoid recursion
            raise AttributeError(name)
        return getattr(self.batch_sampler, name)


class EpochIndexedDataset:
    """A map-style view of a training dataset indexed by ``(epoch, index)`` pairs.

    Each row it returns is the wrapped dataset's row plus ``EPOCH_KEY`` and ``INDEX_KEY``, which the
    collators read through `row_generator` and never pass to the model. Plain integer keys give the
    plain row (no tags), so the view can stand in for the dataset elsewhere.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @staticmethod
    def _tag(row, epoch: int, index: int) -> dict:
        row = dict(row)
        row[EPOCH_KEY] = int(epoch)
        row[INDEX_KEY] = int(index)
        return row

    def __getitem__(self, key):
        if isinstance(key, tuple):
            epoch, index = key
            return self._tag(self.dataset[int(index)], epoch, index)
        return self.dataset[key]

    def __getitems__(self, keys: list) -> list[dict]:
        if not keys or not isinstance(keys[0], tuple):
            return [self[key] for key in keys]
        indices = [int(index) for _, index in keys]
        fetch = getattr(self.dataset, "__getitems__", None)
        rows = fetch(indices) if fetch is not None else [self.dataset[i] for i in indices]
        return [self._tag(row, epoch, index) for row, (epoch, index) in zip(rows, keys)]

    def __getattr__(self, name):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


__all__ = [
    "EPOCH_KEY",
    "INDEX_KEY",
    "EpochIndexedDataset",
    "EpochTaggedBatchSampler",
    "example_generator",
    "row_generator",
    "stream_id",
]
