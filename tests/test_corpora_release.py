"""IEMOCAP, CREMA-D, MSP-IMPROV, MELD, ESD and TESS loaders on tiny corpora in each release's exact
layout (tests/corpus_fixtures.py): labels, attribute scale, speakers, splits, transcripts, votes,
and a clear error naming what is missing when the layout is wrong."""
from __future__ import annotations

import logging
import os
import shutil

import pytest

from corpus_fixtures import (
    build_crema_d,
    build_esd,
    build_iemocap,
    build_meld,
    build_msp_improv,
    build_tess,
    crema_votes,
)
from ser_hf.data.corpora import get_corpus_spec, load_corpus
from ser_hf.data.corpora.layout import CorpusLayoutError
from ser_hf.data.validation import DataValidationError, validate_dataset


def by_id(corpus) -> dict[str, dict]:
    return {row["id"]: row for split in corpus.values() for row in split.to_list()}


def check_valid(corpus, name: str) -> None:
    """Every row fits the corpus's declared classes and attribute scale (the checks train runs)."""
    spec = get_corpus_spec(name)
    report = validate_dataset(corpus, labels=list(spec.labels), attribute_range=spec.attribute_range, require_label=False, check_audio=True)
    report.raise_if_errors()


# ------------------------------------------------------------------------------------------ IEMOCAP
def test_iemocap_labels_attributes_votes_transcripts_speakers(tmp_path, caplog):
    root = build_iemocap(tmp_path / "IEMOCAP_full_release")
    with caplog.at_level(logging.INFO):
        corpus = load_corpus("iemocap", root, sessions=["Session1", "Session2"], test_sessions=["Ses02"], dev_sessions=[])
    rows = by_id(corpus)
    assert list(corpus) == ["train", "test"] and len(rows) == 7
    neutral, frustrated, excited = rows["Ses01F_impro01_F000"], rows["Ses01F_impro01_M000"], rows["Ses01F_script01_1_F001"]
    assert neutral["label"] == "neutral" and neutral["transcript"] == "Excuse me."
    assert (neutral["valence"], neutral["arousal"], neutral["dominance"]) == (2.5, 2.5, 2.5)
    assert neutral["label_distribution"] == [1.0, 0.0, 0.0, 0.0]  # "Neutral state" counts as neutral
    # Frustration is outside the 4 classes: no label, but its anger votes survive as a distribution.
    assert frustrated["label"] is None and frustrated["arousal"] == 3.5
    assert frustrated["label_distribution"] == [0.0, 0.0, 1.0, 0.0]
    assert excited["label"] == "happy" and excited["label_distribution"] == [0.0, 1.0, 0.0, 0.0]  # happy + excited merged
    # Speaker is session + the gender of the speaking actor (the utterance suffix, not the dialog prefix).
    assert frustrated["speaker"] == "Ses01M" and frustrated["gender"] == "M" and neutral["speaker"] == "Ses01F"
    sad = rows["Ses02M_impro03_F000"]
    assert sad["split"] == "test" and sad["speaker"] == "Ses02F"
    assert sad["label_distribution"] == pytest.approx([0.25, 0.0, 0.0, 0.75])  # one rater split Sadness; Neutral
    assert rows["Ses02M_script02_2_F000"]["label"] is None and rows["Ses02M_script02_2_F000"]["label_distribution"] is None
    assert rows["Ses02M_script02_2_F000"]["transcript"] is None
    assert "no transcript line" in caplog.text and "outside class set 4" in caplog.text
    check_valid(corpus, "iemocap")
    spec = get_corpus_spec("IEMOCAP")
    assert spec.labels == ("neutral", "happy", "angry", "sad") and spec.attribute_range == (1.0, 5.0)


