"""Tiny audio fixtures written with soundfile, and the EmoDB location rule shared by tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO_ROOT = Path(__file__).resolve().parents[1]


def tone(seconds: float = 0.25, sampling_rate: int = 16000, freq: float = 220.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * sampling_rate)) / sampling_rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(
    path, wave: np.ndarray, sampling_rate: int = 16000, subtype: str = "PCM_16", format: str | None = None
) -> str:
    """Write ``wave`` ((time,) or (time, channels)) and return the path as a string."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sampling_rate, subtype=subtype, format=format)
    return str(path)


def write_tone(path, seconds: float = 0.25, sampling_rate: int = 16000, channels: int = 1, **kwargs) -> str:
    wave = tone(seconds, sampling_rate)
    if channels > 1:
        wave = np.stack([wave] * channels, axis=1)
    return write_wav(path, wave, sampling_rate, **kwargs)


def write_empty(path, sampling_rate: int = 16000) -> str:
    """A valid WAV header with zero frames."""
    return write_wav(path, np.zeros(0, dtype=np.float32), sampling_rate)


def write_random_bytes(path, n_bytes: int = 4096, seed: int = 0) -> str:
    """Not audio at all, whatever the extension says."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).bytes(n_bytes))
    return str(path)


def write_truncated_flac(path, seconds: float = 1.0, sampling_rate: int = 16000) -> str:
    """A FLAC whose header promises more frames than the (cut) data holds."""
    full = write_wav(path, np.random.default_rng(1).uniform(-0.5, 0.5, int(seconds * sampling_rate)), sampling_rate)
    data = Path(full).read_bytes()
    Path(full).write_bytes(data[: len(data) // 2])
    return full


def emodb_root() -> Path:
    """EmoDB from ``SER_HF_EMODB`` (relative to the repo root, default ../shared/data/emodb); skip if absent, fail if data is required."""
    root = REPO_ROOT / os.environ.get("SER_HF_EMODB", "../shared/data/emodb")  # relative: to the repo root
    if not (root / "wav").is_dir():
        message = f"EmoDB not found at {root} (set SER_HF_EMODB)"
        if os.environ.get("SER_HF_REQUIRE_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return root
