"""Exact resume: a real `ser-hf train` run interrupted (kill -9 right after a checkpoint, or SIGTERM)
and resumed with ``--resume_from_checkpoint last`` ends with the very weights of an uninterrupted run.

The runs use random training crops (0.5 s windows of 0.4-1.2 s files), balanced up-sampling,
dropout, layer drop and SpecAugment masking, so the sampler position, the per-example crop draws and
every process's RNG state must all be restored for the weights to match bit for bit.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import TINY_LABELS
from ser_hf.tiny import tiny_speech_backbone

PREEMPTED = 75


def _config(path, manifest, output_dir, **overrides) -> str:
    values = dict(
        corpus="manifest", data_path=manifest, labels=TINY_LABELS, task="categorical", modality="speech",
        backbone_config=tiny_speech_backbone(), freeze_feature_encoder=False, head_hidden_size=16,
        max_audio_seconds=0.5, per_device_train_batch_size=4, num_train_epochs=2, sampler="up",
        learning_rate=3e-3, save_strategy="steps", save_steps=3, eval_strategy="no", test_split="none",
        report_to="none", disable_tqdm=True, output_dir=str(output_dir), use_cpu=True, seed=7,
        dataloader_num_workers=0, logging_steps=100, validate_audio=False,
    )
    values.update(overrides)
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    env.pop("SER_HF_TEST_SIGNAL", None)
    env.update(extra)
    return env


def _start(config: str, *extra_args: str, processes: int = 1, **env) -> subprocess.Popen:
    if processes == 1:
        launcher = [sys.executable, "-m", "ser_hf.cli"]
    else:
        from test_distributed import _free_port

        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
                    "--main_process_port", str(_free_port()), "--num_machines", "1", "--mixed_precision", "no",
                    "--dynamo_backend", "no", "-m", "ser_hf.cli"]
    # Output goes to temporary files: a pipe nobody reads while the test waits could fill up.
    logs = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    process = subprocess.Popen([*launcher, "train", "--config", config, *extra_args], env=_env(**env),
                               stdout=logs[0], stderr=logs[1], text=True)
    process.logs = logs
    return process


def _wait(process: subprocess.Popen) -> subprocess.CompletedProcess:
    process.wait(timeout=300)
    stdout, stderr = (log.seek(0) or log.read() for log in process.logs)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _train(config: str, *extra_args: str, processes: int = 1, **env) -> subprocess.CompletedProcess:
    return _wait(_start(config, *extra_args, processes=processes, **env))


def _ok(done: subprocess.CompletedProcess, code: int = 0) -> None:
    assert done.returncode == code, f"exit {done.returncode}\n" + done.stdout[-3000:] + done.stderr[-6000:]


def _weights(folder) -> dict[str, torch.Tensor]:
    return load_file(os.path.join(folder, "model.safetensors"))


def assert_same_weights(a, b) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [name for name in wa if not torch.equal(wa[name], wb[name])]
    assert not different, f"{len(different)} of {len(wa)} tensors differ, e.g. {different[:3]}"


def _checkpoints(folder) -> list[str]:
    return sorted((p for p in os.listdir(folder) if p.startswith("checkpoint-")), key=lambda p: int(p.split("-")[1]))


def test_kill_9_then_sigterm_then_resume_gives_the_weights_of_an_uninterrupted_run(tiny_manifest, tmp_path):
    """10 steps (2 epochs x 5 batches of the up-sampled 18 draws), checkpoints every 3 steps.

    kill -9 right after checkpoint-3 is saved; ``--resume_from_checkpoint last`` continues until a
    SIGTERM at step 7 (not a save step: the signal makes the save, exit 75); resuming from
    checkpoint-7 by path finishes the run. The reference run goes alongside the first leg.
    """
    ref, out = tmp_path / "reference", tmp_path / "run"
    reference = _start(_config(tmp_path / "ref.yaml", tiny_manifest, ref))
    config = _config(tmp_path / "config.yaml", tiny_manifest, out)
    killed = _train(config, SER_HF_TEST_SIGNAL="SIGKILL@3")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert _checkpoints(out) == ["checkpoint-3"] and not (out / "model.safetensors").exists()

    stopped = _train(config, "--resume_from_checkpoint", "last", SER_HF_TEST_SIGNAL="SIGTERM@7")
    _ok(stopped, PREEMPTED)
    assert f"resuming from {out / 'checkpoint-3'}" in stopped.stderr
    assert "received SIGTERM" in stopped.stderr and "--resume_from_checkpoint last" in stopped.stderr
    assert _checkpoints(out) == ["checkpoint-3", "checkpoint-6", "checkpoint-7"]
    assert not (out / "model.safetensors").exists()  # the final model is only written by a finished run

    _ok(_train(config, "--resume_from_checkpoint", str(out / "checkpoint-7")))
    assert _checkpoints(out) == ["checkpoint-3", "checkpoint-6", "checkpoint-7", "checkpoint-9", "checkpoint-10"]
    _ok(_wait(reference))
    assert_same_weights(out, ref)
    # the test has teeth: an interrupted checkpoint is not the end state
    assert not all(torch.equal(_weights(out / "checkpoint-7")[k], v) for k, v in _weights(ref).items())


def test_resume_last_without_checkpoints_starts_fresh_and_bad_path_is_an_error(tmp_path):
    from ser_hf.resume import resolve_resume_checkpoint

    assert resolve_resume_checkpoint("last", str(tmp_path)) is None
    assert resolve_resume_checkpoint(None, str(tmp_path)) is None
    with pytest.raises(ValueError, match="not a folder"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-5"), str(tmp_path))
    half = tmp_path / "checkpoint-8"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"")  # killed while saving: no trainer_state.json
    good = tmp_path / "checkpoint-4"
    good.mkdir()
    (good / "model.safetensors").write_bytes(b"")
    (good / "trainer_state.json").write_text("{}")
    assert resolve_resume_checkpoint("last", str(tmp_path)) == str(good)
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        resolve_resume_checkpoint(str(half), str(tmp_path))


def test_train_with_a_bad_checkpoint_path_exits_2_before_reading_data(tmp_path, capsys):
    from ser_hf.cli import main as cli

    config = _config(tmp_path / "config.yaml", str(tmp_path / "no_manifest.csv"), tmp_path / "run")
    assert cli(["train", "--config", config, "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-9")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-9 is not a folder" in err and "Traceback" not in err and "no_manifest" not in err


def test_two_processes_kill_9_then_sigterm_then_resume_gives_identical_weights(tiny_manifest, tmp_path):
    """Two CPU processes (gloo), 2 rows each per step: kill -9 both after checkpoint-3, resume `last`
    until SIGTERM reaches rank 1 only at step 7 (both ranks stop and save at that step), resume `last`."""
    ref, out = tmp_path / "reference", tmp_path / "run"
    reference = _start(_config(tmp_path / "ref.yaml", tiny_manifest, ref, per_device_train_batch_size=2), processes=2)
    config = _config(tmp_path / "config.yaml", tiny_manifest, out, per_device_train_batch_size=2)
    killed = _train(config, processes=2, SER_HF_TEST_SIGNAL="SIGKILL@3")
    assert killed.returncode != 0
    assert _checkpoints(out) == ["checkpoint-3"] and not (out / "model.safetensors").exists()
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(out / "checkpoint-3"))
    stopped = _train(config, "--resume_from_checkpoint", "last", processes=2, SER_HF_TEST_SIGNAL="SIGTERM@7:1")
    assert stopped.returncode != 0 and stopped.stderr.count("received SIGTERM") == 1, stopped.stderr[-4000:]
    assert stopped.stderr.count("rerun the same command with --resume_from_checkpoint last") == 2  # both ranks stopped
    assert _checkpoints(out) == ["checkpoint-3", "checkpoint-6", "checkpoint-7"]
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(os.listdir(out / "checkpoint-7"))
    _ok(_train(config, "--resume_from_checkpoint", "last", processes=2))
    _ok(_wait(reference))
    assert_same_weights(out, ref)


def test_training_crops_are_a_function_of_seed_epoch_and_index(tiny_corpus):
    """The collator's crop draws depend only on (seed, epoch, index): no state carried between calls."""
    from ser_hf.data.collators import SERTargets, SpeechCollator
    from ser_hf.data.randomness import EPOCH_KEY, INDEX_KEY

    train = tiny_corpus["train"]
    index = int(np.argmax(train["duration"])) if "duration" in train.column_names else 0
    row = dict(train[index])
    collator = SpeechCollator(None, SERTargets(), max_seconds=0.3).train_mode(seed=3)

    def crop(epoch, idx=index, c=collator):
        return c.load({**row, EPOCH_KEY: epoch, INDEX_KEY: idx})

    first = crop(0)
    assert len(first) == int(0.3 * 16000)
    crop(5)  # a draw in between changes nothing
    np.testing.assert_array_equal(crop(0), first)
    assert any(not np.array_equal(crop(e), first) for e in range(1, 6))  # other epochs: other windows
    eval_collator = SpeechCollator(None, SERTargets(), max_seconds=0.3)
    np.testing.assert_array_equal(eval_collator.load(row), eval_collator.load(row))  # evaluation: from the start