def test_iemocap_class_sets_and_dialog_filter(tmp_path):
    root = build_iemocap(tmp_path / "IEMOCAP")
    kwargs = dict(sessions=["Session1", "Session2"])
    six = by_id(load_corpus("iemocap", root, class_set="6", **kwargs))
    assert six["Ses01F_impro01_M000"]["label"] == "frustrated" and six["Ses01F_script01_1_F001"]["label"] == "excited"
    assert six["Ses01F_impro01_M000"]["label_distribution"] == pytest.approx([0, 0, 0, 0.5, 0, 0.5])  # + frustrated, excited
    no_exc = by_id(load_corpus("iemocap", root, class_set="4_no_excited", **kwargs))
    assert no_exc["Ses01F_script01_1_F001"]["label"] is None
    with_text = by_id(load_corpus("iemocap", root, missing_transcripts="drop", **kwargs))
    assert set(six) - set(with_text) == {"Ses02M_script02_2_F000"}
    improvised = by_id(load_corpus("iemocap", root, dialogs="improvised", **kwargs))
    assert improvised and all("_impro" in key for key in improvised)
    scripted = by_id(load_corpus("iemocap", root, dialogs="scripted", **kwargs))
    assert set(improvised) | set(scripted) == set(six) and not set(improvised) & set(scripted)
    with pytest.raises(ValueError, match="class_set must be one of"):
        load_corpus("iemocap", root, class_set="5", **kwargs)


def test_iemocap_bad_layouts_name_what_is_missing(tmp_path):
    root = build_iemocap(tmp_path / "IEMOCAP")
    with pytest.raises(CorpusLayoutError, match="Session3"):
        load_corpus("iemocap", root)  # the default reads all five sessions
    os.remove(root / "Session2" / "sentences" / "wav" / "Ses02M_impro03" / "Ses02M_impro03_M000.wav")
    with pytest.raises(DataValidationError, match="Ses02M_impro03_M000.wav: missing audio"):
        load_corpus("iemocap", root, sessions=["Session1", "Session2"])
    shutil.rmtree(root / "Session1" / "dialog" / "EmoEvaluation")
    with pytest.raises(CorpusLayoutError, match=r"Session1/dialog/EmoEvaluation"):
        load_corpus("iemocap", root, sessions=["Session1"])
    bad = tmp_path / "bad"
    build_iemocap(bad)
    path = bad / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    path.write_text(path.read_text().replace("[2.5000, 2.5000, 2.5000]", "[2.5, oops]"))
    with pytest.raises(DataValidationError, match=r"Ses01F_impro01.txt:3: not '\[start - end\]"):
        load_corpus("iemocap", bad, sessions=["Session1"])


# ------------------------------------------------------------------------------------------ CREMA-D
def test_crema_d_intended_and_perceived_labels_votes_demographics(tmp_path, caplog):
    root = build_crema_d(tmp_path / "CREMA-D")
    corpus = load_corpus("crema_d", root, test_fraction=0.25, dev_fraction=0.25)
    rows = by_id(corpus)
    assert len(rows) == 24 and set(corpus) == {"train", "dev", "test"}
    row = rows["1002_IEO_ANG_HI"]
    assert row["label"] == "angry" and row["gender"] == "F" and row["speaker"] == "1002"
    assert row["transcript"] == "It's eleven o'clock."
    votes = crema_votes("1002", "IEO_ANG_HI")
    assert row["label_distribution"] == pytest.approx([votes[k] / sum(votes.values()) for k in "ADFHNS"])
    assert rows["1001_DFA_HAP_XX"]["gender"] == "M" and rows["1001_DFA_HAP_XX"]["label"] == "happy"
    speakers = {split: set(corpus[split]["speaker"]) for split in corpus}
    assert sum(len(s) for s in speakers.values()) == 4 and not speakers["train"] & speakers["test"]
    check_valid(corpus, "crema_d")
    with caplog.at_level(logging.INFO):
        perceived = by_id(load_corpus("crema_d", root, label_source="perceived"))
    assert perceived["1002_IEO_ANG_HI"]["label"] is None  # an A:D tie has no perceived label
    assert perceived["1001_IEO_ANG_HI"]["label"] == "angry" and "1 ties" in caplog.text


