"""Audio decoding: soundfile first, soxr to resample, librosa only for formats libsndfile lacks.

An audio *source* is what a manifest or a Hugging Face dataset row holds: a path, a
``{"path", "bytes"}`` dict (a ``datasets.Audio(decode=False)`` value; the bytes win when present),
a decoded ``{"array", "sampling_rate"}`` dict at any rate, or a torchcodec decoder (a decoded
``Audio()`` column). Everything that turns a source into samples or into a cheap header fact
lives here so loaders, validation and collators agree on what "readable" means; no FFmpeg or
torchcodec is needed for any of the first three forms.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from typing import NamedTuple

import numpy as np
import soundfile as sf
import soxr

from ser_hf.errors import DataError

# Frames read at each end of a file by ``probe_audio``: enough to make libsndfile walk the
# codec (a truncated FLAC/OGG fails to seek to its tail), small enough to stay header-cheap.
_PROBE_FRAMES = 1024
# Containers libsndfile reads itself; other extensions (m4a, aac, wma, ...) fall back to librosa.
_LIBSNDFILE_EXTENSIONS = {f".{name.lower()}" for name in sf.available_formats()} | {".aif", ".oga", ".opus"}


class AudioError(DataError):
    """An audio file is missing, unreadable or empty; the message names the file."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioInfo(NamedTuple):
    frames: int
    samplerate: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def _require_file(path) -> str:
    path = os.fspath(path)
    if not path:
        raise AudioError(path, "empty audio path")
    if not os.path.isfile(path):
        raise AudioError(path, "audio file not found")
    return path


def describe_audio(source) -> str:
    """A short name for a source in messages: its path, else what it is (never the bytes themselves)."""
    if isinstance(source, dict):
        if source.get("path"):
            return str(source["path"])
        if source.get("bytes") is not None:
            return f"<{len(source['bytes'])} bytes of encoded audio>"
        if source.get("array") is not None:
            return f"<decoded audio at {source.get('sampling_rate')} Hz>"
        return "<empty audio value>"
    if hasattr(source, "get_all_samples"):
        return "<torchcodec AudioDecoder>"
    return os.fspath(source) if source is not None else ""


def _resolve(source):
    """(kind, value, name): kind is "path" (a checked file), "bytes" (encoded file contents) or "array"
    ((channels, time) float32, rate)."""
    name = describe_audio(source)
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return "bytes", bytes(source["bytes"]), name
        if source.get("array") is not None:
            rate = source.get("sampling_rate")
            if not rate:
                raise AudioError(name, "decoded audio array without a sampling_rate")
            wave = np.asarray(source["array"], dtype=np.float32)
            if wave.ndim == 2 and wave.shape[0] > wave.shape[1]:  # (time, channels) -> (channels, time)
                wave = wave.T
            return "array", (np.atleast_2d(wave), int(rate)), name
        if source.get("path"):
            return "path", _require_file(source["path"]), name
        raise AudioError(name, "audio value has no path, bytes or array")
    if hasattr(source, "get_all_samples"):  # a torchcodec decoder (datasets' decoded Audio column)
        samples = source.get_all_samples()
        return "array", (np.atleast_2d(samples.data.numpy().astype(np.float32)), int(samples.sample_rate)), name
    if source is None:
        raise AudioError("", "empty audio path")
    return "path", _require_file(source), name


def _open_or_none(path) -> sf.SoundFile | None:
    """Open with libsndfile (header only). ``None`` means "try librosa": only for extensions libsndfile
    does not handle; a .wav/.flac/... it cannot open is broken, and decoding it elsewhere would hide that.
    """
    try:
        return sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        if os.path.splitext(path)[1].lower() not in _LIBSNDFILE_EXTENSIONS:
            return None
        detail = exc.error_string.rstrip(".")
        if detail.startswith("File does not exist"):  # libsndfile's words for garbage in an existing file
            detail = "header not recognised"
        raise AudioError(path, f"unreadable audio, not a valid sound file ({detail})") from exc


def _open_bytes(data: bytes, name: str) -> sf.SoundFile:
    """Encoded bytes (a parquet/Hub ``Audio`` value) through libsndfile: WAV, FLAC, OGG, MP3 (libsndfile >= 1.1)."""
    try:
        return sf.SoundFile(io.BytesIO(data))
    except sf.LibsndfileError as exc:
        raise AudioError(name, f"unreadable encoded audio bytes ({exc.error_string.rstrip('.')})") from exc


def _open_source(source):
    """(kind, handle-or-(wave, rate)-or-None, name) for any source; None means the librosa fallback."""
    kind, value, name = _resolve(source)
    if kind == "path":
        return kind, _open_or_none(value), value
    if kind == "bytes":
        return kind, _open_bytes(value, name), name
    return kind, value, name


