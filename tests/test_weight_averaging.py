"""``average_last_epochs``: the final model is the mean of the last k end-of-epoch weights, and a run
killed after a checkpoint and resumed ends with the very same averaged weights."""
from __future__ import annotations

import json
import signal

import pytest
import torch

from ser_hf.training_args import SERTrainingArguments
from ser_hf.weight_averaging import EpochWeightAveraging, average_state_dicts
from test_resume import _checkpoints, _config, _ok, _start, _train, _wait, _weights, assert_same_weights


def test_final_model_is_the_mean_of_the_last_k_epochs_and_resume_is_exact(tiny_manifest, tmp_path):
    """3 epochs of 5 steps, a checkpoint per epoch (5, 10, 15), the last 2 epochs averaged."""
    settings = dict(num_train_epochs=3, save_strategy="epoch", average_last_epochs=2)
    ref, out = tmp_path / "reference", tmp_path / "run"
    reference = _start(_config(tmp_path / "ref.yaml", tiny_manifest, ref, **settings))
    config = _config(tmp_path / "config.yaml", tiny_manifest, out, **settings)
    killed = _train(config, SER_HF_TEST_SIGNAL="SIGKILL@10")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _checkpoints(out) == ["checkpoint-5", "checkpoint-10"]
    _ok(_train(config, "--resume_from_checkpoint", "last"))
    _ok(_wait(reference))
    assert_same_weights(out, ref)
    assert json.loads((ref / "train_metrics.json").read_text())["train_cpu_seconds"] > 0

    final, epoch2, epoch3 = _weights(ref), _weights(ref / "checkpoint-10"), _weights(ref / "checkpoint-15")
    expected = average_state_dicts([epoch2, epoch3])
    floats = [name for name in final if final[name].is_floating_point()]
    assert floats
    for name in floats:
        torch.testing.assert_close(final[name], expected[name].to(final[name].dtype), atol=1e-6, rtol=1e-6)
    # teeth: the average is neither end point
    assert any(not torch.equal(final[name], epoch3[name]) for name in floats)
    assert any(not torch.equal(final[name], epoch2[name]) for name in floats)


def test_snapshots_keep_only_the_last_k_and_a_checkpoint_without_them_is_refused(tmp_path):
    averaging = EpochWeightAveraging(2)
    model = torch.nn.Linear(2, 1)
    for value in (1.0, 2.0, 4.0):
        torch.nn.init.constant_(model.weight, value)
        averaging.on_epoch_end(None, None, None, model=model)
    averaging.save(str(tmp_path))
    restored = EpochWeightAveraging(2)
    restored.load(str(tmp_path))
    restored.on_train_end(None, None, None, model=model)
    assert torch.allclose(model.weight, torch.full((1, 2), 3.0))  # mean of the last two: (2 + 4) / 2
    with pytest.raises(ValueError, match="average_last_epochs"):
        EpochWeightAveraging(2).load(str(tmp_path / "elsewhere"))


def test_contradictory_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=">= 0"):
        SERTrainingArguments(output_dir=str(tmp_path), average_last_epochs=-1)
    with pytest.raises(ValueError, match="load_best_model_at_end"):
        SERTrainingArguments(output_dir=str(tmp_path), average_last_epochs=2, load_best_model_at_end=True,
                             eval_strategy="epoch", save_strategy="epoch")
