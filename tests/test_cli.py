"""`ser-hf train` / `evaluate` / `validate` from YAML + CLI overrides, and input validation before training."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf
import yaml

from ser_hf.cli import main as cli
from ser_hf.tiny import tiny_speech_backbone

from conftest import TINY_LABELS


def _config(tmp_path, manifest, **overrides):
    values = dict(
        corpus="manifest", data_path=manifest, labels=TINY_LABELS, task="categorical", modality="speech",
        backbone_config=tiny_speech_backbone(), freeze_feature_encoder=False, head_hidden_size=16,
        max_audio_seconds=1.0, per_device_train_batch_size=4, per_device_eval_batch_size=4, max_steps=2,
        eval_strategy="no", save_strategy="no", report_to="none", disable_tqdm=True, output_dir=str(tmp_path / "run"),
        use_cpu=True,
    )
    values.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_train_then_evaluate_from_yaml_with_overrides(tiny_manifest, tmp_path, capsys):
    config = _config(tmp_path, tiny_manifest)
    assert cli(["train", "--config", config, "--loss", "focal", "--sampler", "up", "--activation", "relu"]) == 0
    run = tmp_path / "run"
    saved = json.loads((run / "config.json").read_text())
    assert saved["activation"] == "relu"  # the CLI override won over the YAML default
    assert (run / "model.safetensors").exists() and (run / "preprocessor_config.json").exists()
    test_metrics = json.loads((run / "test_metrics.json").read_text())
    assert {"macro_f1", "uar", "accuracy"} <= set(test_metrics)
    out_dir = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(run), "--corpus", "manifest", "--data_path", tiny_manifest,
                "--labels", *TINY_LABELS, "--split", "test", "--output_dir", str(out_dir)]) == 0
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["num_examples"] == 12
    assert metrics["macro_f1"] == pytest.approx(test_metrics["macro_f1"])


def test_unknown_yaml_key_is_an_error(tiny_manifest, tmp_path, capsys):
    config = _config(tmp_path, tiny_manifest, learning_rat=1e-3)
    assert cli(["train", "--config", config]) == 2
    err = capsys.readouterr().err
    assert "unknown config keys 'learning_rat' (did you mean 'learning_rate'?)" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="learning_rat"):  # --debug: the exception itself, for a traceback
        cli(["--debug", "train", "--config", config])


def test_bad_manifest_rows_all_reported_before_training(tiny_manifest, tmp_path, monkeypatch):
    """Missing file, corrupt file, unknown label, out-of-range attribute: one error naming all four rows."""
    import csv

    with open(tiny_manifest) as handle:
        rows = list(csv.DictReader(handle))
    base = os.path.dirname(tiny_manifest)
    rows[0]["audio"] = "wav/does_not_exist.wav"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2048))
    rows[1]["audio"] = str(corrupt)
    rows[2]["label"] = "zzz"
    rows[3]["arousal"] = "9.5"
    for row in rows:
        if not os.path.isabs(row["audio"]):
            row["audio"] = os.path.join(base, row["audio"])
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = _config(tmp_path, str(bad), task="multitask", attribute_range=[1.0, 7.0])
    import ser_hf.trainer
    from ser_hf.data.validation import DataValidationError

    def no_training(*args, **kwargs):
        raise AssertionError("training started despite bad rows")

    monkeypatch.setattr(ser_hf.trainer.SERTrainer, "train", no_training)
    with pytest.raises(DataValidationError) as error:
        cli(["--debug", "train", "--config", config])
    message = str(error.value)
    for row in rows[:4]:
        assert row["id"] in message
    assert "does_not_exist" in message and "zzz" in message and "9.5" in message
    assert message.count("\n") >= 4


def test_validate_command_reports_problems(tiny_manifest, tmp_path, capsys):
    assert cli(["validate", "--corpus", "manifest", "--data_path", tiny_manifest, "--labels", *TINY_LABELS]) == 0
    assert "OK" in capsys.readouterr().out


def test_help_lists_commands(capsys):
    assert cli(["--help"]) == 0
    assert "train" in capsys.readouterr().out


def test_mapping_options_take_json_and_evaluate_reuses_a_training_recipe(tiny_manifest, tmp_path):
    from ser_hf.arguments import DataArguments, ModelArguments
    from ser_hf.commands.evaluate import EvaluateArguments
    from ser_hf.config_parser import parse_config

    data_args, model_args = parse_config(
        (DataArguments, ModelArguments), ["--corpus_options", '{"split": "train"}', "--backbone_config", '{"model_type": "wavlm"}']
    )
    assert data_args.corpus_options == {"split": "train"} and model_args.backbone_config == {"model_type": "wavlm"}
    with pytest.raises(SystemExit):
        parse_config((DataArguments,), ["--corpus_options", "[1, 2]"])
    config = _config(tmp_path, tiny_manifest)  # a training recipe
    eval_args, data_args = parse_config((EvaluateArguments, DataArguments), ["--config", config, "--model", "m"],
                                        ignore_extra_keys=True)
    assert data_args.data_path == tiny_manifest and eval_args.model == "m"