def _librosa_decode(path: str) -> tuple[np.ndarray, int]:
    """Fallback decoder (audioread backends) for files libsndfile cannot open; returns (channels, time)."""
    import librosa  # imported here: slow to import and rarely needed

    try:
        with warnings.catch_warnings():  # its "PySoundFile failed, trying audioread" notices: we know
            warnings.simplefilter("ignore")
            wave, rate = librosa.load(path, sr=None, mono=False)
    except Exception as exc:  # librosa/audioread raise many unrelated types
        raise AudioError(path, f"unreadable audio ({type(exc).__name__}: {exc})") from exc
    return np.atleast_2d(wave), int(rate)


def audio_info(source) -> AudioInfo:
    """(frames, samplerate, channels) from the header alone; decodes only if libsndfile can't open it."""
    kind, handle, name = _open_source(source)
    if kind == "array":
        wave, rate = handle
        return AudioInfo(wave.shape[-1], rate, wave.shape[0])
    if handle is None:
        wave, rate = _librosa_decode(name)
        return AudioInfo(wave.shape[-1], rate, wave.shape[0])
    with handle:
        return AudioInfo(int(handle.frames), int(handle.samplerate), int(handle.channels))


def duration_seconds(source) -> float:
    """Length in seconds from the header (used for length-grouped batching and reports)."""
    return audio_info(source).duration


def probe_audio(source) -> AudioInfo:
    """Header plus a tiny read at both ends: catches missing, random-byte, empty and truncated files.

    A WAV cut short is not detectable this way (libsndfile trims ``frames`` to the data present and
    the file decodes fine); a truncated compressed file fails the tail seek, and NaN/inf samples at
    either end of a float file are reported. Raises ``AudioError``.
    """
    kind, handle, path = _open_source(source)
    if kind == "array" or handle is None:  # decoded already, or not a libsndfile format: decode once
        wave, rate = handle if kind == "array" else _librosa_decode(path)
        info = AudioInfo(wave.shape[-1], rate, wave.shape[0])
        head = tail = wave.T
    else:
        with handle:
            info = AudioInfo(int(handle.frames), int(handle.samplerate), int(handle.channels))
            if info.frames <= 0:
                raise AudioError(path, "empty audio (0 frames)")
            try:
                head = handle.read(min(_PROBE_FRAMES, info.frames), dtype="float32", always_2d=True)
                if info.frames > _PROBE_FRAMES:
                    handle.seek(info.frames - _PROBE_FRAMES)
                tail = handle.read(_PROBE_FRAMES, dtype="float32", always_2d=True)
            except sf.LibsndfileError as exc:
                raise AudioError(path, f"corrupt audio data ({exc})") from exc
    if info.frames <= 0:
        raise AudioError(path, "empty audio (0 frames)")
    if len(tail) == 0:
        raise AudioError(path, f"corrupt audio data (header says {info.frames} frames, none readable at the end)")
    if not (np.isfinite(head).all() and np.isfinite(tail).all()):
        raise AudioError(path, "audio contains NaN or infinite samples")
    return info


def load_audio(source, sampling_rate: int = 16000) -> np.ndarray:
    """Decode any audio source to float32 mono at ``sampling_rate`` (channels averaged, soxr resampling)."""
    kind, handle, path = _open_source(source)
    if kind == "array":
        multi, rate = handle
        wave = multi.mean(axis=0)
    elif handle is None:
        multi, rate = _librosa_decode(path)
        wave = multi.mean(axis=0)
    else:
        with handle:
            rate = int(handle.samplerate)
            wave = _read_mono(handle, path)
            check = not _integer_coded(handle)
        return _finish(wave, rate, sampling_rate, path, check_finite=check)
    return _finish(wave, rate, sampling_rate, path)


# Multi-channel files are mixed down this many frames at a time, so a long stereo file never sits
# in memory with all its channels (10 min of 48 kHz stereo: 220 MB as float32, 110 MB as mono).
_MIX_BLOCK = 1 << 20


def _read_mono(handle: sf.SoundFile, path: str, frames: int = -1) -> np.ndarray:
    """``frames`` frames (all remaining with -1) from the current position, channels averaged."""
    try:
        if handle.channels == 1 and handle.subtype == "PCM_16":
            # int16 -> float32 in numpy: the same values as libsndfile's float read (x / 32768), a third faster
            samples = handle.read(frames, dtype="int16")
            return np.multiply(samples, np.float32(1 / 32768), dtype=np.float32)
        if handle.channels == 1:
            return handle.read(frames, dtype="float32", always_2d=True)[:, 0]
        available = int(handle.frames) - int(handle.tell()) if handle.seekable() else None
        if available is None:
            return handle.read(frames, dtype="float32", always_2d=True).mean(axis=1)
        total = available if frames < 0 else min(frames, available)
        mono = np.empty(max(total, 0), dtype=np.float32)
        filled = 0
        while filled < total:
            block = handle.read(min(_MIX_BLOCK, total - filled), dtype="float32", always_2d=True)
            if len(block) == 0:
                break
            mono[filled : filled + len(block)] = block.mean(axis=1)  # (time, ch) -> mono
            filled += len(block)
        return mono[:filled]
    except sf.LibsndfileError as exc:
        raise AudioError(path, f"corrupt audio data ({exc})") from exc


