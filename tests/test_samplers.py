"""Batch samplers: exact class mixes, reproducible epochs, rank sharding, length grouping, bad input."""
from collections import Counter

import numpy as np
import pytest

from ser_hf.samplers import (
    MEGABATCH_FACTOR,
    BalancedDownSampler,
    BalancedUpSampler,
    RandomBatchSampler,
    WeightedRandomBatchSampler,
    build_batch_sampler,
)

# Class 2 is empty on purpose: an id in range with no examples must just be skipped.
LABELS = [0] * 5 + [1] * 2 + [3] * 9
ALL_NAMES = ["none", "up", "down", "weighted"]


def flat(batches):
    return [i for b in batches for i in b]


def drawn_classes(sampler, batches):
    return Counter(sampler.labels[flat(batches)].tolist())


def test_names_map_to_classes():
    expected = {
        "none": RandomBatchSampler,
        "random": RandomBatchSampler,
        None: RandomBatchSampler,
        "up": BalancedUpSampler,
        " Down ": BalancedDownSampler,
        "weighted": WeightedRandomBatchSampler,
    }
    for name, cls in expected.items():
        assert type(build_batch_sampler(name, LABELS, 4)) is cls
    with pytest.raises(ValueError, match="unknown sampler 'balanced'"):
        build_batch_sampler("balanced", LABELS, 4)


@pytest.mark.parametrize("epoch", [0, 1, 7])
def test_up_every_class_to_largest_and_every_index_seen(epoch):
    sampler = build_batch_sampler("up", LABELS, 4, seed=3)
    sampler.set_epoch(epoch)
    batches = list(sampler)
    assert drawn_classes(sampler, batches) == {0: 9, 1: 9, 3: 9}
    assert sampler.epoch_class_counts(epoch) == {0: 9, 1: 9, 2: 0, 3: 9}
    assert set(flat(batches)) == set(range(len(LABELS)))
    counts = Counter(flat(batches))
    # Class 1 (2 examples -> 9 draws): complete rounds first, so each index 4 or 5 times.
    assert sorted(counts[i] for i in (5, 6)) == [4, 5]
    assert all(counts[i] == 1 for i in range(7, 16))


def test_down_every_class_to_smallest_with_fresh_subsets():
    sampler = build_batch_sampler("down", LABELS, 2, seed=1)
    subsets = set()
    for epoch in range(6):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert drawn_classes(sampler, batches) == {0: 2, 1: 2, 3: 2}
        assert sampler.epoch_class_counts(epoch) == {0: 2, 1: 2, 2: 0, 3: 2}
        assert len(set(flat(batches))) == 6  # a subset: no repeats within an epoch
        subsets.add(frozenset(flat(batches)))
    assert len(subsets) > 1


def test_none_is_a_permutation_and_keeps_unlabelled():
    labels = LABELS + [None, -1, -100]
    sampler = build_batch_sampler("none", labels, 5)
    batches = list(sampler)
    assert sorted(flat(batches)) == list(range(len(labels)))
    assert [len(b) for b in batches] == [5, 5, 5, 4]
    assert sampler.epoch_class_counts(0) == {0: 5, 1: 2, 2: 0, 3: 9, -1: 3}
    # Without labels the size comes from lengths.
    assert sorted(flat(build_batch_sampler("none", None, 3, lengths=[1.0] * 7))) == list(range(7))


def test_weighted_is_approximately_balanced():
    labels = [0] * 800 + [1] * 150 + [2] * 50
    sampler = build_batch_sampler("weighted", labels, 32, seed=0)
    for epoch in range(3):
        counts = sampler.epoch_class_counts(epoch)
        assert sum(counts.values()) == 1000
        # Binomial(1000, 1/3): sd ~15, so +-60 is 4 sd on a fixed seed.
        assert all(abs(counts[c] - 1000 / 3) < 60 for c in range(3)), counts
    # The raw data is 80/15/5, so this is far from what a plain shuffle gives.
    assert build_batch_sampler("none", labels, 32).epoch_class_counts(0) == {0: 800, 1: 150, 2: 50}


