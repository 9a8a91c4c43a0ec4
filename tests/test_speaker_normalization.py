"""Speaker-level log-mel normalisation (``input_normalization: speaker``): the statistics of each
speaker's real frames, the model's use of them (and its fallback without), invariance to a speaker's
recording level end to end (train -> evaluate), the same test statistics at train and evaluate time,
and a clear error before training when rows have no speaker."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from helpers_audio import write_wav
from transformers import AutoModelForAudioClassification

from ser_hf.cli import main as cli
from ser_hf.data.collators import SERTargets, SpeechCollator
from ser_hf.data.speaker_statistics import SpeakerStatistics, compute_speaker_statistics
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.modeling.configuration import SERSpeechConfig
from ser_hf.modeling.input_normalization import normalize_with_statistics
from ser_hf.tiny import tiny_speech_backbone

LABELS = ["a", "b"]


def _whisper(normalization="speaker", seed=0):
    torch.manual_seed(seed)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("whisper"), labels=LABELS, max_audio_seconds=1,
                             input_normalization=normalization, pooling="stats")
    return SERModelForSpeech(config).eval(), build_feature_extractor(config)


def test_statistics_are_those_of_each_speakers_real_frames_and_unknown_rows_use_the_fallback():
    rng = np.random.default_rng(0)
    frames = {"s1": [rng.normal(2, 3, (4, 7)), rng.normal(1, 1, (4, 5))], "s2": [rng.normal(-1, 0.5, (4, 9))]}
    stats = SpeakerStatistics.from_frames(frames)
    joined = np.concatenate(frames["s1"], axis=1)
    np.testing.assert_allclose(stats.mean["s1"], joined.mean(1), rtol=1e-5)
    np.testing.assert_allclose(stats.std["s1"], np.sqrt(joined.var(1) + 1e-5), rtol=1e-5)
    assert stats.utterances == {"s1": 2, "s2": 1}

    features = torch.from_numpy(rng.normal(0, 1, (3, 4, 10)).astype(np.float32))
    rows = [{"speaker": "s2"}, {"speaker": None}, {"speaker": "never seen"}]
    out = stats.batch_inputs(rows, features, frames=[10, 6, 10])
    np.testing.assert_allclose(out["speaker_mean"][0].numpy(), stats.mean["s2"])
    own = features[1, :, :6].double()
    np.testing.assert_allclose(out["speaker_mean"][1].numpy(), own.mean(-1).numpy(), rtol=1e-5)  # real frames only
    np.testing.assert_allclose(out["speaker_std"][1].numpy(), torch.sqrt(own.var(-1, unbiased=False) + 1e-5).numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["speaker_mean"][2].numpy(), features[2].double().mean(-1).numpy(), rtol=1e-5)
    # The population statistics: all frames of the chosen speakers together.
    every = np.concatenate(frames["s1"] + frames["s2"], axis=1)
    mean, std = stats.pooled(["s1", "s2"])
    np.testing.assert_allclose(mean, every.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, np.sqrt(every.var(1) + 1e-5), rtol=1e-4)
    stats.fallback = (mean, std)  # what ser-hf sets: the model's training-population statistics
    out = stats.batch_inputs(rows, features, frames=[10, 6, 10])
    np.testing.assert_allclose(out["speaker_std"][1].numpy(), std)
    np.testing.assert_allclose(out["speaker_mean"][2].numpy(), mean)


def test_model_normalises_by_the_given_statistics_and_by_its_population_statistics_without_them(tmp_path):
    rng = np.random.default_rng(1)
    model, extractor = _whisper("speaker")
    batch = extractor([rng.standard_normal(16000).astype(np.float32)], sampling_rate=16000,
                      return_attention_mask=True, return_tensors="pt")
    features = batch["input_features"]
    mean, std = torch.full((1, features.shape[1]), -0.3), torch.full((1, features.shape[1]), 0.7)
    reference, _ = _whisper("none")  # the same weights (same seed), fed the normalised features by hand
    with torch.no_grad():
        given = model(**batch, speaker_mean=mean, speaker_std=std).logits
        by_hand = reference(**dict(batch, input_features=normalize_with_statistics(features, mean, std))).logits
        torch.testing.assert_close(given, by_hand, atol=1e-5, rtol=1e-5)
        model.input_mean.fill_(0.2)  # what training sets: the training population's statistics
        model.input_std.fill_(1.5)
        alone = model(**batch).logits  # no statistics (a single recording in predict, an exported graph)
        population = (torch.full_like(mean, 0.2), torch.full_like(std, 1.5))
        torch.testing.assert_close(alone, reference(**dict(batch, input_features=normalize_with_statistics(features, *population))).logits,
                                   atol=1e-5, rtol=1e-5)
    assert not torch.allclose(given, alone, atol=1e-3)  # teeth: the statistics matter
    model.save_pretrained(tmp_path)
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.input_normalization == "speaker"
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch, speaker_mean=mean, speaker_std=std).logits, given)
        torch.testing.assert_close(loaded(**batch).logits, alone)  # the population statistics are saved


def _corpus(root, gains=None):
    """2 training speakers, 1 test speaker; classes differ in pitch, speakers in level and timbre."""
    gains = gains or {}
    rng = np.random.default_rng(0)
    rows = []
    t = np.arange(8000) / 16000
    for speaker, split, base in (("s1", "train", 120.0), ("s2", "train", 210.0), ("s3", "test", 160.0)):
        for k in range(4):
            label = LABELS[k % 2]
            freq = base * (1.6 if label == "b" else 1.0) * (1 + 0.03 * k)
            wave = (0.2 + 0.05 * k) * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
            wave = (wave * gains.get(speaker, 1.0)).astype(np.float32)
            name = f"{speaker}_{k}.wav"
            write_wav(root / name, wave)
            rows.append(f"{speaker}_{k},{name},{label},{speaker},{split}")
    (root / "m.csv").write_text("id,audio,label,speaker,split\n" + "\n".join(rows) + "\n")
    return root / "m.csv"


def test_collator_statistics_match_the_feature_extractor_per_speaker(tmp_path):
    manifest = _corpus(tmp_path)
    model, extractor = _whisper("speaker")
    collator = SpeechCollator(extractor, SERTargets(labels=LABELS), max_seconds=1.0)
    rows = [dict(id=line.split(",")[0], audio=str(tmp_path / line.split(",")[1]), label=line.split(",")[2],
                 speaker=line.split(",")[3]) for line in manifest.read_text().splitlines()[1:]]
    stats = compute_speaker_statistics(rows, collator.speaker_features, batch_size=3)
    assert sorted(stats.mean) == ["s1", "s2", "s3"] and stats.utterances["s3"] == 4
    frames = []
    for row in rows[4:8]:  # speaker s2: 0.5 s each = 50 real frames of the 100-frame window
        from ser_hf.data.audio import load_audio

        features = extractor([load_audio(row["audio"], 16000)], sampling_rate=16000, padding="max_length",
                             return_tensors="np")["input_features"][0]
        frames.append(features[:, :50])
    np.testing.assert_allclose(stats.mean["s2"], np.concatenate(frames, 1).mean(1), rtol=1e-4, atol=1e-5)
    collator.speaker_statistics = stats
    batch = collator(rows[4:6])
    np.testing.assert_allclose(batch["speaker_mean"].numpy(), np.stack([stats.mean["s2"]] * 2))


def _train_config(tmp_path, manifest, output_dir, **overrides):
    values = dict(
        corpus="manifest", data_path=str(manifest), labels=LABELS, task="categorical", modality="speech",
        backbone_config=tiny_speech_backbone("whisper"), freeze_feature_encoder=False, head_hidden_size=16,
        pooling="stats", input_normalization="speaker", max_audio_seconds=1.0, per_device_train_batch_size=4,
        num_train_epochs=2, learning_rate=3e-3, save_strategy="no", eval_strategy="no", eval_split="none",
        test_split="test", report_to="none", disable_tqdm=True, output_dir=str(output_dir), use_cpu=True, seed=3,
        dataloader_num_workers=0, logging_steps=100,
    )
    values.update(overrides)
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_train_then_evaluate_use_the_same_test_speaker_statistics_and_ignore_a_speakers_level(tmp_path):
    (tmp_path / "data").mkdir()
    manifest = _corpus(tmp_path / "data")
    run = tmp_path / "run"
    assert cli(["train", "--config", _train_config(tmp_path, manifest, run)]) == 0
    trained = json.loads((run / "test_metrics.json").read_text())
    evaluated = tmp_path / "eval"
    assert cli(["evaluate", "--model", str(run), "--corpus", "manifest", "--data_path", str(manifest),
                "--split", "test", "--output_dir", str(evaluated), "--bootstrap_resamples", "0"]) == 0
    again = json.loads((evaluated / "metrics.json").read_text())
    assert again["macro_f1"] == pytest.approx(trained["macro_f1"])
    assert again["uar"] == pytest.approx(trained["uar"])

    from ser_hf.arguments import DataArguments
    from ser_hf.experiment import predict_split

    def probabilities(path):
        args = DataArguments(corpus="manifest", data_path=str(path))
        _, _, predictions, _, _ = predict_split(str(run), args, split="test")
        return np.asarray(predictions.logits)

    (tmp_path / "quiet").mkdir()
    quiet = _corpus(tmp_path / "quiet", gains={"s3": 0.25})
    trained_model = AutoModelForAudioClassification.from_pretrained(run)
    assert float(trained_model.input_std.min()) > 0 and float(trained_model.input_mean.abs().max()) > 0  # set by training
    # The test speaker recorded 12 dB quieter: every log-mel bin shifts by the same amount, which the
    # speaker's own statistics take out again.
    np.testing.assert_allclose(probabilities(quiet), probabilities(manifest), atol=1e-3)


def test_rows_without_a_speaker_are_a_config_error_before_training(tmp_path, capsys):
    manifest = _corpus(tmp_path)
    lines = manifest.read_text().splitlines()
    lines[2] = lines[2].replace(",s1,", ",,")
    manifest.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    for command in ("validate", "train"):
        assert cli([command, "--config", _train_config(tmp_path, manifest, out)]) == 2
        err = capsys.readouterr().err
        assert "input_normalization: speaker" in err and "1 of 8 rows have no speaker (e.g. ids s1_1)" in err, err
        assert "Traceback" not in err
    assert not (out / "config.json").exists()


def test_onnx_export_of_a_speaker_normalised_model_carries_its_population_statistics(tmp_path):
    from ser_hf.export import ORTSERModel, export_onnx
    from ser_hf.inference import _speech_inputs

    model, extractor = _whisper("speaker")
    with torch.no_grad():
        model.input_mean.copy_(torch.linspace(-0.5, 0.5, model.input_mean.numel()))
        model.input_std.copy_(torch.linspace(0.5, 2.0, model.input_std.numel()))
    model.save_pretrained(tmp_path / "model")
    extractor.save_pretrained(tmp_path / "model")
    record = export_onnx(str(tmp_path / "model"), str(tmp_path / "onnx"))
    assert max(record["parity_max_abs_diff"].values()) <= 1e-4
    rng = np.random.default_rng(2)
    inputs = _speech_inputs(extractor, [rng.standard_normal(n).astype(np.float32) * 0.2 for n in (16000, 5000)], 16000, "cpu")
    with torch.no_grad():
        expected = model(**inputs).logits
        zeroed = dict(model.state_dict(), input_mean=torch.zeros_like(model.input_mean))
        other, _ = _whisper("speaker")
        other.load_state_dict(zeroed)
        assert not torch.allclose(other(**inputs).logits, expected, atol=1e-3)  # teeth: the buffers matter
    got = ORTSERModel(str(tmp_path / "onnx"))(**inputs).logits
    torch.testing.assert_close(torch.as_tensor(got), expected, atol=1e-4, rtol=1e-4)


def test_predict_same_speaker_uses_the_files_own_statistics(tmp_path, capsys):
    from ser_hf.inference import predict

    model, extractor = _whisper("speaker")
    with torch.no_grad():
        model.input_mean.fill_(-0.2)
        model.input_std.fill_(0.8)
    model.save_pretrained(tmp_path / "model")
    extractor.save_pretrained(tmp_path / "model")
    rng = np.random.default_rng(4)
    t = np.arange(24000) / 16000
    waves = [(0.3 * np.sin(2 * np.pi * f * t) * np.abs(np.sin(3 * t)) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
             for f in (140, 230, 330)]
    for folder, gain in (("loud", 1.0), ("quiet", 0.25)):
        (tmp_path / folder).mkdir()
        for k, wave in enumerate(waves):
            write_wav(tmp_path / folder / f"f{k}.wav", wave * gain)

    def probabilities(folder, **kwargs):
        out = predict(str(tmp_path / "model"), [str(tmp_path / folder)], progress=False, num_workers=0, **kwargs)
        return np.array([[w["probabilities"][label] for label in LABELS] for w in out.windows])

    # One speaker recorded 12 dB quieter: the same predictions when normalised by the files' own statistics ...
    np.testing.assert_allclose(probabilities("quiet", same_speaker=True), probabilities("loud", same_speaker=True), atol=1e-4)
    # ... not with the training population's (the level reaches the model), and not the same as them.
    assert np.abs(probabilities("quiet") - probabilities("loud")).max() > 1e-3
    assert np.abs(probabilities("loud", same_speaker=True) - probabilities("loud")).max() > 1e-3

    plain, plain_extractor = _whisper("none")
    plain.save_pretrained(tmp_path / "plain")
    plain_extractor.save_pretrained(tmp_path / "plain")
    assert cli(["predict", str(tmp_path / "plain"), str(tmp_path / "loud"), "--same_speaker",
                "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "input_normalization: speaker" in err and "'none'" in err and "Traceback" not in err


def test_speaker_normalisation_of_a_waveform_encoder_is_a_config_error_at_parse_time(tmp_path, capsys):
    manifest = _corpus(tmp_path)
    config = _train_config(tmp_path, manifest, tmp_path / "run", backbone_config=tiny_speech_backbone("wavlm"))
    for command in ("validate", "train"):
        assert cli([command, "--config", config]) == 2
        err = capsys.readouterr().err
        assert "input_normalization='speaker' normalises log-mel features" in err and "raw waveform (wavlm)" in err, err
        assert "Traceback" not in err
