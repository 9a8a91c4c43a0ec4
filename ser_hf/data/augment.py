"""Training-time audio augmentation, reproducible per example, and the fixed degradations of the
robustness report.

Why it looks like this: every random choice (whether a transform fires, the SNR, the noise colour,
the room, the speed) is drawn from ``row_generator(row, seed, "augment.<name>")`` -- a pure function of
(seed, epoch, example index) -- so a resumed run applies exactly the augmentation of the uninterrupted
run, whatever the dataloader workers do, and evaluation rows (which carry no epoch/index) are never
augmented. The signal processing itself is scipy/librosa (resampling, filtering, FFT convolution,
pitch shifting); only the draws are ours. (audiomentations draws from numpy's global RNG, which cannot
give per-example reproducibility across workers and resumes; see BENCHMARKS.md for the throughput check.)

Config (one mapping, YAML or JSON on the command line; every key optional)::

    augment:
      speed: [0.9, 1.0, 1.1]              # or {p: 1.0, factors: [...]}; label kept, length changes
      pitch: {p: 0.2, semitones: [-2, 2]}
      reverb: {p: 0.3, rt60: [0.2, 0.8], folder: null}   # folder of RIR wavs, else a simulated room
      noise: {p: 0.5, snr_db: [5, 20], folder: null, colors: [white, pink, brown]}
      gain: {p: 0.5, db: [-6, 6]}
      band_limit: {p: 0.2, cutoff_hz: [3000, 4000]}      # telephone/codec-like low-pass
      specaugment: {p: 1.0, freq_masks: 2, freq_width: 8, time_masks: 2, time_width: 20}  # log-mel models

Waveform transforms run in the order above, after cropping; SpecAugment masks the log-mel features
of the batch (Whisper-style encoders). For wav2vec2/WavLM/HuBERT encoders use the model's own
``mask_time_prob`` / ``mask_feature_prob`` (ModelArguments) instead.
"""
from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ser_hf.data.randomness import row_generator
from ser_hf.data.strategy_options import strategy_value

WAVEFORM_TRANSFORMS = ("speed", "pitch", "reverb", "noise", "gain", "band_limit")
SPECTRAL_TRANSFORMS = ("specaugment",)
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
_AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")

_DEFAULTS: dict[str, dict[str, Any]] = {
    "speed": {"p": 1.0, "factors": [0.9, 1.0, 1.1]},
    "pitch": {"p": 0.2, "semitones": [-2.0, 2.0]},
    "reverb": {"p": 0.3, "rt60": [0.2, 0.8], "folder": None},
    "noise": {"p": 0.5, "snr_db": [5.0, 20.0], "folder": None, "colors": ["white", "pink", "brown"]},
    "gain": {"p": 0.5, "db": [-6.0, 6.0]},
    "band_limit": {"p": 0.2, "cutoff_hz": [3000.0, 4000.0]},
    "specaugment": {"p": 1.0, "freq_masks": 2, "freq_width": 8, "time_masks": 2, "time_width": 20},
}


# ------------------------------------------------------------------------------------- primitives
def rms(wave: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))) if len(wave) else 0.0


