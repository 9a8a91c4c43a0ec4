"""Batch samplers for the paper's class-balancing strategies.

In-the-wild emotion corpora are heavily skewed (neutral dominates), and the paper found balanced
up-sampling of the training set to be one of the most effective strategies for macro-F1. These
samplers yield lists of dataset indices and are passed to
``DataLoader(dataset, batch_sampler=...)``.

Every sampler first draws one *global* epoch order from ``(seed, epoch)`` only, so all
distributed ranks agree on it without communicating; each rank then takes a disjoint, strided share
of that order. numpy RNG keeps the module free of torch.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence

import numpy as np

UNLABELLED = -1
"""Label id of an example without a class (``None`` in the input is mapped to it)."""

IGNORE_INDEX = -100
"""The HF/PyTorch ``ignore_index`` the collators put on unlabelled rows; also read as unlabelled.
(Same value as ``ser_hf.data.collators.IGNORE_INDEX``, not imported to keep this module torch-free.)"""

MEGABATCH_FACTOR = 50
"""Length grouping sorts windows of ``batch_size * MEGABATCH_FACTOR`` examples per rank."""

_DRAW_STREAM = 0
_BATCH_ORDER_STREAM = 1


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _as_label_array(labels) -> np.ndarray:
    """Integer class ids as int64; ``None``, -1 and -100 become UNLABELLED; anything else negative
    or non-integer is an error."""
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.ndim == 1:  # 270k rows: no loop
        out = labels.astype(np.int64)
        out[(out == IGNORE_INDEX) | (out == -1)] = UNLABELLED
        bad = np.flatnonzero(out < UNLABELLED)
        if len(bad) == 0:
            return out
    if hasattr(labels, "tolist") and not isinstance(labels, list):
        labels = labels.tolist()  # numpy arrays and torch tensors
    out = np.empty(len(labels), dtype=np.int64)
    for i, y in enumerate(labels):
        if y is None or (isinstance(y, numbers.Integral) and y == IGNORE_INDEX):
            out[i] = UNLABELLED
        elif isinstance(y, bool) or not isinstance(y, numbers.Integral) or y < UNLABELLED:
            raise ValueError(
                f"labels[{i}] = {y!r}: expected an integer class id >= 0, or -1/-100/None for unlabelled "
                "(map class names to ids before sampling)"
            )
        else:
            out[i] = int(y)
    return out


def _as_float_array(name: str, values, n: int) -> np.ndarray:
    """Finite, non-negative per-example numbers, one per example."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f" and values.ndim == 1 and len(values) == n:
        if bool(np.isfinite(values).all() and (values >= 0).all()):  # 270k rows: no loop
            return values.astype(np.float64, copy=False)
    if hasattr(values, "tolist") and not isinstance(values, list):
        values = values.tolist()
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries but the dataset has {n} examples")
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or v < 0:
            raise ValueError(f"{name}[{i}] = {v!r}: expected a finite number >= 0")
    return np.asarray(values, dtype=np.float64)


