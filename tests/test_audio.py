import numpy as np
import pytest
from helpers_audio import tone, write_empty, write_random_bytes, write_tone, write_truncated_flac, write_wav

from ser_hf.data import audio
from ser_hf.data.audio import AudioError, audio_info, crop, duration_seconds, load_audio, probe_audio


def _peak_hz(wave, sampling_rate):
    spectrum = np.abs(np.fft.rfft(wave))
    return np.fft.rfftfreq(len(wave), 1 / sampling_rate)[spectrum.argmax()]


def test_resamples_to_target_rate_keeping_pitch(tmp_path):
    path = write_tone(tmp_path / "a.wav", seconds=0.5, sampling_rate=8000)
    wave = load_audio(path, sampling_rate=16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert len(wave) == 8000
    assert abs(_peak_hz(wave, 16000) - 220.0) <= 2.0


def test_same_rate_is_returned_unchanged(tmp_path):
    original = tone(0.25, 16000)
    path = write_wav(tmp_path / "f.wav", original, 16000, subtype="FLOAT")
    np.testing.assert_array_equal(load_audio(path, 16000), original)


def test_stereo_is_averaged_to_mono(tmp_path):
    left = tone(0.25, 16000)
    right = np.full_like(left, 0.25)
    path = write_wav(tmp_path / "s.wav", np.stack([left, right], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, 16000), (left + right) / 2, atol=1e-7)


def test_audio_info_reads_header_only(tmp_path, monkeypatch):
    path = write_tone(tmp_path / "st.wav", seconds=0.5, sampling_rate=8000, channels=2)
    monkeypatch.setattr(audio.sf.SoundFile, "read", lambda *a, **k: pytest.fail("audio_info must not decode"))
    assert audio_info(path) == (4000, 8000, 2)
    assert duration_seconds(path) == pytest.approx(0.5)


def test_librosa_fallback_for_formats_libsndfile_cannot_open(tmp_path, monkeypatch):
    path = write_tone(tmp_path / "x.wav", seconds=0.25, sampling_rate=22050)
    expected = load_audio(path, 16000)
    monkeypatch.setattr(audio, "_open_or_none", lambda p: None)
    np.testing.assert_allclose(load_audio(path, 16000), expected, atol=1e-4)
    assert audio_info(path) == (5512, 22050, 1)


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: str(d / "missing.wav"), "not found"),
        (lambda d: write_empty(d / "empty.wav"), "empty"),
        (lambda d: write_random_bytes(d / "noise.wav"), "unreadable"),
        (lambda d: write_random_bytes(d / "noise.m4a"), "unreadable"),  # via the librosa fallback
    ],
)
def test_bad_files_raise_audio_error_naming_the_file(tmp_path, make, reason):
    path = make(tmp_path)
    for func in (load_audio, probe_audio):
        with pytest.raises(AudioError, match=reason) as info:
            func(path)
        assert path in str(info.value) and info.value.path == path
        assert isinstance(info.value, ValueError)


def test_truncated_compressed_file_is_caught_by_the_cheap_probe(tmp_path):
    path = write_truncated_flac(tmp_path / "cut.flac")
    assert audio_info(path).frames == 16000  # the header still promises a full second
    with pytest.raises(AudioError, match="corrupt"):
        probe_audio(path)
    with pytest.raises(AudioError, match="corrupt"):
        load_audio(path)


def test_nan_samples_are_reported(tmp_path):
    wave = tone(0.25, 16000)
    wave[10] = np.nan
    path = write_wav(tmp_path / "nan.wav", wave, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        probe_audio(path)
    with pytest.raises(AudioError, match="NaN"):
        load_audio(path)


def test_probe_accepts_good_file(tmp_path):
    info = probe_audio(write_tone(tmp_path / "ok.wav", seconds=0.3, sampling_rate=16000, channels=2))
    assert (info.frames, info.samplerate, info.channels) == (4800, 16000, 2)


def test_crop():
    wave = np.arange(100, dtype=np.float32)
    short = np.arange(10, dtype=np.float32)
    assert crop(short, 50, random=True, rng=np.random.default_rng(0)) is short
    assert crop(wave, None, random=False) is wave
    np.testing.assert_array_equal(crop(wave, 30, random=False), wave[:30])
    starts = set()
    for seed in range(20):
        window = crop(wave, 30, random=True, rng=np.random.default_rng(seed))
        assert len(window) == 30
        np.testing.assert_array_equal(window, wave[int(window[0]) : int(window[0]) + 30])  # contiguous slice
        starts.add(int(window[0]))
        again = crop(wave, 30, random=True, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(window, again)  # reproducible with a seeded rng
    assert len(starts) > 5 and max(starts) <= 70
    with pytest.raises(ValueError):
        crop(wave, 0, random=False)