def coloured_noise(length: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f**beta power spectrum (white 0, pink 1, brown 2), unit RMS."""
    if color not in NOISE_COLORS:
        raise ValueError(f"noise colour {color!r} is not one of {sorted(NOISE_COLORS)}")
    white = rng.standard_normal(max(length, 1))
    beta = NOISE_COLORS[color]
    if beta:
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(len(white))
        freqs[0] = freqs[1] if len(freqs) > 1 else 1.0
        spectrum /= freqs ** (beta / 2.0)
        white = np.fft.irfft(spectrum, n=len(white))
    white = white[:length]
    level = rms(white)
    return (white / level if level > 0 else white).astype(np.float32)


def add_noise(wave: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``wave + g * noise`` with ``g`` set so the speech-to-noise power ratio is ``snr_db``."""
    noise = _fit_length(noise, len(wave))
    speech, level = rms(wave), rms(noise)
    if speech == 0 or level == 0:
        return wave
    gain = speech / (level * 10 ** (snr_db / 20.0))
    return (wave + gain * noise).astype(np.float32)


def simulated_rir(sampling_rate: int, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: direct path, then exponentially decaying noise (-60 dB at rt60)."""
    length = max(int(rt60 * sampling_rate), 2)
    t = np.arange(length) / sampling_rate
    tail = rng.standard_normal(length) * np.exp(-6.908 * t / rt60)
    tail[0] = 0.0
    rir = np.concatenate([[1.0], 0.3 * tail / max(np.abs(tail).max(), 1e-9)])
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def reverberate(wave: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with an impulse response (aligned on its peak), same length and RMS as the input."""
    from scipy.signal import fftconvolve

    if not len(wave):
        return wave
    start = int(np.argmax(np.abs(rir)))
    wet = fftconvolve(wave, rir)[start : start + len(wave)]
    level = rms(wet)
    return (wet * (rms(wave) / level) if level > 0 else wet).astype(np.float32)


def change_speed(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play ``factor`` times faster (pitch and tempo together, as Kaldi-style speed perturbation)."""
    from scipy.signal import resample_poly

    if factor == 1.0 or not len(wave):
        return wave
    ratio = Fraction(factor).limit_denominator(100)
    return resample_poly(wave, ratio.denominator, ratio.numerator).astype(np.float32)


def shift_pitch(wave: np.ndarray, sampling_rate: int, semitones: float) -> np.ndarray:
    import librosa

    if semitones == 0 or len(wave) < 2048:
        return wave
    return librosa.effects.pitch_shift(wave.astype(np.float32), sr=sampling_rate, n_steps=float(semitones)).astype(np.float32)


def band_limit(wave: np.ndarray, sampling_rate: int, cutoff_hz: float) -> np.ndarray:
    """8th-order Butterworth low-pass at ``cutoff_hz`` (telephone / narrow-band codec)."""
    from scipy.signal import butter, sosfilt

    if cutoff_hz >= sampling_rate / 2 or not len(wave):
        return wave
    sos = butter(8, cutoff_hz, btype="low", fs=sampling_rate, output="sos")
    return sosfilt(sos, wave).astype(np.float32)


def _fit_length(signal: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Tile/crop ``signal`` to ``length`` samples starting at ``offset``."""
    if not len(signal):
        return np.zeros(length, dtype=np.float32)
    reps = math.ceil((offset + length) / len(signal))
    return np.tile(signal, reps)[offset : offset + length]


def _audio_files(folder: str, what: str) -> list[str]:
    if not os.path.isdir(folder):
        raise ValueError(f"augment {what}: folder {folder!r} does not exist")
    files = sorted(f for f in glob.glob(os.path.join(folder, "**", "*"), recursive=True) if f.lower().endswith(_AUDIO_EXTENSIONS))
    if not files:
        raise ValueError(f"augment {what}: no audio files ({', '.join(_AUDIO_EXTENSIONS)}) under {folder!r}")
    return files


# ------------------------------------------------------------------------------------- config
# Named settings, so a sweep can say ``augment=waveform`` (a grid value cannot hold a mapping).
PRESETS: dict[str, dict[str, Any]] = {
    "light": {"speed": [0.9, 1.0, 1.1], "gain": {"p": 0.5}},
    "waveform": {"speed": [0.9, 1.0, 1.1], "noise": {"p": 0.5, "snr_db": [5.0, 20.0]}, "reverb": {"p": 0.3}, "gain": {"p": 0.5}},
    "specaugment": {"specaugment": {}},
    "waveform+specaugment": {
        "speed": [0.9, 1.0, 1.1], "noise": {"p": 0.5, "snr_db": [5.0, 20.0]}, "reverb": {"p": 0.3}, "gain": {"p": 0.5},
        "specaugment": {},
    },
}


def parse_augment_config(value) -> dict[str, dict[str, Any]] | None:
    """Validate an ``augment`` mapping (or its JSON text) and fill in defaults; None/{} -> None.

    ``speed: [0.9, 1.0, 1.1]`` is short for ``speed: {factors: [...]}``; ``noise: true`` takes the defaults.
    Unknown transforms or keys, probabilities outside [0, 1] and empty or reversed ranges are errors.
    """
    value = strategy_value(value, name="augment", presets=PRESETS)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"augment must be a mapping of transform -> settings, got {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, settings in value.items():
        if name not in _DEFAULTS:
            raise ValueError(f"augment: unknown transform {name!r}; valid: {', '.join(_DEFAULTS)}")
        if settings in (None, False):
            continue
        if settings is True:
            settings = {}
        if name == "speed" and isinstance(settings, (list, tuple)):
            settings = {"factors": list(settings)}
        if not isinstance(settings, dict):
            raise ValueError(f"augment.{name} must be a mapping of settings, got {settings!r}")
        unknown = sorted(set(settings) - set(_DEFAULTS[name]))
        if unknown:
            raise ValueError(f"augment.{name}: unknown settings {unknown}; valid: {sorted(_DEFAULTS[name])}")
        merged = {**_DEFAULTS[name], **settings}
        if not 0.0 <= float(merged["p"]) <= 1.0:
            raise ValueError(f"augment.{name}.p must be in [0, 1], got {merged['p']}")
        for key in ("snr_db", "db", "rt60", "semitones", "cutoff_hz"):
            if key in merged:
                pair = merged[key]
                if not isinstance(pair, (list, tuple)) or len(pair) != 2 or float(pair[0]) > float(pair[1]):
                    raise ValueError(f"augment.{name}.{key} must be [low, high] with low <= high, got {pair!r}")
                merged[key] = [float(pair[0]), float(pair[1])]
        if name == "speed":
            factors = [float(f) for f in merged["factors"]]
            if not factors or any(not 0.5 <= f <= 2.0 for f in factors):
                raise ValueError(f"augment.speed factors must be in [0.5, 2], got {merged['factors']}")
            merged["factors"] = factors
        if name == "noise":
            bad = [c for c in merged["colors"] if c not in NOISE_COLORS]
            if bad or not merged["colors"]:
                raise ValueError(f"augment.noise.colors must be from {sorted(NOISE_COLORS)}, got {merged['colors']}")
        if name == "reverb" and merged["rt60"][0] <= 0:
            raise ValueError(f"augment.reverb.rt60 must be > 0, got {merged['rt60']}")
        if name == "band_limit" and merged["cutoff_hz"][0] <= 0:
            raise ValueError(f"augment.band_limit.cutoff_hz must be > 0, got {merged['cutoff_hz']}")
        if name == "specaugment":
            for key in ("freq_masks", "freq_width", "time_masks", "time_width"):
                if int(merged[key]) < 0:
                    raise ValueError(f"augment.specaugment.{key} must be >= 0, got {merged[key]}")
        for key in ("folder",):
            if merged.get(key) is not None:
                _audio_files(merged[key], name)  # fail now, not in a dataloader worker
        out[name] = merged
    return out or None


# ------------------------------------------------------------------------------------- augmenter
@dataclass
class Augmenter:
    """Applies a parsed ``augment`` config to one training row's waveform (or a batch's log-mel features).

    Rows without the epoch/index keys (evaluation) are returned untouched.
    """

    config: dict[str, dict[str, Any]]
    sampling_rate: int = 16000
    seed: int = 0
    _files: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, value, sampling_rate: int = 16000, seed: int = 0) -> "Augmenter | None":
        config = parse_augment_config(value)
        return None if config is None else cls(config, sampling_rate, seed)

    @property
    def has_waveform(self) -> bool:
        return any(name in self.config for name in WAVEFORM_TRANSFORMS)

    @property
    def has_spectral(self) -> bool:
        return "specaugment" in self.config

    def _rng(self, row: dict, name: str) -> np.random.Generator | None:
        return row_generator(row, self.seed, f"augment.{name}")

    def _load(self, path: str) -> np.ndarray:
        from ser_hf.data.audio import load_audio

        return load_audio(path, self.sampling_rate)

    def _pick_file(self, name: str, rng: np.random.Generator) -> np.ndarray:
        files = self._files.get(name)
        if files is None:
            files = self._files[name] = _audio_files(self.config[name]["folder"], name)
        return self._load(files[int(rng.integers(len(files)))])

    def waveform(self, wave: np.ndarray, row: dict) -> np.ndarray:
        """The augmented waveform of a training row (the input itself for an evaluation row)."""
        for name in WAVEFORM_TRANSFORMS:
            settings = self.config.get(name)
            if settings is None:
                continue
            rng = self._rng(row, name)
            if rng is None:
                return wave  # evaluation row: never augmented
            if rng.random() >= settings["p"]:
                continue
            wave = self._apply(name, settings, wave, rng)
        return wave

    def _apply(self, name: str, s: dict, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        sr = self.sampling_rate
        if name == "speed":
            return change_speed(wave, s["factors"][int(rng.integers(len(s["factors"])))])
        if name == "pitch":
            return shift_pitch(wave, sr, rng.uniform(*s["semitones"]))
        if name == "reverb":
            if s["folder"]:
                rir = self._pick_file(name, rng)
            else:
                rir = simulated_rir(sr, rng.uniform(*s["rt60"]), rng)
            return reverberate(wave, rir)
        if name == "noise":
            snr = rng.uniform(*s["snr_db"])
            if s["folder"]:
                noise = self._pick_file(name, rng)
                noise = _fit_length(noise, len(wave), int(rng.integers(max(len(noise), 1))))
            else:
                noise = coloured_noise(len(wave), s["colors"][int(rng.integers(len(s["colors"])))], rng)
            return add_noise(wave, noise, snr)
        if name == "gain":
            return (wave * 10 ** (rng.uniform(*s["db"]) / 20.0)).astype(np.float32)
        if name == "band_limit":
            return band_limit(wave, sr, rng.uniform(*s["cutoff_hz"]))
        raise AssertionError(name)

    def spectral(self, features, rows: list[dict], valid_frames: list[int]):
        """SpecAugment (Park et al., 2019): zero-mean frequency and time masks on ``B x mel x T`` features,
        filled with each utterance's mean, inside its valid frames; evaluation rows untouched."""
        settings = self.config.get("specaugment")
        if settings is None:
            return features
        features = features.clone()
        for i, row in enumerate(rows):
            rng = self._rng(row, "specaugment")
            if rng is None or rng.random() >= settings["p"]:
                continue
            frames = max(1, min(int(valid_frames[i]), features.shape[-1]))
            item = features[i, :, :frames]
            fill = float(item.mean())
            bins = item.shape[0]
            for _ in range(int(settings["freq_masks"])):
                width = int(rng.integers(0, int(settings["freq_width"]) + 1))
                start = int(rng.integers(0, max(bins - width, 0) + 1))
                item[start : start + width, :] = fill
            for _ in range(int(settings["time_masks"])):
                width = min(int(rng.integers(0, int(settings["time_width"]) + 1)), frames)
                start = int(rng.integers(0, max(frames - width, 0) + 1))
                item[:, start : start + width] = fill
        return features


# ------------------------------------------------------------------------------------- perturbations
PERTURBATIONS = ("clean", "noise", "reverb", "band_limit", "speed", "gain")
DEFAULT_SEVERITIES = {"noise": [20.0, 10.0, 0.0], "reverb": [0.3, 0.6, 1.0], "band_limit": [4000.0, 2000.0, 1000.0],
                      "speed": [0.9, 1.1], "gain": [-20.0, 20.0]}
SEVERITY_UNITS = {"noise": "SNR dB", "reverb": "RT60 s", "band_limit": "cutoff Hz", "speed": "factor", "gain": "dB"}


@dataclass(frozen=True)
class Perturbation:
    """A fixed, deterministic degradation for the robustness report (same output for a row every time)."""

    kind: str
    severity: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.kind not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {self.kind!r}; valid: {', '.join(PERTURBATIONS)}")

    @property
    def label(self) -> str:
        return self.kind if self.severity is None else f"{self.kind}:{self.severity:g}"

    def __call__(self, wave: np.ndarray, row: dict, sampling_rate: int) -> np.ndarray:
        import zlib

        if self.kind == "clean":
            return wave
        key = str(row.get("id") or row.get("audio") or "")
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode("utf-8")), zlib.crc32(self.kind.encode())])
        if self.kind == "noise":
            return add_noise(wave, coloured_noise(len(wave), "white", rng), float(self.severity))
        if self.kind == "reverb":
            return reverberate(wave, simulated_rir(sampling_rate, float(self.severity), rng))
        if self.kind == "band_limit":
            return band_limit(wave, sampling_rate, float(self.severity))
        if self.kind == "speed":
            return change_speed(wave, float(self.severity))
        if self.kind == "gain":
            return np.clip(wave * 10 ** (float(self.severity) / 20.0), -1.0, 1.0).astype(np.float32)
        raise AssertionError(self.kind)


def parse_perturbations(items: list[str], seed: int = 0) -> list[Perturbation]:
    """``["noise:20,10,0", "reverb", "band_limit:3000"]`` -> the clean condition plus one Perturbation per severity."""
    out = [Perturbation("clean", None, seed)]
    for item in items:
        kind, _, values = item.partition(":")
        kind = kind.strip()
        if kind not in DEFAULT_SEVERITIES:
            raise ValueError(f"--perturb {item!r}: unknown degradation {kind!r}; valid: {', '.join(DEFAULT_SEVERITIES)}")
        try:
            severities = [float(v) for v in values.split(",") if v.strip()] if values else DEFAULT_SEVERITIES[kind]
        except ValueError:
            raise ValueError(f"--perturb {item!r}: severities must be numbers, e.g. noise:20,10,0") from None
        out += [Perturbation(kind, s, seed) for s in severities]
    return out


__all__ = [
    "Augmenter",
    "DEFAULT_SEVERITIES",
    "Perturbation",
    "add_noise",
    "band_limit",
    "change_speed",
    "coloured_noise",
    "parse_augment_config",
    "parse_perturbations",
    "reverberate",
    "simulated_rir",
]
