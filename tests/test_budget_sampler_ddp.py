"""The seconds-budget sampler (``max_batch_seconds``) with up-sampling under two gloo processes:
the ranks run the same number of steps (no hang), and a run killed after a checkpoint resumes to the
weights of an uninterrupted one."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import soundfile as sf
from test_resume import _checkpoints, _config, _ok, _start, _train, _wait, assert_same_weights

from ser_hf.data.corpora import load_corpus
from ser_hf.samplers import build_batch_sampler

BUDGET = dict(max_batch_seconds=2.5, max_audio_seconds=1.2, per_device_train_batch_size=4, sampler="up",
              num_train_epochs=2, save_steps=2, group_by_length=True)


def _rank_batches(manifest, epoch):
    train = load_corpus("manifest", manifest)["train"]
    lengths = np.minimum([sf.info(p).duration for p in train["audio"]], BUDGET["max_audio_seconds"]).tolist()
    labels = [sorted(set(train["label"])).index(code) for code in train["label"]]
    return [
        build_batch_sampler("up", labels, 4, lengths=lengths, seed=7, num_replicas=2, rank=rank,
                            max_batch_seconds=BUDGET["max_batch_seconds"]).epoch_batches(epoch)
        for rank in (0, 1)
    ]


def test_budget_batches_agree_across_two_processes_and_resume_exactly(tiny_manifest, tmp_path):
    per_epoch = []
    for epoch in (0, 1):
        rank0, rank1 = _rank_batches(tiny_manifest, epoch)
        assert len(rank0) == len(rank1) and {len(b) for b in rank0 + rank1} != {4}  # budget-sized, not fixed
        per_epoch.append(len(rank0))
    ref, out = tmp_path / "reference", tmp_path / "run"
    reference = _start(_config(tmp_path / "ref.yaml", tiny_manifest, ref, **BUDGET), processes=2)
    config = _config(tmp_path / "config.yaml", tiny_manifest, out, **BUDGET)
    killed = _train(config, processes=2, SER_HF_TEST_SIGNAL="SIGKILL@2")
    assert killed.returncode != 0 and killed.returncode != -signal.SIGALRM
    assert _checkpoints(out) == ["checkpoint-2"] and not (out / "model.safetensors").exists()
    _ok(_train(config, "--resume_from_checkpoint", "last", processes=2))
    done = _wait(reference)  # _wait's timeout: a rank waiting for a batch the other never runs fails here
    _ok(done)
    last = _checkpoints(ref)[-1]
    state = json.loads((ref / last / "trainer_state.json").read_text())
    # Every budget batch is run: accelerate once held back each batch shorter than the nominal batch size.
    assert state["global_step"] == sum(per_epoch) and last == f"checkpoint-{sum(per_epoch)}"
    assert_same_weights(out, ref)
    assert os.path.isfile(out / "model.safetensors")