def _integer_coded(handle: sf.SoundFile) -> bool:
    """Integer PCM (or A-/mu-law) cannot hold NaN or infinity: no need to look for them."""
    subtype = handle.subtype or ""
    return subtype.startswith("PCM_") or subtype in ("ULAW", "ALAW")


def _finish(wave: np.ndarray, rate: int, sampling_rate: int, path: str, *, check_finite: bool = True) -> np.ndarray:
    if wave.size == 0:
        raise AudioError(path, "empty audio (0 frames)")
    if check_finite and not np.isfinite(wave).all():
        raise AudioError(path, "audio contains NaN or infinite samples")
    if rate != sampling_rate:
        wave = soxr.resample(wave, rate, sampling_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)


# Extra source frames read on each side of a resampled window, so the resampler's filter has context.
_RESAMPLE_MARGIN = 64


def load_audio_crop(
    path, sampling_rate: int, max_samples: int | None, *, rng: np.random.Generator | None = None
) -> np.ndarray:
    """At most ``max_samples`` samples of ``path`` at ``sampling_rate``, reading only those frames.

    Why: a 10-minute file cropped to 12 s should cost 12 s of decoding and memory, not 10 minutes.
    ``rng`` draws a random window (training); without it the window starts at the beginning
    (deterministic). The window is placed on the target-rate timeline, then read by seeking in the
    source file; only formats libsndfile cannot seek (the librosa fallback) are decoded whole.
    """
    if max_samples is not None and max_samples <= 0:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    source = path  # any audio source (see the module docstring); encoded bytes are seekable too
    kind, handle, path = _open_source(source)
    if kind == "array" or handle is None:  # decoded already, or a format libsndfile cannot seek
        return crop(load_audio(source, sampling_rate), max_samples, random=rng is not None, rng=rng)
    with handle:
        rate, frames = int(handle.samplerate), int(handle.frames)
        check = not _integer_coded(handle)
        length = frames if rate == sampling_rate else int(math.ceil(frames * sampling_rate / rate))
        if max_samples is None or length <= max_samples or not handle.seekable():
            wave = _finish(_read_mono(handle, path), rate, sampling_rate, path, check_finite=check)
            return crop(wave, max_samples, random=rng is not None, rng=rng)
        start = int(rng.integers(0, length - max_samples + 1)) if rng is not None else 0
        if rate == sampling_rate:
            handle.seek(start)
            return _finish(_read_mono(handle, path, max_samples), rate, sampling_rate, path, check_finite=check)
        # Read from a source frame whose position on the target timeline is a whole sample (a multiple
        # of rate / gcd), a margin early, so the window's samples line up with the whole-file resampling.
        step = rate // math.gcd(rate, sampling_rate)
        source_start = max(0, (start * rate // sampling_rate - _RESAMPLE_MARGIN) // step * step)
        skip = start - source_start * sampling_rate // rate
        source_frames = int(math.ceil((skip + max_samples) * rate / sampling_rate)) + _RESAMPLE_MARGIN
        handle.seek(source_start)
        wave = _finish(_read_mono(handle, path, source_frames), rate, sampling_rate, path, check_finite=check)
        return np.ascontiguousarray(wave[skip : skip + max_samples])


def window_bounds(num_samples: int, window: int, hop: int) -> list[tuple[int, int]]:
    """Window (start, end) samples for a recording of ``num_samples``: every ``hop`` while a full window
    fits, then one last full window aligned to the end so the tail is covered; one short window for a
    recording shorter than ``window``. Shared by ``predict`` (streamed windows) and evaluation of long
    utterances, so both score a recording the same way."""
    if num_samples <= window:
        return [(0, num_samples)]
    bounds = [(start, start + window) for start in range(0, num_samples - window + 1, hop)]
    if bounds[-1][1] < num_samples:
        bounds.append((num_samples - window, num_samples))
    return bounds


def crop(
    wave: np.ndarray, max_samples: int | None, *, random: bool, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Cut ``wave`` to ``max_samples``: a random window for training, the start of the file for eval.

    Shorter waves (and ``max_samples=None``) are returned unchanged. ``rng`` makes training crops
    reproducible; without it a fresh unseeded generator is used.
    """
    if max_samples is not None and max_samples <= 0:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    if max_samples is None or len(wave) <= max_samples:
        return wave
    start = 0
    if random:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, len(wave) - max_samples + 1))
    return wave[start : start + max_samples]
