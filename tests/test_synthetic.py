"""Tests for the synthetic SER corpus: schema, determinism, splits, labels, and that the
audio/text signals are where the demo needs them (audio -> arousal, text -> valence)."""
from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy.stats import pearsonr, spearmanr
from sklearn.linear_model import LinearRegression

from ser_hf.data.corpora import synthetic
from ser_hf.data.corpora.synthetic import (
    ATTRIBUTE_RANGE,
    LABEL_NAMES,
    LABELS,
    NEGATIVE_WORDS,
    POSITIVE_WORDS,
    generate_synthetic_corpus,
    load_synthetic,
)
from ser_hf.data.schema import COLUMNS, FEATURES

SPLITS = ("train", "dev", "test")
TINY = {"num_utterances": 48, "num_speakers": 6}  # smallest valid shape: 2 speakers x 8 utterances per split


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    return generate_synthetic_corpus(tmp_path_factory.mktemp("small") / "corpus", num_utterances=120)


@pytest.fixture(scope="module")
def default_corpus(tmp_path_factory):
    """The default 720-utterance corpus, pooled over splits, with per-file audio features."""
    dd = load_synthetic(tmp_path_factory.mktemp("default") / "corpus")
    rows = [row for split in SPLITS for row in dd[split]]
    rms_db = []
    for row in rows:
        x, _ = sf.read(row["audio"])
        rms_db.append(20 * np.log10(np.sqrt(np.mean(x**2))))
    return dd, rows, np.array(rms_db)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bow_valence(text: str) -> float:
    words = re.findall(r"[a-z]+", text.lower())
    pos = sum(w in POSITIVE_WORDS for w in words)
    neg = sum(w in NEGATIVE_WORDS for w in words)
    return (pos - neg) / (pos + neg + 1)


def test_schema_and_audio_format(small_root):
    with open(small_root / "manifest.csv", newline="", encoding="utf-8") as f:
        assert tuple(csv.DictReader(f).fieldnames) == COLUMNS
    dd = load_synthetic(small_root)
    assert list(dd) == list(SPLITS)
    assert sum(len(dd[s]) for s in SPLITS) == 120
    ids = []
    for split in SPLITS:
        assert dd[split].features == FEATURES
        for row in dd[split]:
            ids.append(row["id"])
            assert row["split"] == split
            assert row["label"] in LABELS
            assert row["gender"] in ("Female", "Male")
            assert row["transcript"].strip()
            assert os.path.isabs(row["audio"])
            info = sf.info(row["audio"])
            assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
            assert 1.0 <= info.duration <= 4.0
    assert len(set(ids)) == len(ids)
    assert len(list((small_root / "audio").glob("*.wav"))) == 120


def test_constants():
    assert LABELS == ["A", "S", "H", "U", "F", "D", "C", "N"]
    assert list(LABEL_NAMES) == LABELS and LABEL_NAMES["N"] == "neutral"
    assert ATTRIBUTE_RANGE == (1.0, 7.0)


def test_deterministic_byte_identical(small_root, tmp_path):
    again = generate_synthetic_corpus(tmp_path / "again", num_utterances=120)
    assert _files(again) == _files(small_root)
    other = generate_synthetic_corpus(tmp_path / "other", seed=1, **TINY)
    tiny = generate_synthetic_corpus(tmp_path / "tiny", **TINY)
    assert (other / "manifest.csv").read_bytes() != (tiny / "manifest.csv").read_bytes()


def test_every_class_in_every_split_small(small_root):
    dd = load_synthetic(small_root)
    for split in SPLITS:
        counts = Counter(dd[split]["label"])
        assert all(counts[c] >= 2 for c in LABELS), (split, counts)


