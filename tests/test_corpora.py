import json
import sys
import types
from collections import Counter

import datasets
import pytest
import soundfile as sf
from helpers_audio import emodb_root, write_tone

from ser_hf.data import audio, corpora
from ser_hf.data.corpora import get_corpus_spec, load_corpus
from ser_hf.data.corpora.emodb import LABELS as EMODB_LABELS
from ser_hf.data.corpora.emodb import SENTENCES, load_emodb
from ser_hf.data.corpora.manifest import load_manifest
from ser_hf.data.corpora.msp_podcast import class_labels, load_msp_podcast
from ser_hf.data.corpora.ravdess import load_ravdess
from ser_hf.data.schema import COLUMNS
from ser_hf.data.splits import speaker_independent_split
from ser_hf.data.validation import DataValidationError


def _speakers_by_split(dd):
    return {name: set(ds["speaker"]) for name, ds in dd.items()}


def _assert_speaker_independent(dd):
    seen = {}
    for name, speakers in _speakers_by_split(dd).items():
        for speaker in speakers:
            assert seen.setdefault(speaker, name) == name, f"speaker {speaker} in {seen[speaker]} and {name}"


@pytest.fixture
def no_decoding(monkeypatch):
    """Any attempt to open audio fails the test: loaders must only index paths."""

    def boom(*args, **kwargs):
        raise AssertionError("a corpus loader opened an audio file")

    for name in ("read", "info", "SoundFile"):
        monkeypatch.setattr(sf, name, boom)
    for name in ("load_audio", "audio_info", "probe_audio"):
        monkeypatch.setattr(audio, name, boom)


# --- MSP-Podcast -------------------------------------------------------------------------------

MSP_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
MSP_ROWS = [
    "MSP-PODCAST_0001_0001.wav,H,5.2,6.0,4.5,12,Female,Train",
    "MSP-PODCAST_0001_0002.wav,O,4.0,3.5,4.0,12,Female,Train",
    "MSP-PODCAST_0002_0001.wav,X,2.0,2.5,3.0,40,Male,Development",
    "MSP-PODCAST_0003_0001.wav,N,4.0,4.0,4.0,41,Male,Test1",
    "MSP-PODCAST_0004_0001.wav,A,6.5,1.5,6.0,Unknown,Unknown,Test2",
    "MSP-PODCAST_0005_0001.wav,,,,,Unknown,Unknown,Test3",
]


def _msp_root(tmp_path, rows=MSP_ROWS):
    root = tmp_path / "MSP"
    (root / "Labels").mkdir(parents=True)
    (root / "Audios").mkdir()
    (root / "Transcripts").mkdir()
    (root / "Labels" / "labels_consensus.csv").write_text(MSP_HEADER + "\n".join(rows) + "\n")
    (root / "Transcripts" / "MSP-PODCAST_0001_0001.txt").write_text("i am so glad\n")
    (root / "Transcripts" / "MSP-PODCAST_0002_0001.txt").write_text("whatever")
    return root


def test_msp_podcast_layout(tmp_path, no_decoding):
    root = _msp_root(tmp_path)
    dd = load_msp_podcast(root)
    assert list(dd) == ["train", "dev", "test", "test2", "test3"]
    assert set(dd["train"].column_names) == set(COLUMNS)
    by_id = {row["id"]: row for ds in dd.values() for row in ds}
    happy = by_id["MSP-PODCAST_0001_0001"]
    assert happy["label"] == "H" and happy["gender"] == "F" and happy["speaker"] == "12"
    assert happy["transcript"] == "i am so glad"
    assert happy["arousal"] == pytest.approx(5.2) and happy["valence"] == 6.0 and happy["dominance"] == 4.5
    assert happy["audio"] == str(root / "Audios" / "MSP-PODCAST_0001_0001.wav")
    other = by_id["MSP-PODCAST_0001_0002"]  # O: no class, attributes kept
    assert other["label"] is None and other["arousal"] == 4.0 and other["transcript"] is None
    assert by_id["MSP-PODCAST_0002_0001"]["label"] is None  # X
    assert by_id["MSP-PODCAST_0003_0001"]["split"] == "test"
    test2 = by_id["MSP-PODCAST_0004_0001"]
    assert test2["speaker"] is None and test2["gender"] is None
    unlabelled = dd["test3"][0]
    assert [unlabelled[k] for k in ("label", "arousal", "valence", "dominance")] == [None] * 4