def test_weighted_with_explicit_weights():
    weights = [0.0] * 10 + [1.0] * 10
    sampler = build_batch_sampler("weighted", None, 4, replacement_weights=weights, seed=2)
    drawn = flat(sampler)
    assert len(drawn) == 20 and set(drawn) <= set(range(10, 20))
    with pytest.raises(ValueError, match="replacement_weights has 3 entries but the dataset has 20"):
        build_batch_sampler("weighted", [0] * 20, 4, replacement_weights=[1.0] * 3)
    with pytest.raises(ValueError, match=r"replacement_weights\[1\] = -1.0"):
        build_batch_sampler("weighted", None, 4, replacement_weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="all zero"):
        build_batch_sampler("weighted", None, 4, replacement_weights=[0.0, 0.0])
    with pytest.raises(ValueError, match="only apply to the 'weighted'"):
        build_batch_sampler("up", LABELS, 4, replacement_weights=[1.0] * len(LABELS))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_reseeding_and_reproducibility(name):
    def make(seed=0):
        return build_batch_sampler(name, LABELS, 3, seed=seed)

    a, b = make(), make()
    a.set_epoch(4)
    b.set_epoch(4)
    assert list(a) == list(b)
    assert a.epoch_batches(0) != a.epoch_batches(1)
    assert make(seed=0).epoch_batches(0) != make(seed=1).epoch_batches(0)

    # No set_epoch: each iter() moves on to the next epoch.
    plain = make()
    assert [list(plain) for _ in range(3)] == [make().epoch_batches(e) for e in range(3)]
    # An explicit epoch sticks, however often the sampler is iterated.
    pinned = make()
    pinned.set_epoch(2)
    assert list(pinned) == list(pinned) == make().epoch_batches(2)


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("num_replicas", [2, 3])
def test_ranks_split_the_epoch_draw(name, num_replicas):
    # 29 examples, "up" draws 35, "down" 25: none divisible by 2 or 3, so padding is exercised.
    labels = [0] * 7 + [1] * 5 + [2] * 6 + [3] * 5 + [4] * 6
    ranks = [
        build_batch_sampler(name, labels, 4, seed=5, num_replicas=num_replicas, rank=r)
        for r in range(num_replicas)
    ]
    single = build_batch_sampler(name, labels, 4, seed=5)
    for s in ranks:
        s.set_epoch(1)
    draw = single.epoch_draw(1).tolist()
    assert all(s.epoch_draw(1).tolist() == draw for s in ranks)

    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1  # same number of batches everywhere
    assert all(len(b) == len(s) for b, s in zip(per_rank, ranks))

    # Union over ranks == the draw plus the documented wrap-around padding (its first few items).
    pad = -len(draw) % num_replicas
    assert pad > 0
    union = Counter()
    for batches in per_rank:
        union.update(flat(batches))
    assert union == Counter(draw) + Counter(draw[:pad])


def test_ranks_are_disjoint_without_padding():
    ranks = [build_batch_sampler("none", [0, 1] * 12, 5, num_replicas=2, rank=r) for r in (0, 1)]
    a, b = (set(flat(s)) for s in ranks)
    assert not a & b and a | b == set(range(24))


@pytest.mark.parametrize("name", ALL_NAMES)
def test_drop_last_gives_full_equal_batches(name):
    labels = [0] * 13 + [1] * 4 + [2] * 6
    ranks = [build_batch_sampler(name, labels, 4, drop_last=True, num_replicas=2, rank=r) for r in (0, 1)]
    draw = Counter(ranks[0].epoch_draw(0).tolist())
    batches = [list(s) for s in ranks]
    assert len(batches[0]) == len(batches[1]) == len(ranks[0]) == ranks[0].num_draws // 8
    assert all(len(b) == 4 for bs in batches for b in bs)
    union = Counter(flat(batches[0]) + flat(batches[1]))
    assert not union - draw  # only a tail of the draw is dropped, nothing invented
    assert sum(draw.values()) - sum(union.values()) < 8


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_matches_iteration(name, drop_last):
    for batch_size in (1, 4, 5, 6):  # "down" draws only 6 per epoch
        s = build_batch_sampler(name, LABELS, batch_size, drop_last=drop_last)
        assert len(list(s)) == len(s) > 0
        assert s.describe(0)["batches_per_rank"] == len(s)


