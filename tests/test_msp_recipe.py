"""The MSP-Podcast recipe (recipes/msp_podcast/run.py) on a tiny corpus laid out like MSP-Podcast.

The end-to-end test runs every stage (transcribe, four fine-tunings, extraction, two fusion heads,
submission) with tiny randomly initialised models substituted through the recipe's override file,
in this process (``--launcher inprocess``: starting ~12 Python processes would cost more than the
training). What `accelerate launch` would run is checked separately with ``--dry_run``.
"""
import contextlib
import csv
import importlib.util
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from msp_fixture import CLASSES, build_msp_corpus, build_tiny_whisper

from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone, tokenizer_path

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "msp_podcast"


def _load_run():
    spec = importlib.util.spec_from_file_location("msp_podcast_run", RECIPE / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


run = _load_run()


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    """Train 16 + 2 O/X, Development 8 + 1, Test1 8, and 3 unlabelled Test3 files."""
    root = tmp_path_factory.mktemp("msp")
    return build_msp_corpus(root, test3=3, missing_transcripts=1)


def _read_csv(path):
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        return header, list(reader)


# ----------------------------------------------------------------------------------- recipe files
def test_every_stage_has_a_yaml_with_the_papers_settings():
    configs = {name: yaml.safe_load((RECIPE / f"{name}.yaml").read_text()) for name in run.STAGES[:-1]}
    for stage in run.SPEECH_STAGES:
        assert configs[stage]["backbone"] == "microsoft/wavlm-large"
        assert configs[stage]["max_audio_seconds"] == 12.0
        assert configs[stage]["learning_rate"] == 1e-5
    for stage in run.TEXT_STAGES:
        assert configs[stage]["backbone"] == "roberta-large"
    for stage in run.TRAIN_STAGES:
        assert configs[stage]["per_device_train_batch_size"] * configs[stage].get("gradient_accumulation_steps", 1) == 32
        assert configs[stage]["num_train_epochs"] == 20
        assert configs[stage]["activation"] == "mish"
    for stage in ("speech_cat", "text_cat"):
        assert (configs[stage]["loss"], configs[stage]["focal_gamma"]) == ("focal", 2.0)
    for stage in ("speech_dim", "text_dim"):
        assert configs[stage]["attribute_loss"] == "ccc"
    for stage in run.FUSION_STAGES:
        assert configs[stage]["activation"] == "mish"
    assert configs["transcribe"]["model"] == "openai/whisper-large-v3"
    assert configs["transcribe"]["transcript_source"] == "train=reference,default=asr"


def test_overrides_scopes_and_precedence(tmp_path):
    file = tmp_path / "o.yaml"
    file.write_text(yaml.safe_dump({"trainers": {"seed": 1}, "train": {"seed": 2, "num_train_epochs": 3}}))
    args = run.parse_args(
        ["--msp_root", "x", "--output_dir", "y", "--overrides", str(file), "--set", "speech_cat.seed=4", "--set", "text.tokenizer=/t"]
    )
    overrides = run.collect_overrides(args)
    assert run.stage_overrides("speech_cat", overrides) == {"seed": 4, "num_train_epochs": 3}
    assert run.stage_overrides("text_dim", overrides) == {"seed": 2, "num_train_epochs": 3, "tokenizer": "/t"}
    assert run.stage_overrides("fusion_dim", overrides) == {"seed": 1}
    assert run.stage_overrides("transcribe", overrides) == {}
    with pytest.raises(ValueError, match="unknown override scopes"):
        run.collect_overrides(run.parse_args(["--msp_root", "x", "--output_dir", "y", "--set", "speach.seed=1"]))
    with pytest.raises(ValueError, match="SCOPE.KEY=VALUE"):
        run.collect_overrides(run.parse_args(["--msp_root", "x", "--output_dir", "y", "--set", "seed=1"]))
    with pytest.raises(SystemExit):
        run.parse_args(["--msp_root", "x", "--output_dir", "y", "--stages", "speech_cat,dance"])


def test_dry_run_launches_every_stage_with_accelerate(msp, tmp_path, caplog):
    out = tmp_path / "run"
    argv = ["--msp_root", str(msp.root), "--output_dir", str(out), "--dry_run", "--accelerate_args", "--num_processes 2"]
    with caplog.at_level(logging.INFO, logger="msp_podcast"):
        assert run.main(argv) == 0
    commands = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert commands, "no stage commands were logged"
    for line in commands:
        assert " -m accelerate.commands.launch --num_processes 2" in line and " -m ser_hf.cli " in line, line
    transcribe = [line for line in commands if line.startswith("[transcribe")]
    # ASR is sharded over the processes too (ser_hf.transcription), like every other stage
    assert len(transcribe) == 2 and all(line.rstrip().split("--num_processes")[-1].split()[0] == "2" for line in transcribe)
    # the written configs are the recipe YAMLs with this run's paths
    speech = yaml.safe_load((out / "configs" / "speech_cat.yaml").read_text())
    assert speech["data_path"] == str(msp.root) and speech["output_dir"] == str(out / "speech_cat")
    assert speech["corpus_options"]["splits"]["Test3"] is None  # unlabelled: never trained on
    text = yaml.safe_load((out / "configs" / "text_dim.yaml").read_text())
    assert text["data_path"] == str(out / "transcripts" / "labelled.jsonl")
    extract = yaml.safe_load((out / "configs" / "extract_text_dim.yaml").read_text())
    assert extract["data_path"] == str(out / "transcripts" / "all.jsonl") and extract["split"] == "train+dev+test+test3"
    fusion = yaml.safe_load((out / "configs" / "fusion_dim.yaml").read_text())
    assert (fusion["audio_features"], fusion["text_features"]) == (str(out / "features" / "speech_dim"), str(out / "features" / "text_dim"))
    assert not (out / "speech_cat").exists()  # nothing ran


def test_unlabelled_audio_missing_from_the_labels_file_is_added(msp, tmp_path):
    root = tmp_path / "msp"
    fixture = build_msp_corpus(root, per_class={"Train": 1, "Development": 1}, extra={}, test3=2)
    labels = root / "Labels" / "labels_consensus.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(line for line in lines if not line.endswith(",Test3")) + "\n")
    test3 = fixture.file_names("Test3")
    for i, name in enumerate(test3):  # the challenge's naming of its evaluation files
        os.rename(root / "Audios" / name, root / "Audios" / f"MSP-PODCAST_test3_{i:04d}.wav")
    path = run.unlabelled_labels_file(str(root), "*test3*", "Test3", str(tmp_path / "out"))
    header, rows = _read_csv(path)
    assert header == list(run_columns())
    assert [r[0] for r in rows if r[-1] == "Test3"] == ["MSP-PODCAST_test3_0000.wav", "MSP-PODCAST_test3_0001.wav"]
    assert labels.read_text().count("Test3") == 0  # the original is untouched
    with pytest.raises(ValueError, match="matches no file"):
        run.unlabelled_labels_file(str(root), "*test9*", "Test3", str(tmp_path / "out"))


def run_columns():
    from ser_hf.data.corpora.msp_podcast import COLUMNS

    return COLUMNS


# ------------------------------------------------------------------------------------ end to end
def tiny_overrides(folder: Path) -> Path:
    """Tiny models and one short epoch everywhere; every other setting stays the recipe's."""
    overrides = {
        "train": dict(
            num_train_epochs=1,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=8,
            dataloader_num_workers=0,
            dataloader_persistent_workers=False,
            bf16=False,  # the recipe is bf16 for GPUs; this CPU test runs in float32
            logging_steps=1,
            head_hidden_size=16,
            disable_tqdm=True,
            seed=0,
        ),
        "speech": dict(
            backbone=None,
            backbone_config=tiny_speech_backbone("wavlm", hidden_size=32, num_layers=1),
            max_audio_seconds=2.0,
            max_eval_audio_seconds=2.0,
        ),
        "text": dict(
            backbone=None,
            backbone_config=tiny_text_backbone(hidden_size=32, num_layers=1),
            tokenizer=tokenizer_path(str(folder / "tokenizer")),
            max_text_length=32,
        ),
        "transcribe": dict(model=build_tiny_whisper(folder / "whisper"), dtype=None, language=None, batch_size=8),
        "extract": dict(batch_size=8, num_workers=0),
        "fusion": dict(num_train_epochs=2, per_device_train_batch_size=8, head_hidden_size=16, disable_tqdm=True),
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(overrides))
    return path


def fusion_outputs(out: Path, stage: str, ids: list[str]):
    """A saved fusion head run on the cached [audio, text] features of ``ids``, recomputed here."""
    from ser_hf.features import join_feature_datasets, load_features
    from ser_hf.modeling.fusion import SERFusionModel

    audio, text = run.FUSION_INPUTS[stage]
    joined = join_feature_datasets(
        {"audio": load_features(str(out / "features" / audio)), "text": load_features(str(out / "features" / text))}
    )
    by_id = dict(zip(joined["id"], joined["features"]))
    model = SERFusionModel.from_pretrained(out / stage).eval()
    with torch.inference_mode():
        return model(features=torch.tensor(np.asarray([by_id[i] for i in ids], dtype=np.float32)))


@contextlib.contextmanager
def time_limit(seconds: int):
    """Fail (rather than hang) when the block runs longer than ``seconds``; pytest-timeout is not a dependency."""

    def expired(signum, frame):
        raise TimeoutError(f"the recipe took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_recipe_runs_end_to_end_and_writes_challenge_files(msp, tmp_path, caplog):
    out = tmp_path / "run"
    argv = ["--msp_root", str(msp.root), "--output_dir", str(out), "--launcher", "inprocess"]
    argv += ["--overrides", str(tiny_overrides(tmp_path))]
    start = time.time()
    with time_limit(300):  # about a minute on two busy cores; the bound only catches a hang
        assert run.main(argv) == 0
    first_run = time.time() - start

    # transcripts: references for train, ASR for dev/test; text models train on the labelled splits
    # only, features are extracted from a manifest that also holds the unlabelled Test3
    summary = json.loads((out / "transcripts" / "labelled.jsonl.summary.json").read_text())
    assert summary["rows"]["train"] == {"reference": 18, "asr": 0}
    assert summary["rows"]["dev"] == {"reference": 0, "asr": 9}
    everything = json.loads((out / "transcripts" / "all.jsonl.summary.json").read_text())["rows"]
    assert everything["test3"] == {"reference": 0, "asr": 3} and everything["train"] == summary["rows"]["train"]
    assert "test3" not in summary["rows"]
    # four fine-tuned models, each evaluated on Test1
    for stage in run.TRAIN_STAGES:
        assert (out / stage / "model.safetensors").is_file()
        metrics = json.loads((out / stage / "test_metrics.json").read_text())
        assert ("macro_f1" if stage.endswith("cat") else "ccc_mean") in metrics

    # the challenge files, for the unlabelled Test3 set, in the IS2025 format
    test3 = sorted(msp.file_names("Test3"))
    header, rows = _read_csv(out / "submission" / "task1_categorical.csv")
    assert header == ["FileName", "EmoClass"]
    assert sorted(r[0] for r in rows) == test3
    assert all(r[1] in CLASSES for r in rows)
    header, rows = _read_csv(out / "submission" / "task2_attributes.csv")
    assert header == ["FileName", "EmoAct", "EmoVal", "EmoDom"]
    assert sorted(r[0] for r in rows) == test3
    assert all(1.0 <= float(v) <= 7.0 for r in rows for v in r[1:])
    # ... and they are the trained fusion heads' outputs for exactly those files
    for stage, file in (("fusion_cat", "task1_categorical.csv"), ("fusion_dim", "task2_attributes.csv")):
        _, rows = _read_csv(out / "submission" / file)
        output = fusion_outputs(out, stage, [Path(name).stem for name, *_ in rows])
        if stage == "fusion_cat":
            assert [r[1] for r in rows] == [CLASSES[i] for i in output.logits.argmax(-1).tolist()]
        else:
            expected = output.attributes.clamp(1.0, 7.0).numpy()
            assert np.allclose([[float(v) for v in r[1:]] for r in rows], expected, atol=1e-5)

    # a rerun finds every stage done and launches nothing
    start = time.time()
    assert launched(argv, caplog) == []
    assert time.time() - start < first_run / 3
    # a changed stage reruns, and so does everything downstream of it, nothing else
    assert launched([*argv, "--set", "text_dim.seed=5"], caplog) == ["text_dim", "extract_text_dim", "fusion_dim"]


def launched(argv, caplog) -> list[str]:
    """Run the recipe; the labels of the jobs it actually launched."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="msp_podcast"):
        assert run.main(argv) == 0
    return [r.getMessage()[1:].split("]")[0] for r in caplog.records if r.getMessage().startswith("[") and "] ser-hf " in r.getMessage()]


def test_interrupted_training_stage_resumes_and_finished_stages_are_skipped(msp, tmp_path, caplog, monkeypatch):
    """SIGTERM in speech_cat's first step: the stage saves checkpoint-1 and stops (exit 75); the rerun
    resumes it from that checkpoint instead of starting again, then a third run skips it."""
    out = tmp_path / "run"
    argv = ["--msp_root", str(msp.root), "--output_dir", str(out), "--launcher", "inprocess", "--stages", "speech_cat",
            "--overrides", str(tiny_overrides(tmp_path)), "--set", "speech_cat.eval_strategy='no'",
            "--set", "speech_cat.load_best_model_at_end=false", "--set", "speech_cat.test_split=none"]
    monkeypatch.setenv("SER_HF_TEST_SIGNAL", "SIGTERM@1")
    with pytest.raises(SystemExit, match="stopped by SIGTERM after saving a checkpoint"):
        run.main(argv)
    assert (out / "speech_cat" / "checkpoint-1" / "trainer_state.json").is_file()
    assert not (out / "speech_cat" / "model.safetensors").exists() and not (out / ".stages" / "speech_cat.json").exists()
    monkeypatch.delenv("SER_HF_TEST_SIGNAL")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run.main(argv) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("interrupted before; resuming" in m for m in messages)
    assert any(m == f"resuming from {out / 'speech_cat' / 'checkpoint-1'}" for m in messages), messages
    state = json.loads((out / "speech_cat" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and (out / "speech_cat" / "model.safetensors").is_file()
    assert launched(argv, caplog) == []  # finished now: skipped
    # a changed configuration does not resume the old run: its checkpoints are cleared, it starts again
    assert launched([*argv, "--set", "speech_cat.seed=3"], caplog) == ["speech_cat"]
    assert not any("resuming from" in r.getMessage() for r in caplog.records)
