"""Long inputs: training crops read only the frames they need, and evaluation scores an utterance
longer than the evaluation window whole (windows averaged, as `predict` does), saying so in the log."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import TINY_LABELS
from ser_hf.data.audio import load_audio, load_audio_crop, window_bounds


def _tone(path, seconds, rate, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)
    data = np.stack([wave, 0.5 * wave], axis=1) if channels == 2 else wave
    sf.write(path, data.astype(np.float32), rate)
    return str(path)


def test_crop_at_the_model_rate_is_the_same_slice_as_decode_then_cut(tmp_path):
    path = _tone(tmp_path / "a.wav", 3.0, 16000, channels=2)
    whole = load_audio(path, 16000)
    n = 8000
    start = int(np.random.default_rng([1, 2]).integers(0, len(whole) - n + 1))
    np.testing.assert_array_equal(load_audio_crop(path, 16000, n, rng=np.random.default_rng([1, 2])), whole[start : start + n])
    np.testing.assert_array_equal(load_audio_crop(path, 16000, n), whole[:n])  # no rng: from the start
    np.testing.assert_array_equal(load_audio_crop(path, 16000, 10**6), whole)  # shorter than the crop: all of it
    np.testing.assert_array_equal(load_audio_crop(path, 16000, None), whole)


@pytest.mark.parametrize("rate", [8000, 44100, 48000])
def test_crop_of_another_rate_matches_the_resampled_whole_file(tmp_path, rate):
    path = _tone(tmp_path / "b.flac", 4.0, rate)
    whole = load_audio(path, 16000)
    n = 16000
    for seed in range(3):
        crop = load_audio_crop(path, 16000, n, rng=np.random.default_rng(seed))
        assert crop.shape == (n,) and crop.dtype == np.float32
        # locate the window in the whole resampled signal: it is a slice of it up to resampling edge effects
        start = int(np.random.default_rng(seed).integers(0, len(whole) - n + 1))
        reference = whole[start : start + n]
        assert np.abs(crop[200:-200] - reference[200:-200]).max() < 2e-2


def test_crop_reads_only_the_window(tmp_path, monkeypatch):
    """The frames requested from libsndfile are the window's (plus a small resampling margin)."""
    path = _tone(tmp_path / "long.wav", 30.0, 44100)
    requested = []
    original = sf.SoundFile.read

    def counting(self, frames=-1, *args, **kwargs):
        out = original(self, frames, *args, **kwargs)
        requested.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting)
    load_audio_crop(path, 16000, 16000, rng=np.random.default_rng(0))
    assert sum(requested) < 44100 * 1.05  # one second of source audio, not thirty


@pytest.fixture(scope="module")
def windowed_setup(tmp_path_factory):
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.data.collators import SERTargets, SpeechCollator
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
    from ser_hf.tiny import tiny_speech_backbone

    root = tmp_path_factory.mktemp("long")
    rows = [dict(id=f"u{k}", audio=_tone(root / f"u{k}.wav", seconds, 16000, seed=k), label=TINY_LABELS[k % 3],
                 arousal=3.0 + k, valence=4.0, dominance=4.0)
            for k, seconds in enumerate([0.6, 2.3, 0.9, 3.1])]
    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=TINY_LABELS, task="multitask",
                             head_hidden_size=8, max_audio_seconds=1.0)
    model = SERModelForSpeech(config).eval()
    extractor = build_feature_extractor(config)
    collator = SpeechCollator(extractor, SERTargets.for_config(config), max_seconds=1.0, window_long_inputs=True)
    return rows, model, extractor, collator


def _expected(rows, model, extractor, window=16000, hop=8000):
    """What `predict` does for a file: every window through the model, length-weighted mean."""
    probabilities, attributes = [], []
    for row in rows:
        wave = load_audio(row["audio"], 16000)
        bounds = window_bounds(len(wave), window, hop)
        with torch.no_grad():
            out = model(**extractor([wave[a:b] for a, b in bounds], sampling_rate=16000, padding=True,
                                    return_attention_mask=True, return_tensors="pt"))
        weights = torch.tensor([b - a for a, b in bounds], dtype=torch.float32)
        weights = weights / weights.sum()
        probabilities.append(weights @ torch.softmax(out.logits, -1))
        attributes.append(weights @ out.attributes)
    return torch.stack(probabilities).numpy(), torch.stack(attributes).numpy()


def test_evaluation_scores_long_utterances_whole_and_logs_it(windowed_setup, tmp_path, caplog):
    import datasets

    from ser_hf.trainer import SERTrainer
    from ser_hf.training_args import SERTrainingArguments

    rows, model, extractor, collator = windowed_setup
    dataset = datasets.Dataset.from_list(rows)
    args = SERTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=3, report_to=[], use_cpu=True,
                                disable_tqdm=True)
    trainer = SERTrainer(model=model, args=args, data_collator=collator, processing_class=extractor)
    with caplog.at_level(logging.INFO, logger="ser_hf.trainer"):
        output = trainer.predict(dataset)
    logits, attributes = output.predictions
    probabilities, expected_attributes = _expected(rows, model, extractor)
    np.testing.assert_allclose(np.exp(logits), probabilities, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(attributes, expected_attributes, rtol=1e-4, atol=1e-5)
    assert "2 of 4 evaluated utterances are longer than the 1.0 s evaluation window" in caplog.text
    assert np.isfinite(output.metrics["test_loss"])  # the loss is computed on the averaged outputs
    # not what the old first-window evaluation gave for the long ones
    first = collator.load(rows[1])
    assert len(first) == 16000
    with torch.no_grad():
        cut = model(**extractor([first], sampling_rate=16000, return_tensors="pt")).attributes.numpy()
    assert not np.allclose(cut[0], attributes[1], atol=1e-5)


def test_evaluation_of_short_utterances_is_unchanged(windowed_setup, tmp_path, caplog):
    import dataclasses

    import datasets

    from ser_hf.trainer import SERTrainer
    from ser_hf.training_args import SERTrainingArguments

    rows, model, extractor, collator = windowed_setup
    short = datasets.Dataset.from_list([rows[0], rows[2]])
    args = SERTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2, report_to=[], use_cpu=True,
                                disable_tqdm=True)
    windowed = SERTrainer(model=model, args=args, data_collator=collator).predict(short).predictions
    plain = SERTrainer(model=model, args=args, data_collator=dataclasses.replace(collator, window_long_inputs=False))
    for a, b in zip(windowed, plain.predict(short).predictions):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
