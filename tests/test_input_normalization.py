"""Per-utterance log-mel normalisation (``input_normalization: utterance``): the statistics of the
real frames only, invariance to a per-bin gain/offset, a saved model keeps it, waveform encoders refuse it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForAudioClassification

from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.modeling.configuration import SERSpeechConfig
from ser_hf.modeling.input_normalization import mel_frame_mask, normalize_per_utterance
from ser_hf.tiny import tiny_speech_backbone


def test_valid_frames_get_zero_mean_unit_variance_and_padding_is_ignored():
    rng = np.random.default_rng(0)
    features = rng.normal(3.0, 2.5, size=(2, 4, 10)).astype(np.float32)
    mask = np.zeros((2, 10), dtype=bool)
    mask[0, :10] = True
    mask[1, :6] = True
    out = normalize_per_utterance(torch.from_numpy(features), torch.from_numpy(mask)).numpy()
    for b, n in ((0, 10), (1, 6)):
        valid = features[b, :, :n]
        expected = (valid - valid.mean(-1, keepdims=True)) / np.sqrt(valid.var(-1, keepdims=True) + 1e-5)
        np.testing.assert_allclose(out[b, :, :n], expected, atol=1e-5)
    assert np.all(out[1, :, 6:] == 0)
    changed = features.copy()
    changed[1, :, 6:] = 1e3  # what the padding holds must not matter
    again = normalize_per_utterance(torch.from_numpy(changed), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(again, out, atol=1e-6)


def test_sample_level_mask_is_counted_in_hops():
    mask = torch.zeros(2, 1600, dtype=torch.long)
    mask[0] = 1
    mask[1, :801] = 1  # 801 samples -> 6 frames of hop 160 (the last one partly real)
    frames = mel_frame_mask(mask, 10, 160)
    assert frames.sum(-1).tolist() == [10, 6]
    assert mel_frame_mask(None, 10, 160) is None


def _whisper(normalization):
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("whisper"), labels=["a", "b", "c"],
                             max_audio_seconds=2, input_normalization=normalization)
    return SERModelForSpeech(config).eval(), build_feature_extractor(config)


def test_model_output_ignores_a_per_bin_gain_and_offset_only_when_normalising(tmp_path):
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(32000).astype(np.float32)]
    for normalization, invariant in (("utterance", True), ("none", False)):
        torch.manual_seed(0)
        model, extractor = _whisper(normalization)
        batch = extractor(waves, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
        bins = batch["input_features"].shape[1]
        gain = torch.linspace(0.5, 2.0, bins).view(1, bins, 1)
        offset = torch.linspace(-1.0, 1.0, bins).view(1, bins, 1)
        shifted = dict(batch, input_features=batch["input_features"] * gain + offset)
        with torch.no_grad():
            clean, moved = model(**batch).logits, model(**shifted).logits
        assert torch.allclose(clean, moved, atol=1e-4) is invariant
    model.save_pretrained(tmp_path)  # the last one ("none") round-trips its field; check "utterance" too
    torch.manual_seed(0)
    model, _ = _whisper("utterance")
    model.save_pretrained(tmp_path)
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.input_normalization == "utterance"
    with torch.no_grad():
        torch.testing.assert_close(loaded(**shifted).logits, model(**batch).logits, atol=1e-4, rtol=1e-4)


def test_waveform_encoders_and_unknown_values_are_refused():
    with pytest.raises(ValueError, match="log-mel"):
        SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm"), labels=["a", "b"], input_normalization="utterance")
    with pytest.raises(ValueError, match="input_normalization"):
        SERSpeechConfig(backbone_config=tiny_speech_backbone("whisper"), labels=["a", "b"], input_normalization="frame")