def test_length_grouping_cuts_padding_and_keeps_the_share():
    rng = np.random.default_rng(0)
    n, batch_size = 1200, 8
    lengths = rng.integers(16_000, 160_000, size=n)
    labels = rng.integers(0, 4, size=n)

    def padding(batches):
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches)

    for name in ALL_NAMES:
        kwargs = dict(lengths=lengths, seed=1, num_replicas=2, rank=1)
        plain = build_batch_sampler(name, labels, batch_size, **kwargs)
        grouped = build_batch_sampler(name, labels, batch_size, group_by_length=True, **kwargs)
        pb, gb = plain.epoch_batches(0), grouped.epoch_batches(0)
        assert len(gb) == len(pb) == len(grouped)
        assert Counter(flat(gb)) == Counter(flat(pb))  # same examples, only regrouped
        assert padding(gb) < 0.25 * padding(pb), name
        # Exactly the batches of the rank's share sorted window by window, in shuffled order.
        share, window = np.array(flat(pb)), batch_size * MEGABATCH_FACTOR
        assert len(share) > window  # more than one mega-batch is exercised
        expected = []
        for start in range(0, len(share), window):
            mega = share[start : start + window]
            mega = mega[np.argsort(-lengths[mega], kind="stable")].tolist()
            expected += [mega[i : i + batch_size] for i in range(0, len(mega), batch_size)]
        assert sorted(gb) == sorted(expected) and gb != expected


def test_length_grouping_needs_lengths():
    with pytest.raises(ValueError, match="group_by_length=True needs per-example `lengths`"):
        build_batch_sampler("up", LABELS, 4, group_by_length=True)
    with pytest.raises(ValueError, match="lengths has 3 entries but the dataset has 16"):
        build_batch_sampler("up", LABELS, 4, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match=r"lengths\[1\] = nan"):
        build_batch_sampler("none", None, 4, lengths=[1.0, float("nan")])


@pytest.mark.parametrize("name", ["up", "down", "weighted"])
def test_unlabelled_examples_rejected_by_balancing_samplers(name):
    labels = [0, 1, None, 1, -1, 0, -100]  # -100: the HF ignore_index the trainer passes
    with pytest.raises(ValueError, match=r"3 of 7 are unlabelled.*indices \[2, 4, 6\]"):
        build_batch_sampler(name, labels, 2)
    with pytest.raises(ValueError, match="4 of 4 are unlabelled"):
        build_batch_sampler(name, [None] * 4, 2)
    with pytest.raises(ValueError, match="needs per-example class labels"):
        build_batch_sampler(name, None, 2, lengths=[1.0] * 4)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"labels\[1\] = 'H'.*map class names to ids"):
        build_batch_sampler("up", [0, "H"], 2)
    with pytest.raises(ValueError, match=r"labels\[0\] = -2"):
        build_batch_sampler("none", [-2, 0], 2)
    with pytest.raises(ValueError, match="rank 2 is out of range for num_replicas=2"):
        build_batch_sampler("none", LABELS, 2, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        build_batch_sampler("none", LABELS, 0)
    with pytest.raises(ValueError, match="empty dataset"):
        build_batch_sampler("none", [], 2)
    with pytest.raises(ValueError, match="empty dataset"):
        build_batch_sampler("weighted", None, 2, replacement_weights=[])
    with pytest.raises(ValueError, match="would yield no batches"):
        build_batch_sampler("down", LABELS, 4, drop_last=True, num_replicas=2)  # 6 draws < 2 * 4
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        build_batch_sampler("none", LABELS, 2).set_epoch(-1)


def test_numpy_and_torch_labels_and_dataloader():
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    np_sampler = build_batch_sampler("up", np.array(LABELS), 4, seed=9)
    torch_sampler = build_batch_sampler("up", torch.tensor(LABELS), 4, seed=9)
    assert np_sampler.epoch_batches(0) == torch_sampler.epoch_batches(0)

    dataset = list(range(100, 100 + len(LABELS)))
    loader = DataLoader(dataset, batch_sampler=np_sampler, collate_fn=list)
    got = list(loader)
    assert len(loader) == len(np_sampler) == len(got)
    assert got == [[100 + i for i in b] for b in torch_sampler.epoch_batches(0)]


def test_describe_reports_the_mix():
    info = build_batch_sampler("up", LABELS, 4, num_replicas=2, rank=1).describe(0)
    assert info["sampler"] == "up"
    assert info["dataset_class_counts"] == {0: 5, 1: 2, 2: 0, 3: 9}
    assert info["epoch_class_counts"] == {0: 9, 1: 9, 2: 0, 3: 9}
    assert info["draws_per_epoch"] == 27 and info["batches_per_rank"] == 4  # ceil(27/2)=14 -> 4 batches