class SERBatchSampler:
    """Common contract: reproducible epochs from ``(seed, epoch)``, rank sharding, length grouping.

    Distributed split: the epoch's global draw of ``D`` indices is shared out by position, rank
    ``r`` taking positions ``r, r + R, r + 2R, ...``. With ``drop_last=False`` and ``D`` not a
    multiple of ``R``, the draw is first padded by wrapping around to its own start (the first
    ``R * ceil(D / R) - D`` positions are repeated) so that every rank yields the same number of
    batches; the last batch of a rank may be short. With ``drop_last=True`` the draw is cut to a
    multiple of ``R * batch_size`` so every batch is full; the dropped tail is a random part of a
    shuffled order, so nothing is systematically excluded.

    Seconds budget (``max_batch_seconds``): instead of ``batch_size`` examples, a batch takes as
    many examples as fit ``max_batch_seconds`` of *padded* audio (longest length x count), from
    length-sorted windows of the epoch's global draw, so short utterances come in big batches and
    long ones in small batches with almost no padding. Batches are formed on the global draw (so the
    class mix of the draw is kept), shuffled, and dealt round-robin to the ranks; the list is padded
    by wrapping (or cut, with ``drop_last``) to a multiple of the number of ranks so every rank runs
    the same number of steps. ``len()`` is the batch count of the epoch ``iter()`` will draw next.

    Epochs: ``set_epoch(e)`` pins the epoch for every following iteration (the
    ``DistributedSampler`` convention that Trainer/accelerate rely on). If it is never called, each
    ``iter()`` uses the next epoch (0, 1, 2, ...) so plain loops still get fresh orders.
    """

    name = "base"
    requires_labels = False  # may labels be None?
    balances_classes = False  # must every given label be a class (no unlabelled examples)?

    def __init__(
        self,
        labels: Sequence[int | None] | None,
        batch_size: int,
        *,
        lengths: Sequence[float] | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        drop_last: bool = False,
        group_by_length: bool = False,
        max_batch_seconds: float | None = None,
    ):
        self.batch_size = _check_int("batch_size", batch_size, 1)
        if max_batch_seconds is not None and not (
            isinstance(max_batch_seconds, numbers.Real) and math.isfinite(max_batch_seconds) and max_batch_seconds > 0
        ):
            raise ValueError(f"max_batch_seconds must be a positive number of seconds, got {max_batch_seconds!r}")
        self.max_batch_seconds = None if max_batch_seconds is None else float(max_batch_seconds)
        self.seed = _check_int("seed", seed, 0)
        self.num_replicas = _check_int("num_replicas", num_replicas, 1)
        self.rank = _check_int("rank", rank, 0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank {rank} is out of range for num_replicas={num_replicas}")
        self.drop_last = bool(drop_last)
        self.group_by_length = bool(group_by_length)

        self.labels = None if labels is None else _as_label_array(labels)
        if self.labels is None and self.requires_labels:
            raise ValueError(f"{type(self).__name__} needs per-example class labels, got labels=None")
        n = self._infer_size(lengths)
        if n == 0:
            raise ValueError("cannot sample from an empty dataset (0 examples)")
        self.num_examples = n
        self.lengths = None if lengths is None else _as_float_array("lengths", lengths, n)
        if self.group_by_length and self.lengths is None:
            raise ValueError("group_by_length=True needs per-example `lengths`")
        if self.max_batch_seconds is not None and self.lengths is None:
            raise ValueError("max_batch_seconds needs per-example `lengths` (durations in seconds)")
        if self.labels is not None and self.balances_classes:
            self._reject_unlabelled()
        self._epoch = 0
        self._epoch_explicit = False
        self._setup()
        if len(self) == 0:
            raise ValueError(
                f"{type(self).__name__} would yield no batches: {self.num_draws} draws per epoch over "
                f"{self.num_replicas} replica(s) cannot fill one batch of {self.batch_size} with drop_last=True"
            )

    def _infer_size(self, lengths) -> int:
        if self.labels is not None:
            n = len(self.labels)
        elif lengths is not None:
            n = len(lengths)
        else:
            raise ValueError(f"{type(self).__name__} needs `labels` or `lengths` to know the dataset size")
        return n

    def _reject_unlabelled(self) -> None:
        missing = np.flatnonzero(self.labels == UNLABELLED)
        if missing.size:
            first = missing[:5].tolist()
            raise ValueError(
                f"{type(self).__name__} ('{self.name}') balances classes, so every example needs a "
                f"label, but {missing.size} of {self.num_examples} are unlabelled (-1/-100/None), first at "
                f"indices {first}; drop or label them first"
            )

    # --- subclass hooks -------------------------------------------------------------------------

    def _setup(self) -> None:
        """Precompute what ``_draw`` needs; runs after the common inputs are validated."""

    @property
    def num_draws(self) -> int:
        """How many indices one epoch's global draw holds (before rank padding/truncation)."""
        raise NotImplementedError

    def _draw(self, rng: np.random.Generator) -> np.ndarray:
        """The epoch's global index order (int64, length ``num_draws``)."""
        raise NotImplementedError

    # --- epochs ---------------------------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch the next ``iter()`` will draw."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Pin the epoch (reseeds the draw); it stays in force until set again."""
        self._epoch = _check_int("epoch", epoch, 0)
        self._epoch_explicit = True

    def _rng(self, epoch: int, stream: int, rank: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.seed, _check_int("epoch", epoch, 0), stream, rank])

    def epoch_draw(self, epoch: int) -> np.ndarray:
        """The global (all-rank) index order of ``epoch``; identical on every rank."""
        return self._draw(self._rng(epoch, _DRAW_STREAM))

    # --- sharding and batching ------------------------------------------------------------------

    @property
    def _per_rank(self) -> int:
        if self.drop_last:
            return (self.num_draws // (self.num_replicas * self.batch_size)) * self.batch_size
        return math.ceil(self.num_draws / self.num_replicas)

    def __len__(self) -> int:
        if self.max_batch_seconds is not None:
            return len(self.epoch_batches(self._epoch))
        if self.drop_last:
            return self._per_rank // self.batch_size
        return math.ceil(self._per_rank / self.batch_size)

    def rank_share(self, epoch: int) -> np.ndarray:
        """This rank's indices of ``epoch`` in draw order (padded/truncated as the class doc says)."""
        total = self._per_rank * self.num_replicas
        draw = np.resize(self.epoch_draw(epoch), total)  # np.resize repeats from the start
        return draw[self.rank :: self.num_replicas]

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` in the order ``iter()`` yields them."""
        if self.max_batch_seconds is not None:
            return self._seconds_budget_batches(epoch)
        share = self.rank_share(epoch)
        if self.group_by_length:
            return self._length_grouped(share, epoch)
        return [share[i : i + self.batch_size].tolist() for i in range(0, len(share), self.batch_size)]

    def _length_grouped(self, share: np.ndarray, epoch: int) -> list[list[int]]:
        """Sort within mega-batch windows so batches hold similar lengths (less padding), then
        shuffle the batch order so long and short batches stay mixed over the epoch."""
        window = self.batch_size * MEGABATCH_FACTOR  # a multiple of batch_size: one short batch at most
        batches = []
        for start in range(0, len(share), window):
            mega = share[start : start + window]
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            batches.extend(mega[i : i + self.batch_size].tolist() for i in range(0, len(mega), self.batch_size))
        # Shuffle the full batches only; a short batch stays last, where it falls without grouping (every
        # rank then runs the same sequence of full/short steps, which distributed training relies on).
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) != self.batch_size]
        order = self._rng(epoch, _BATCH_ORDER_STREAM, self.rank).permutation(len(full))
        return [full[i] for i in order] + short

    def _seconds_budget_batches(self, epoch: int) -> list[list[int]]:
        """Global batches filling ``max_batch_seconds`` of padded audio, then this rank's share."""
        draw = self.epoch_draw(epoch)
        window = self.batch_size * MEGABATCH_FACTOR
        budget = self.max_batch_seconds
        batches: list[list[int]] = []
        for start in range(0, len(draw), window):
            mega = draw[start : start + window]
            mega = mega[np.argsort(-self.lengths[mega], kind="stable")]
            current: list[int] = []
            longest = 0.0
            for index, length in zip(mega.tolist(), self.lengths[mega].tolist()):
                # Sorted longest first: the batch's padded length is its first element's.
                if current and max(longest, length) * (len(current) + 1) > budget:
                    batches.append(current)
                    current, longest = [], 0.0
                current.append(index)
                longest = max(longest, length)
            if current:
                batches.append(current)
        order = self._rng(epoch, _BATCH_ORDER_STREAM).permutation(len(batches))
        batches = [batches[i] for i in order]
        replicas = self.num_replicas
        if self.drop_last:
            batches = batches[: len(batches) // replicas * replicas]
        elif len(batches) % replicas:
            batches = batches + batches[: replicas - len(batches) % replicas]
        return batches[self.rank :: replicas]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self._epoch
        if not self._epoch_explicit:
            self._epoch += 1
        return iter(self.epoch_batches(epoch))

    # --- reporting ------------------------------------------------------------------------------

    def epoch_class_counts(self, epoch: int | None = None) -> dict[int, int]:
        """Times each class id is drawn in ``epoch`` (default: the next one), over all ranks and
        without rank padding. Classes run 0..max label; unlabelled draws appear under -1."""
        if self.labels is None:
            raise ValueError(f"{type(self).__name__} was built without labels, so it has no class counts")
        drawn = self.labels[self.epoch_draw(self._epoch if epoch is None else epoch)]
        return _count_classes(drawn, int(self.labels.max()))

    def describe(self, epoch: int | None = None) -> dict:
        """A loggable summary of the sampler and of one epoch's class mix."""
        info = {
            "sampler": self.name,
            "num_examples": self.num_examples,
            "draws_per_epoch": self.num_draws,
            "batch_size": self.batch_size,
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "batches_per_rank": len(self),
            "drop_last": self.drop_last,
            "group_by_length": self.group_by_length,
            "max_batch_seconds": self.max_batch_seconds,
            "epoch": self._epoch if epoch is None else epoch,
        }
        if self.labels is not None:
            info["dataset_class_counts"] = _count_classes(self.labels, int(self.labels.max()))
            info["epoch_class_counts"] = self.epoch_class_counts(info["epoch"])
        return info


def _count_classes(labels: np.ndarray, max_label: int) -> dict[int, int]:
    counts = {c: 0 for c in range(max_label + 1)}
    if (labels == UNLABELLED).any():
        counts[UNLABELLED] = 0
    values, freq = np.unique(labels, return_counts=True)
    counts.update({int(v): int(f) for v, f in zip(values, freq)})
    return counts


class RandomBatchSampler(SERBatchSampler):
    """No balancing: each example once per epoch in a fresh random order."""

    name = "none"

    @property
    def num_draws(self) -> int:
        return self.num_examples

    def _draw(self, rng):
        return rng.permutation(self.num_examples)


class _ClassBalancedSampler(SERBatchSampler):
    """Shared set-up for samplers that need every example's class."""

    requires_labels = True
    balances_classes = True

    def _setup(self):
        self.class_indices = [np.flatnonzero(self.labels == c) for c in range(int(self.labels.max()) + 1)]
        self._present = [idx for idx in self.class_indices if idx.size]


class BalancedUpSampler(_ClassBalancedSampler):
    """Every non-empty class drawn as often as the largest one: all of a class's examples appear,
    then it repeats in fresh random orders until it reaches the largest class's count."""

    name = "up"

    @property
    def num_draws(self) -> int:
        return len(self._present) * max(idx.size for idx in self._present)

    def _draw(self, rng):
        target = max(idx.size for idx in self._present)
        parts = []
        for idx in self._present:
            rounds = [rng.permutation(idx) for _ in range(math.ceil(target / idx.size))]
            parts.append(np.concatenate(rounds)[:target])
        return rng.permutation(np.concatenate(parts))


class BalancedDownSampler(_ClassBalancedSampler):
    """Every non-empty class cut to the smallest one's count, a fresh random subset each epoch."""

    name = "down"

    @property
    def num_draws(self) -> int:
        return len(self._present) * min(idx.size for idx in self._present)

    def _draw(self, rng):
        target = min(idx.size for idx in self._present)
        parts = [rng.choice(idx, size=target, replace=False) for idx in self._present]
        return rng.permutation(np.concatenate(parts))


class WeightedRandomBatchSampler(SERBatchSampler):
    """``num_examples`` draws with replacement, probability proportional to a per-example weight.

    The default weight is the inverse frequency of the example's class, so each class is expected
    equally often. Explicit ``replacement_weights`` need no labels (``labels=None`` is allowed), but
    labels that are given must all be present, as for the other balancing samplers.
    """

    name = "weighted"
    balances_classes = True

    def __init__(self, labels, batch_size, *, replacement_weights=None, **kwargs):
        self.requires_labels = replacement_weights is None
        self._given_weights = replacement_weights
        super().__init__(labels, batch_size, **kwargs)

    def _infer_size(self, lengths) -> int:
        if self.labels is None and lengths is None and self._given_weights is not None:
            return len(self._given_weights)
        return super()._infer_size(lengths)

    def _setup(self):
        if self._given_weights is None:
            weights = 1.0 / np.bincount(self.labels)[self.labels]
        else:
            weights = _as_float_array("replacement_weights", self._given_weights, self.num_examples)
            if weights.sum() <= 0:
                raise ValueError("replacement_weights are all zero: nothing could be drawn")
        self.weights = weights
        self._probs = weights / weights.sum()

    @property
    def num_draws(self) -> int:
        return self.num_examples

    def _draw(self, rng):
        return rng.choice(self.num_examples, size=self.num_examples, replace=True, p=self._probs)


SAMPLERS: dict[str, type[SERBatchSampler]] = {
    "none": RandomBatchSampler,
    "random": RandomBatchSampler,
    "up": BalancedUpSampler,
    "down": BalancedDownSampler,
    "weighted": WeightedRandomBatchSampler,
}


def build_batch_sampler(
    name: str | None,
    labels: Sequence[int | None] | None,
    batch_size: int,
    *,
    lengths: Sequence[float] | None = None,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    drop_last: bool = False,
    group_by_length: bool = False,
    max_batch_seconds: float | None = None,
    replacement_weights: Sequence[float] | None = None,
) -> SERBatchSampler:
    """Sampler for a config's balancing name ("none"/"random", "up", "down", "weighted"; None = "none")."""
    key = "none" if name is None else str(name).strip().lower()
    if key not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    kwargs = dict(
        lengths=lengths,
        seed=seed,
        num_replicas=num_replicas,
        rank=rank,
        drop_last=drop_last,
        group_by_length=group_by_length,
        max_batch_seconds=max_batch_seconds,
    )
    if replacement_weights is not None:
        if SAMPLERS[key] is not WeightedRandomBatchSampler:
            raise ValueError(f"replacement_weights only apply to the 'weighted' sampler, not {name!r}")
        kwargs["replacement_weights"] = replacement_weights
    return SAMPLERS[key](labels, batch_size, **kwargs)
