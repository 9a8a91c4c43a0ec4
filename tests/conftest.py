"""Shared fixtures: a tiny labelled corpus of generated audio, built once per test session."""
from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

TINY_LABELS = ["a", "b", "c"]
_FREQ = {"a": 180.0, "b": 320.0, "c": 560.0}
_AVD = {"a": (2.0, 3.0, 2.5), "b": (4.0, 4.0, 4.0), "c": (6.0, 5.0, 5.5)}


@pytest.fixture(scope="session", autouse=True)
def _private_ser_hf_cache(tmp_path_factory):
    """Parsed-manifest and header caches of the tests go to a temporary folder, not ~/.cache/ser_hf."""
    if "SER_HF_CACHE" not in os.environ:
        os.environ["SER_HF_CACHE"] = str(tmp_path_factory.mktemp("ser_hf_cache"))
    yield


def write_tiny_corpus(root, *, per_class=(6, 4, 2), splits=("train", "dev", "test"), seed=0) -> str:
    """A manifest corpus whose class is audible (tone pitch) and whose A/V/D follow the class.

    ``per_class`` counts utterances per class in each split (imbalanced on purpose). Returns the
    manifest path (CSV in the ser-hf schema).
    """
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "wav"), exist_ok=True)
    rows = []
    for split_index, split in enumerate(splits):
        for label, count in zip(TINY_LABELS, per_class):
            for k in range(count):
                uid = f"{split}_{label}_{k}"
                seconds = rng.uniform(0.4, 1.2)
                t = np.arange(int(seconds * 16000)) / 16000
                wave = 0.4 * np.sin(2 * np.pi * _FREQ[label] * t) + 0.05 * rng.standard_normal(t.size)
                path = os.path.join(root, "wav", f"{uid}.wav")
                sf.write(path, wave.astype(np.float32), 16000)
                a, v, d = (x + rng.normal(0, 0.3) for x in _AVD[label])
                speaker = f"{split}_spk{k % 2}"
                rows.append(
                    dict(id=uid, audio=f"wav/{uid}.wav", transcript=f"this is {label} number {k}", label=label,
                         arousal=round(a, 3), valence=round(v, 3), dominance=round(d, 3), speaker=speaker,
                         gender="F" if k % 2 else "M", split=split)
                )
    manifest = os.path.join(root, "manifest.csv")
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory) -> str:
    return write_tiny_corpus(str(tmp_path_factory.mktemp("tiny_corpus")))


@pytest.fixture(scope="session")
def tiny_corpus(tiny_manifest):
    from ser_hf.data.corpora import load_corpus

    return load_corpus("manifest", tiny_manifest)