def test_splits_by_speaker_and_gender_balanced(default_corpus):
    dd, _, _ = default_corpus
    speakers = {s: set(dd[s]["speaker"]) for s in SPLITS}
    assert [len(speakers[s]) for s in SPLITS] == [16, 4, 4]
    for a, b in [("train", "dev"), ("train", "test"), ("dev", "test")]:
        assert not speakers[a] & speakers[b], (a, b)
    for split in SPLITS:
        gender_of = dict(zip(dd[split]["speaker"], dd[split]["gender"]))
        assert Counter(gender_of.values()) == {"Female": len(gender_of) // 2, "Male": len(gender_of) // 2}
        counts = Counter(dd[split]["label"])
        assert all(counts[c] >= 2 for c in LABELS), (split, counts)


def test_class_frequencies_msp_like(default_corpus):
    _, rows, _ = default_corpus
    assert len(rows) == 720
    share = {c: n / len(rows) for c, n in Counter(r["label"] for r in rows).items()}
    assert max(share, key=share.get) == "N" and 0.25 <= share["N"] <= 0.35
    for mid in "HSA":
        assert 0.1 <= share[mid] <= 0.25 and share["U"] < share[mid]
    for rare in "FCD":
        assert 0.02 <= share[rare] <= 0.045 and share[rare] < share["U"]


def test_attributes_in_range_and_follow_category(default_corpus):
    _, rows, _ = default_corpus
    avd = np.array([[r["arousal"], r["valence"], r["dominance"]] for r in rows])
    assert avd.min() >= 1.0 and avd.max() <= 7.0
    labels = np.array([r["label"] for r in rows])
    mean = {c: avd[labels == c].mean(axis=0) for c in LABELS}
    for c in LABELS:
        np.testing.assert_allclose(mean[c], synthetic.CATEGORY_AVD[c], atol=0.35, err_msg=c)
    arousal, valence, dominance = 0, 1, 2
    n = mean["N"]
    assert mean["A"][arousal] > n[arousal] + 1 and mean["A"][valence] < n[valence] - 1
    assert mean["A"][dominance] > n[dominance] + 1
    assert (mean["S"] < n - 0.8).all()
    assert mean["H"][arousal] > n[arousal] + 1 and mean["H"][valence] > n[valence] + 1
    assert mean["F"][arousal] > n[arousal] + 1 and mean["F"][valence] < n[valence] - 1
    assert mean["F"][dominance] < n[dominance] - 1
    assert avd.std(axis=0).min() > 0.8  # per-utterance noise, not one value per class


def test_audio_carries_arousal_not_valence(default_corpus):
    _, rows, rms_db = default_corpus
    arousal = [r["arousal"] for r in rows]
    valence = [r["valence"] for r in rows]
    assert spearmanr(rms_db, arousal)[0] > 0.5
    assert abs(spearmanr(rms_db, valence)[0]) < 0.3


def test_text_carries_valence_not_arousal(default_corpus):
    _, rows, _ = default_corpus
    score = [_bow_valence(r["transcript"]) for r in rows]
    assert spearmanr(score, [r["valence"] for r in rows])[0] > 0.5
    assert abs(spearmanr(score, [r["arousal"] for r in rows])[0]) < 0.3
    neutral_only = sum(_bow_valence(r["transcript"]) == 0 for r in rows) / len(rows)
    assert 0.1 < neutral_only < 0.5  # some transcripts carry no sentiment word at all


def test_fusion_beats_each_modality_with_linear_models(default_corpus):
    """The demo's claim in miniature: audio+text beats text on arousal and audio on valence."""
    _, rows, rms_db = default_corpus
    text = np.array([[_bow_valence(r["transcript"])] for r in rows])
    audio = rms_db[:, None]
    features = {"audio": audio, "text": text, "fusion": np.hstack([audio, text])}
    train = np.array([r["split"] == "train" for r in rows])
    score = {}
    for attr in ("arousal", "valence"):
        y = np.array([r[attr] for r in rows])
        for name, x in features.items():
            pred = LinearRegression().fit(x[train], y[train]).predict(x[~train])
            score[attr, name] = pearsonr(pred, y[~train])[0]
    assert score["arousal", "fusion"] > score["arousal", "text"] + 0.3, score
    assert score["valence", "fusion"] > score["valence", "audio"] + 0.3, score


def test_idempotent_no_regeneration(small_root):
    watched = [small_root / "manifest.csv", next((small_root / "audio").glob("*.wav"))]
    before = [p.stat().st_mtime_ns for p in watched]
    assert generate_synthetic_corpus(small_root, num_utterances=120) == small_root
    load_synthetic(small_root)
    load_synthetic(small_root, num_utterances=120)
    assert [p.stat().st_mtime_ns for p in watched] == before


def test_other_parameters_refused_unless_overwrite(tmp_path):
    root = generate_synthetic_corpus(tmp_path / "c", **TINY)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_synthetic_corpus(root, seed=1, **TINY)
    generate_synthetic_corpus(root, seed=1, overwrite=True, **TINY)
    assert json.loads((root / "synthetic.json").read_text())["params"]["seed"] == 1
    assert _files(root) == _files(generate_synthetic_corpus(tmp_path / "fresh", seed=1, **TINY))


def test_foreign_directory_never_overwritten(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="refusing"):
        generate_synthetic_corpus(tmp_path / "mine", overwrite=True, **TINY)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_damaged_corpus_is_rebuilt_identically(tmp_path):
    root = generate_synthetic_corpus(tmp_path / "c", **TINY)
    original = _files(root)
    next((root / "audio").glob("*.wav")).unlink()
    (root / "manifest.csv").write_text("tampered")
    dd = load_synthetic(root)
    assert _files(root) == original
    assert sum(len(dd[s]) for s in SPLITS) == 48


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = synthetic._synthesise

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "_synthesise", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_corpus(tmp_path / "c", **TINY)
    assert list(tmp_path.iterdir()) == []


def test_readme_says_synthetic(small_root):
    readme = (small_root / "README.md").read_text(encoding="utf-8")
    assert "synthetic" in readme.lower() and "NOT real speech" in readme
    assert "num_utterances: 120" in readme


def test_default_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SER_HF_CACHE", str(tmp_path / "cache"))
    dd = load_synthetic(**TINY)
    root = synthetic.default_cache_dir(**TINY)
    assert root.parent == tmp_path / "cache" / "synthetic"
    assert (root / "manifest.csv").is_file()
    assert all(Path(p).parent == root / "audio" for p in dd["train"]["audio"])
    assert synthetic.default_cache_dir(seed=1, **TINY) != root


def test_invalid_parameters_are_explained(tmp_path):
    with pytest.raises(ValueError, match="every split needs >= 16"):
        generate_synthetic_corpus(tmp_path / "c", num_utterances=40, num_speakers=6)
    with pytest.raises(ValueError, match="even number"):
        generate_synthetic_corpus(tmp_path / "c", num_speakers=7)
    assert not (tmp_path / "c").exists()
