"""Padding-free batching: cached durations, the seconds-budget sampler, length-sorted evaluation."""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_hf.data import durations as durations_module
from ser_hf.data.durations import CACHE_NAME, read_durations
from ser_hf.samplers import build_batch_sampler


# ------------------------------------------------------------------------------ durations cache
def _wavs(folder, seconds):
    paths = []
    for i, s in enumerate(seconds):
        path = os.path.join(folder, f"u{i}.wav")
        sf.write(path, np.zeros(int(s * 16000), dtype=np.float32), 16000)
        paths.append(path)
    return paths


def test_durations_are_read_once_cached_by_size_and_mtime(tmp_path, monkeypatch):
    paths = _wavs(str(tmp_path), [0.5, 1.0, 1.5])
    reads = Counter()
    real = durations_module._header_info
    monkeypatch.setattr(durations_module, "_header_info", lambda p: (reads.update([p]), real(p))[1])
    np.testing.assert_allclose(read_durations(paths, progress=False), [0.5, 1.0, 1.5])
    assert os.path.isfile(tmp_path / CACHE_NAME) and sum(reads.values()) == 3
    np.testing.assert_allclose(read_durations(paths, progress=False), [0.5, 1.0, 1.5])
    assert sum(reads.values()) == 3  # second launch: stat only, nothing decoded
    sf.write(paths[1], np.zeros(32000, dtype=np.float32), 16000)  # same name, new content
    os.utime(paths[1], ns=(1, 1))
    np.testing.assert_allclose(read_durations(paths, progress=False), [0.5, 2.0, 1.5])
    assert reads[paths[1]] == 2 and sum(reads.values()) == 4
    # Processes that wait for the main one take its table without stat-ing.
    monkeypatch.setattr(durations_module, "_stat", lambda p: pytest.fail("trust_cache must not stat"))
    np.testing.assert_allclose(read_durations(paths, progress=False, trust_cache=True), [0.5, 2.0, 1.5])


def test_unreadable_files_are_named_and_unwritable_folders_use_the_cache_dir(tmp_path, monkeypatch):
    os.makedirs(tmp_path / "a")
    paths = _wavs(str(tmp_path / "a"), [0.5])
    broken = tmp_path / "a" / "broken.wav"
    broken.write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match=r"1 audio file\(s\).*broken\.wav"):
        read_durations(paths + [str(broken)], progress=False)
    assert np.isnan(read_durations(paths + [str(broken)], progress=False, strict=False)[1])
    monkeypatch.setenv("SER_HF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(durations_module.os, "access", lambda *a: False)
    read_durations(paths, progress=False)
    assert len(list((tmp_path / "cache" / "durations").glob("*.parquet"))) == 1


# ------------------------------------------------------------------------------ seconds budget
def _msp_like(n, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(5.0), 0.45, n), 2.75, 11.0)
    labels = rng.choice(4, size=n, p=[0.55, 0.25, 0.15, 0.05])
    return lengths, labels


@pytest.mark.parametrize("sampler", ["none", "up"])
def test_seconds_budget_batches_fill_the_budget_and_keep_the_draw(sampler):
    lengths, labels = _msp_like(3000)
    s = build_batch_sampler(sampler, labels.tolist(), 32, lengths=lengths.tolist(), max_batch_seconds=120.0, seed=3)
    batches = s.epoch_batches(0)
    assert len(s) == len(batches)
    padded = [max(lengths[b]) * len(b) for b in batches]
    assert max(padded) <= 120.0
    real = sum(lengths[i] for b in batches for i in b)
    assert real / sum(padded) > 0.97  # almost no padding
    assert sum(padded) / len(padded) > 100.0  # the budget is filled, not wasted
    drawn = sorted(i for b in batches for i in b)
    assert drawn == sorted(s.epoch_draw(0).tolist())  # exactly the (class-balanced) draw
    if sampler == "up":
        counts = Counter(labels[drawn].tolist())
        assert len(set(counts.values())) == 1  # every class as often as the largest
    assert s.epoch_batches(1) != batches and s.epoch_batches(0) == batches  # reseeded, reproducible


def test_seconds_budget_is_shared_evenly_between_ranks():
    lengths, labels = _msp_like(1000, seed=1)
    ranks = [
        build_batch_sampler("up", labels.tolist(), 16, lengths=lengths.tolist(), max_batch_seconds=60.0, seed=0,
                            num_replicas=3, rank=r)
        for r in range(3)
    ]
    shares = [r.epoch_batches(2) for r in ranks]
    assert len({len(share) for share in shares}) == 1  # same number of steps on every rank
    single = build_batch_sampler("up", labels.tolist(), 16, lengths=lengths.tolist(), max_batch_seconds=60.0, seed=0)
    together = sorted(tuple(b) for share in shares for b in share)
    assert set(together) == {tuple(b) for b in single.epoch_batches(2)}  # the same batches, dealt out
    with pytest.raises(ValueError, match="max_batch_seconds"):
        build_batch_sampler("none", None, 4, lengths=[1.0, 2.0], max_batch_seconds=0)


# ------------------------------------------------------------------------------ trainer
def test_evaluation_sorted_by_length_returns_outputs_in_dataset_order(tiny_corpus, tmp_path):
    from test_trainer import make_trainer

    outputs = {}
    for grouped in (True, False):
        trainer = make_trainer(tiny_corpus, tmp_path / str(grouped), group_by_length=grouped, max_steps=1,
                               per_device_eval_batch_size=3)
        if grouped:
            sampler = trainer._get_eval_sampler(tiny_corpus["dev"])
            lengths = [sf.info(p).duration for p in tiny_corpus["dev"]["audio"][:]]
            assert list(sampler) == np.argsort(-np.asarray(lengths), kind="stable").tolist()
        outputs[grouped] = trainer.predict(tiny_corpus["dev"])
    np.testing.assert_array_equal(outputs[True].label_ids, outputs[False].label_ids)
    np.testing.assert_allclose(outputs[True].predictions, outputs[False].predictions, atol=1e-5)


def test_trainer_trains_with_a_seconds_budget(tiny_corpus, tmp_path):
    from test_trainer import make_trainer

    trainer = make_trainer(tiny_corpus, tmp_path, sampler="up", max_batch_seconds=3.0, max_steps=2)
    sampler = trainer.build_train_batch_sampler()
    lengths = np.asarray(trainer._train_lengths())
    assert all(max(lengths[b]) * len(b) <= 3.0 for b in sampler.epoch_batches(0))
    assert trainer.train().global_step == 2
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))


def test_lengths_of_an_audio_feature_column_come_from_headers_not_decoding(tiny_corpus, tmp_path):
    import datasets
    from test_trainer import make_trainer

    trainer = make_trainer(tiny_corpus, tmp_path)
    dev = tiny_corpus["dev"]
    expected = [sf.info(p).duration for p in dev["audio"][:]]
    hub_style = dev.cast_column("audio", datasets.Audio(sampling_rate=16000))
    np.testing.assert_allclose(trainer.dataset_lengths(hub_style), expected)
    np.testing.assert_allclose(trainer.dataset_lengths(dev, cap_seconds=0.5), np.minimum(expected, 0.5))