def test_crema_d_bad_layouts(tmp_path):
    root = build_crema_d(tmp_path / "CREMA-D")
    os.remove(root / "processedResults" / "summaryTable.csv")
    assert load_corpus("crema_d", root)  # intended labels need no rating files
    with pytest.raises(CorpusLayoutError, match="processedResults/summaryTable.csv"):
        load_corpus("crema_d", root, label_source="perceived")
    (root / "AudioWAV" / "1001_XYZ_ANG_XX.wav").write_bytes(b"")
    with pytest.raises(DataValidationError, match="1001_XYZ_ANG_XX.wav: not a CREMA-D file name"):
        load_corpus("crema_d", root)
    os.remove(root / "VideoDemographics.csv")
    with pytest.raises(CorpusLayoutError, match="VideoDemographics.csv"):
        load_corpus("crema_d", root)


# ------------------------------------------------------------------------------------------ MSP-IMPROV
def test_msp_improv_labels_attributes_votes_sessions(tmp_path):
    root = build_msp_improv(tmp_path / "MSP-IMPROV")
    corpus = load_corpus("msp_improv", root, test_sessions=["02"], dev_sessions=[])
    rows = by_id(corpus)
    assert set(corpus) == {"train", "test"} and len(rows) == 5
    angry = rows["S01A-F01-P-FM01"]
    assert angry["label"] == "angry" and angry["speaker"] == "F01" and angry["gender"] == "F"
    assert (angry["arousal"], angry["valence"], angry["dominance"]) == pytest.approx((4.2, 1.8, 4.0))
    assert angry["label_distribution"] == pytest.approx([1.0, 0, 0, 0])  # the "Other" vote is outside the classes
    assert rows["S01A-M01-R-MF02"]["label_distribution"] == pytest.approx([0, 0, 0.5, 0.5])
    assert rows["S02N-F02-P-FM01"]["label"] is None and rows["S02N-F02-P-FM01"]["split"] == "test"  # X: no agreement
    check_valid(corpus, "msp_improv")
    from ser_hf.data.folds import fold_assignment

    names, _ = fold_assignment(list(rows.values()), "msp_improv_loso", "msp_improv")
    assert names == ["01", "02"]
    only_read = load_corpus("msp_improv", root, kinds=["R"])
    assert [r["id"] for s in only_read.values() for r in s.to_list()] == ["S01A-M01-R-MF02"]


def test_msp_improv_missing_audio_is_listed_or_dropped(tmp_path):
    root = build_msp_improv(tmp_path / "MSP-IMPROV")
    os.remove(root / "session1" / "S01H" / "T" / "MSP-IMPROV-S01H-F01-T-FM03.wav")
    with pytest.raises(DataValidationError, match="S01H-F01-T-FM03: listed in"):
        load_corpus("msp_improv", root)
    assert len(by_id(load_corpus("msp_improv", root, on_missing_audio="drop"))) == 4
    os.remove(root / "Evaluation.txt")
    with pytest.raises(CorpusLayoutError, match="Evaluation.txt"):
        load_corpus("msp_improv", root)


# ------------------------------------------------------------------------------------------ MELD
def test_meld_csvs_text_speakers_and_release_splits(tmp_path):
    root = build_meld(tmp_path / "MELD.Raw")
    corpus = load_corpus("meld", root)
    assert list(corpus) == ["train", "dev", "test"] and [len(corpus[s]) for s in corpus] == [4, 2, 2]
    row = by_id(corpus)["train_dia1_utt1"]
    assert (row["label"], row["speaker"], row["transcript"]) == ("anger", "Ross", "No, no, no!")
    assert row["audio"].endswith(os.path.join("train_splits", "dia1_utt1.wav"))
    check_valid(corpus, "meld")