def test_msp_podcast_options(tmp_path):
    root = _msp_root(tmp_path)
    kept = load_msp_podcast(root, exclude_classes=(), include_transcripts=False)
    labels = {row["id"]: row["label"] for ds in kept.values() for row in ds}
    assert labels["MSP-PODCAST_0001_0002"] == "O" and labels["MSP-PODCAST_0002_0001"] == "X"
    assert set(kept["train"]["transcript"]) == {None}
    assert class_labels(()) == ("A", "S", "H", "U", "F", "D", "C", "N", "O", "X")
    mapping = {"Train": "train", "Development": "dev", "Test1": "test", "Test2": "test", "Test3": None}
    merged = load_msp_podcast(root, splits=mapping)
    assert list(merged) == ["train", "dev", "test"] and len(merged["test"]) == 2


def test_msp_podcast_reports_all_bad_lines(tmp_path):
    rows = MSP_ROWS + [
        "MSP-PODCAST_0009_0001.wav,Z,4,4,4,1,Male,Train",
        "MSP-PODCAST_0009_0002.wav,H,high,4,4,1,Male,Test4",
    ]
    with pytest.raises(DataValidationError) as info:
        load_msp_podcast(_msp_root(tmp_path, rows))
    message = str(info.value)
    assert "2 bad lines" in message
    assert "line 8 (MSP-PODCAST_0009_0001.wav): unknown EmoClass 'Z'" in message
    assert "'high' is not a number" in message and "'Test4'" in message


def test_msp_podcast_bad_lines_join_the_row_report_and_can_be_dropped(tmp_path, capsys):
    """`validate` (and train) report the labels file's bad lines with every other row problem, by file and
    line; --on_invalid_rows drop trains without them."""
    from ser_hf.cli import main as cli

    rows = MSP_ROWS + [
        "MSP-PODCAST_0009_0001.wav,Z,4,4,4,1,Male,Train",
        "MSP-PODCAST_0009_0002.wav,H,high,4,4,1,Male,Test1",
    ]
    root = _msp_root(tmp_path, rows)
    csv_path = root / "Labels" / "labels_consensus.csv"
    kept = load_msp_podcast(root, keep_invalid_rows=True)
    assert kept["train"].filter(lambda r: r["invalid"] is not None)["source"] == [f"{csv_path}, line 8"]
    args = ["--corpus", "msp_podcast", "--data_path", str(root), "--validate_audio", "false", "--task", "attributes",
            "--train_split", "train", "--eval_split", "none", "--test_split", "test", "--output_dir", str(tmp_path / "o")]
    assert cli(["validate", *args]) == 2
    err = capsys.readouterr().err
    assert f"{csv_path}, line 8, id 'MSP-PODCAST_0009_0001': unknown EmoClass 'Z'" in err
    assert f"{csv_path}, line 9, id 'MSP-PODCAST_0009_0002': EmoAct value 'high' is not a number" in err
    assert "Traceback" not in err
    assert cli(["validate", *args, "--on_invalid_rows", "drop"]) == 0
    out = capsys.readouterr().out
    assert "would drop 2 bad rows" in out and f"{csv_path}, line 8" in out