def test_rows_carry_epoch_and_index_and_skipped_batches_are_never_read(tiny_corpus, tmp_path):
    """What the resumed Trainer does to the first epoch (accelerate's `skip_first_batches`): the
    skipped batches are dropped as index lists, so their rows are never fetched or decoded; the
    batches that follow carry the same (epoch, index) tags, hence the same crops, as in a full pass."""
    from accelerate import skip_first_batches

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.data.randomness import EPOCH_KEY, INDEX_KEY
    from ser_hf.modeling import SERModelForSpeech
    from ser_hf.trainer import SERTrainer
    from ser_hf.training_args import SERTrainingArguments

    seen = []

    class Recording:
        def train_mode(self, seed=None):
            return self

        def __call__(self, rows):
            seen.append([(row[EPOCH_KEY], row[INDEX_KEY], row["id"]) for row in rows])
            return {}

    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=TINY_LABELS, head_hidden_size=8)
    args = SERTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, sampler="up", seed=3,
                                report_to=[], use_cpu=True, disable_tqdm=True)
    trainer = SERTrainer(model=SERModelForSpeech(config), args=args, train_dataset=tiny_corpus["train"],
                         data_collator=Recording())
    loader = trainer.get_train_dataloader()
    loader.set_epoch(1)  # as Trainer._run_epoch does
    list(loader)
    full, seen[:] = list(seen), []
    assert len(full) == 5 and all(epoch == 1 for batch in full for epoch, _, _ in batch)
    ids = tiny_corpus["train"]["id"]
    assert all(ids[index] == row_id for batch in full for _, index, row_id in batch)
    skipped = skip_first_batches(loader, 3)
    skipped.set_epoch(1)
    list(skipped)
    assert seen == full[3:]  # only the last two batches were read, with the same tags