def test_meld_mp4_needs_ffmpeg_with_a_clear_error(tmp_path, monkeypatch):
    root = build_meld(tmp_path / "MELD.Raw", wav=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-binaries-here"))
    with pytest.raises(RuntimeError, match="8 clips are .mp4 only .* no ffmpeg is on PATH"):
        load_corpus("meld", root)
    os.remove(root / "dev_splits_complete" / "dia0_utt1.mp4")
    with pytest.raises(DataValidationError, match="no dia0_utt1.mp4"):
        load_corpus("meld", root)
    shutil.rmtree(root / "output_repeated_splits_test")
    with pytest.raises(CorpusLayoutError, match="output_repeated_splits_test"):
        load_corpus("meld", root)


def test_meld_extracts_audio_from_mp4_with_ffmpeg(tmp_path):
    """Needs an FFmpeg on PATH; CI installs one and sets SER_HF_REQUIRE_FFMPEG=1, so there it fails
    instead of skipping when FFmpeg is missing."""
    import subprocess

    import soundfile as sf

    if shutil.which("ffmpeg") is None:
        if os.environ.get("SER_HF_REQUIRE_FFMPEG") == "1":
            pytest.fail("SER_HF_REQUIRE_FFMPEG=1 but no ffmpeg on PATH")
        pytest.skip("FFmpeg is not installed (the mp4 extraction path)")

    root = build_meld(tmp_path / "MELD.Raw")
    for wav in sorted(root.rglob("*.wav")):  # turn every wav stand-in into a real mp4 clip
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), str(wav.with_suffix(".mp4"))], check=True)
        wav.unlink()
    corpus = load_corpus("meld", root)
    audio = by_id(corpus)["dev_dia0_utt0"]["audio"]
    data, rate = sf.read(audio)
    assert rate == 16000 and data.ndim == 1 and len(data) > 1000
    assert audio.startswith(str(root / "wav" / "dev"))


# ------------------------------------------------------------------------------------------ ESD
@pytest.mark.parametrize("split_folders", [True, False])
def test_esd_release_ranges_languages_and_transcripts(tmp_path, split_folders):
    root = build_esd(tmp_path / "ESD", split_folders=split_folders)
    corpus = load_corpus("esd", root)
    rows = by_id(corpus)
    assert len(rows) == 2 * 5 * 3 and set(corpus) == {"train", "dev", "test"}
    assert rows["0011_000001"]["split"] == "dev" and rows["0011_000021"]["split"] == "test"
    assert rows["0011_000051"]["split"] == "train" and rows["0011_001401"]["label"] == "surprise"
    assert rows["0001_000351"]["label"] == "angry" and rows["0001_000351"]["transcript"].startswith("打远一看")
    assert rows["0011_000721"]["label"] == "happy" and rows["0011_000721"]["gender"] == "M"
    assert rows["0001_000001"]["gender"] == "F"
    english = by_id(load_corpus("esd", root, languages=["english"]))
    assert set(r["speaker"] for r in english.values()) == {"0011"}
    check_valid(corpus, "esd")


def test_esd_bad_layouts(tmp_path):
    root = build_esd(tmp_path / "ESD")
    shutil.move(root / "0011" / "Sad" / "test" / "0011_001071.wav", root / "0011" / "Sad" / "train" / "0011_001071.wav")
    with pytest.raises(DataValidationError, match="in train/ but utterance 1071 belongs to ESD's test range"):
        load_corpus("esd", root)
    os.remove(root / "0001" / "0001.txt")
    with pytest.raises(CorpusLayoutError, match="0001.txt"):
        load_corpus("esd", root)


# ------------------------------------------------------------------------------------------ TESS
def test_tess_speakers_words_and_word_disjoint_split(tmp_path):
    root = build_tess(tmp_path / "TESS")
    corpus = load_corpus("tess", root)
    rows = by_id(corpus)
    assert len(rows) == 2 * 4 * 5
    assert rows["OAF_back_fear"]["label"] == "fear" and rows["YAF_bath_ps"]["label"] == "surprise"
    assert rows["OAF_back_fear"]["transcript"] == "Say the word back" and rows["YAF_dog_neutral"]["speaker"] == "YAF"
    words = {split: {r["transcript"] for r in corpus[split].to_list()} for split in corpus}
    assert words["test"] == {"Say the word back"} and words["dev"] == {"Say the word bath"}
    assert not words["train"] & (words["test"] | words["dev"])
    check_valid(corpus, "tess")
    (root / "TESS Toronto emotional speech set data" / "OAF_angry" / "OAF_back.wav").write_bytes(b"")
    with pytest.raises(DataValidationError, match="OAF_back.wav: not a TESS file name"):
        load_corpus("tess", root)
    with pytest.raises(CorpusLayoutError, match="missing folder"):
        load_corpus("tess", tmp_path / "nowhere")