def test_msp_podcast_missing_column(tmp_path):
    root = _msp_root(tmp_path)
    (root / "Labels" / "labels_consensus.csv").write_text("FileName,EmoClass\nx.wav,H\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_msp_podcast(root)


# --- RAVDESS -----------------------------------------------------------------------------------

RAVDESS_ACTORS = ("01", "02", "19", "20", "21", "22", "23", "24")


@pytest.fixture
def ravdess_root(tmp_path):
    root = tmp_path / "RAVDESS"
    for actor in RAVDESS_ACTORS:
        folder = root / f"Actor_{actor}"
        write_tone(folder / f"03-01-05-01-02-01-{actor}.wav", seconds=0.01)  # speech, angry, "Dogs ..."
        write_tone(folder / f"03-01-01-01-01-02-{actor}.wav", seconds=0.01)  # speech, neutral, "Kids ..."
        write_tone(folder / f"03-02-03-02-01-01-{actor}.wav", seconds=0.01)  # song, happy
        (folder / f"01-01-05-01-02-01-{actor}.mp4").write_bytes(b"")  # video: never indexed
    return root


def test_ravdess_layout(ravdess_root, no_decoding):
    dd = load_ravdess(ravdess_root)
    assert list(dd) == ["train", "dev", "test"]
    assert _speakers_by_split(dd) == {"train": {"01", "02"}, "dev": {"19", "20"}, "test": {"21", "22", "23", "24"}}
    rows = {row["id"]: row for ds in dd.values() for row in ds}
    assert len(rows) == 2 * len(RAVDESS_ACTORS)  # speech only by default
    angry = rows["03-01-05-01-02-01-01"]
    assert (
        angry["label"] == "angry" and angry["gender"] == "M" and angry["transcript"] == "Dogs are sitting by the door"
    )
    neutral = rows["03-01-01-01-01-02-02"]
    assert neutral["label"] == "neutral" and neutral["gender"] == "F" and neutral["transcript"].startswith("Kids")
    assert angry["audio"].endswith("Actor_01/03-01-05-01-02-01-01.wav")


def test_ravdess_options_and_errors(ravdess_root):
    root = ravdess_root
    with_song = load_ravdess(root, vocal_channels=("01", "02"), test_actors=("01",), dev_actors=())
    assert sum(len(ds) for ds in with_song.values()) == 3 * len(RAVDESS_ACTORS)
    assert "happy" in set(with_song["train"]["label"]) and set(with_song["test"]["speaker"]) == {"01"}
    with pytest.raises(ValueError, match="do not occur"):
        load_ravdess(root, test_actors=("07",))
    with pytest.raises(ValueError, match="both test and dev"):
        load_ravdess(root, test_actors=("01",), dev_actors=("01",))
    with pytest.raises(FileNotFoundError, match="modality"):
        load_ravdess(root, modalities=("02",))
    write_tone(root / "Actor_01" / "notes.wav", seconds=0.01)
    with pytest.raises(DataValidationError, match="notes.wav"):
        load_ravdess(root)


# --- Manifests ---------------------------------------------------------------------------------


def test_csv_manifest_with_column_mapping(tmp_path, caplog):
    write_tone(tmp_path / "clips" / "a.wav", seconds=0.01)
    manifest = tmp_path / "meta.csv"
    manifest.write_text(
        "path,emotion,act,spk,part,notes\n"
        "clips/a.wav,happy,3.5,s1,train,loud\n"
        "clips/b.wav,sad,,s2,dev,\n"
        f"{tmp_path / 'abs.wav'},sad,2,s3,test,\n"
    )
    mapping = {"path": "audio", "emotion": "label", "act": "arousal", "spk": "speaker", "part": "split"}
    with caplog.at_level("INFO"):
        dd = load_manifest(manifest, column_mapping=mapping)
    assert "notes" in caplog.text  # ignored columns are named
    assert list(dd) == ["train", "dev", "test"]
    first = dd["train"][0]
    assert first["audio"] == str(tmp_path / "clips" / "a.wav") and first["id"] == "clips/a.wav"
    assert first["label"] == "happy" and first["arousal"] == 3.5 and first["speaker"] == "s1"
    assert dd["dev"][0]["arousal"] is None and dd["dev"][0]["transcript"] is None
    assert dd["test"][0]["audio"] == str(tmp_path / "abs.wav")
    elsewhere = load_manifest(manifest, column_mapping=mapping, audio_root=tmp_path / "store")
    assert elsewhere["train"][0]["audio"] == str(tmp_path / "store" / "clips" / "a.wav")
    assert list(load_manifest(manifest, column_mapping=mapping, split="test")) == ["test"]


def test_jsonl_manifest_defaults_to_train(tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [
        {"id": "u1", "wav": "x/1.wav", "label": 3, "valence": 2, "speaker": 7},
        {"id": "u2", "wav": "x/2.wav", "label": "1", "transcript": "hello"},
    ]
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    dd = load_corpus("manifest", manifest, column_mapping={"wav": "audio"})
    assert list(dd) == ["train"]
    assert dd["train"]["id"] == ["u1", "u2"] and dd["train"]["label"] == ["3", "1"]
    assert dd["train"][0]["speaker"] == "7" and dd["train"][0]["valence"] == 2.0
    assert dd["train"][1]["transcript"] == "hello" and dd["train"][1]["valence"] is None


def test_manifest_errors(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("audio,arousal,label\na.wav,high,x\n,3,y\nc.wav,1,z\n")
    with pytest.raises(DataValidationError) as info:
        load_manifest(manifest)
    message = str(info.value)
    assert "2 bad lines" in message and "line 2: arousal value 'high'" in message and "line 3: missing audio" in message
    with pytest.raises(ValueError, match="not schema columns"):
        load_manifest(manifest, column_mapping={"arousal": "loudness"})
    with pytest.raises(ValueError, match="does not have"):
        load_manifest(manifest, column_mapping={"emotion": "label"})
    with pytest.raises(ValueError, match="both provide 'label'"):
        load_manifest(manifest, column_mapping={"audio": "audio", "arousal": "label"})
    with pytest.raises(ValueError, match="unsupported manifest type"):
        load_manifest(tmp_path / "m.xlsx")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"audio": "a.wav"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        load_manifest(bad_json)


# --- Registry ----------------------------------------------------------------------------------


def test_registry_specs():
    msp = get_corpus_spec("MSP-Podcast")
    assert msp.labels == ("A", "S", "H", "U", "F", "D", "C", "N") and msp.attribute_range == (1.0, 7.0)
    assert msp.label_names["U"] == "surprise"
    emodb = get_corpus_spec("emodb")
    assert emodb.labels == EMODB_LABELS and emodb.attribute_range is None and emodb.label_names["L"] == "boredom"
    assert get_corpus_spec("ravdess").labels[-1] == "surprised"
    assert get_corpus_spec("manifest").labels is None
    assert "synthetic" in corpora.available_corpora()
    assert get_corpus_spec("IEMOCAP").labels == ("neutral", "happy", "angry", "sad")  # registered since issue 10
    with pytest.raises(ValueError, match="unknown corpus"):
        get_corpus_spec("no_such_corpus")


def test_lazy_registration(monkeypatch):
    fake = types.ModuleType("fake_corpus")
    fake.LABELS, fake.ATTRIBUTE_RANGE = ["a", "b"], (0, 1)
    fake.load_fake = lambda root, **kwargs: ("loaded", root, kwargs)
    monkeypatch.setitem(sys.modules, "fake_corpus", fake)
    monkeypatch.setattr(corpora, "CORPORA", dict(corpora.CORPORA))
    monkeypatch.setitem(corpora._LAZY, "fake", ("fake_corpus", "load_fake"))
    monkeypatch.setitem(corpora._LAZY, "absent", ("ser_hf.data.corpora.no_such_module", "load"))
    spec = get_corpus_spec("fake")
    assert spec.labels == ("a", "b") and spec.label_names == {"a": "a", "b": "b"} and spec.attribute_range == (0, 1)
    assert load_corpus("fake", None, n=3) == ("loaded", None, {"n": 3})
    with pytest.raises(ValueError, match="not available"):
        get_corpus_spec("absent")


# --- Speaker-independent splits ------------------------------------------------------------------


def _speaker_rows(n_male=5, n_female=5, per_speaker=3):
    rows = []
    for i in range(n_male + n_female):
        for j in range(per_speaker):
            gender = "M" if i < n_male else "F"
            rows.append(
                {"id": f"s{i}_{j}", "audio": f"/x/{i}_{j}.wav", "speaker": f"s{i}", "gender": gender, "split": "?"}
            )
    return rows


def test_speaker_independent_split_balances_gender():
    rows = _speaker_rows()
    dd = speaker_independent_split(rows, test_fraction=0.2, dev_fraction=0.2, seed=0)
    assert list(dd) == ["train", "dev", "test"]
    _assert_speaker_independent(dd)
    assert sum(len(ds) for ds in dd.values()) == len(rows)
    for name in ("dev", "test"):
        assert sorted(dd[name]["gender"]) == ["F"] * 3 + ["M"] * 3  # one speaker of each, 3 utterances each
        assert set(dd[name]["split"]) == {name}
    again = speaker_independent_split(datasets.Dataset.from_list(rows), test_fraction=0.2, dev_fraction=0.2, seed=0)
    assert _speakers_by_split(again) == _speakers_by_split(dd)  # Dataset input, same seed, same split
    others = [speaker_independent_split(rows, test_fraction=0.2, dev_fraction=0.2, seed=s) for s in range(1, 6)]
    assert any(_speakers_by_split(o) != _speakers_by_split(dd) for o in others)


def test_speaker_independent_split_errors():
    rows = _speaker_rows(1, 1)
    with pytest.raises(ValueError, match="leave one for training"):
        speaker_independent_split(rows, test_fraction=0.3, dev_fraction=0.3, seed=0)
    with pytest.raises(ValueError, match="sum < 1"):
        speaker_independent_split(rows, test_fraction=0.6, dev_fraction=0.4, seed=0)
    rows[0]["speaker"] = None
    with pytest.raises(ValueError, match="1 rows have no speaker.*s0_0"):
        speaker_independent_split(rows, test_fraction=0.2, dev_fraction=0.0, seed=0)


# --- EmoDB (real data) --------------------------------------------------------------------------

EMODB_COUNTS = {"W": 127, "L": 81, "N": 79, "F": 71, "A": 69, "T": 62, "E": 46}
EMODB_GENDER = {
    "03": "M",
    "08": "F",
    "09": "F",
    "10": "M",
    "11": "M",
    "12": "M",
    "13": "F",
    "14": "F",
    "15": "M",
    "16": "F",
}


def test_emodb_real_data(no_decoding):
    dd = load_emodb(emodb_root())
    rows = [row for ds in dd.values() for row in ds]
    assert len(rows) == 535
    assert Counter(row["label"] for row in rows) == EMODB_COUNTS
    assert {row["speaker"]: row["gender"] for row in rows} == EMODB_GENDER
    _assert_speaker_independent(dd)
    assert _speakers_by_split(dd) == {
        "train": {"11", "12", "13", "14", "15", "16"},
        "dev": {"09", "10"},
        "test": {"03", "08"},
    }
    assert all(row["transcript"] == SENTENCES[row["id"][2:5]] for row in rows)
    assert all(row["split"] == name for name, ds in dd.items() for row in ds)
    assert len({row["id"] for row in rows}) == 535


def test_emodb_random_speaker_split(no_decoding):
    dd = speaker_independent_split(load_emodb(emodb_root()), test_fraction=0.2, dev_fraction=0.1, seed=3)
    _assert_speaker_independent(dd)
    speakers = _speakers_by_split(dd)
    assert [len(speakers[name]) for name in ("train", "dev", "test")] == [7, 1, 2]
    assert sorted(EMODB_GENDER[s] for s in speakers["test"]) == ["F", "M"]


def test_emodb_rejects_unexpected_files(tmp_path):
    write_tone(tmp_path / "wav" / "03a01Fa.wav", seconds=0.01)
    write_tone(tmp_path / "wav" / "03a01Qa.wav", seconds=0.01)
    write_tone(tmp_path / "wav" / "take2.wav", seconds=0.01)
    with pytest.raises(DataValidationError) as info:
        load_emodb(tmp_path, test_speakers=(), dev_speakers=())
    assert "03a01Qa.wav: unknown emotion letter 'Q'" in str(info.value) and "take2.wav" in str(info.value)
    (tmp_path / "wav" / "03a01Qa.wav").unlink()
    (tmp_path / "wav" / "take2.wav").unlink()
    only = load_emodb(tmp_path, test_speakers=(), dev_speakers=())
    assert list(only) == ["train"] and only["train"][0]["label"] == "F"
