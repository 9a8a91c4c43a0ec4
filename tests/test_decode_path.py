"""The speech collator's fast decode → normalise → pad path gives what the feature extractors give."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from ser_hf.data.audio import AudioError, load_audio_crop
from ser_hf.data.collators import SERTargets, SpeechCollator, normalise_and_pad


def _waves(seed=0):
    rng = np.random.default_rng(seed)
    lengths = [16000, 5231, 23999, 1, 800]
    return [(rng.standard_normal(n) * rng.uniform(0.01, 0.5) + rng.uniform(-0.1, 0.1)).astype(np.float32)
            for n in lengths]


@pytest.mark.parametrize("do_normalize,padding_value", [(True, 0.0), (False, 0.0), (True, -1.5)])
def test_normalise_and_pad_matches_the_wav2vec2_family_extractor(do_normalize, padding_value):
    # WavLM, wav2vec2 and HuBERT all ship this extractor (WavLM/large wav2vec2: with attention masks).
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=padding_value,
                                         do_normalize=do_normalize, return_attention_mask=True)
    waves = _waves()
    expected = extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    got = normalise_and_pad(waves, extractor)
    assert got["input_values"].dtype == expected["input_values"].dtype == torch.float32
    assert got["attention_mask"].dtype == expected["attention_mask"].dtype
    torch.testing.assert_close(got["attention_mask"], expected["attention_mask"], rtol=0, atol=0)
    torch.testing.assert_close(got["input_values"], expected["input_values"], rtol=0, atol=1e-5)


def test_the_collator_uses_the_fast_path_only_for_stock_waveform_extractors(tmp_path, monkeypatch):
    paths = []
    for i, wave in enumerate(_waves(1)[:3]):
        paths.append(str(tmp_path / f"u{i}.wav"))
        sf.write(paths[-1], np.clip(wave, -1, 1), 48000, subtype="PCM_16")
    rows = [{"id": str(i), "audio": p} for i, p in enumerate(paths)]
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=True)
    collator = SpeechCollator(extractor, SERTargets(), max_seconds=0.3)
    fast = collator(rows)
    waves = [collator.load(row) for row in rows]
    slow = extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    torch.testing.assert_close(fast["input_values"], slow["input_values"], rtol=0, atol=1e-5)
    torch.testing.assert_close(fast["attention_mask"], slow["attention_mask"], rtol=0, atol=0)
    # Whisper's log-mel extractor keeps its own path.
    whisper = WhisperFeatureExtractor(feature_size=40)
    monkeypatch.setattr("ser_hf.data.collators.normalise_and_pad", lambda *a: pytest.fail("log-mel took the fast path"))
    batch = SpeechCollator(whisper, SERTargets(), max_seconds=0.3)(rows)
    assert batch["input_features"].shape[:2] == (3, 40)


def test_integer_pcm_skips_the_finite_check_but_float_files_keep_it(tmp_path):
    wave = np.full(1600, 0.25, dtype=np.float32)
    sf.write(tmp_path / "pcm.wav", wave, 16000, subtype="PCM_16")
    np.testing.assert_allclose(load_audio_crop(str(tmp_path / "pcm.wav"), 16000, 800), 0.25, atol=1e-4)
    wave[100] = np.nan
    sf.write(tmp_path / "float.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio_crop(str(tmp_path / "float.wav"), 16000, None)


@pytest.mark.parametrize("channels", [1, 2])
def test_16_bit_pcm_decodes_to_the_values_libsndfile_gives(tmp_path, channels):
    rng = np.random.default_rng(3)
    samples = rng.integers(-32768, 32768, size=(4000, channels), dtype=np.int16)
    samples[:4] = [[-32768], [32767], [0], [1]] if channels == 1 else [[-32768, 1], [32767, 0], [0, -1], [1, 5]]
    path = str(tmp_path / "pcm16.wav")
    sf.write(path, samples, 16000, subtype="PCM_16")
    expected = sf.read(path, dtype="float32", always_2d=True)[0].mean(axis=1)
    got = load_audio_crop(path, 16000, None)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(got, expected.astype(np.float32))
