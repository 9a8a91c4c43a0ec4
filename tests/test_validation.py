import logging

import datasets
import pytest
from helpers_audio import write_empty, write_random_bytes, write_tone, write_truncated_flac

from ser_hf.data.corpora.manifest import load_manifest
from ser_hf.data.schema import rows_to_dataset, rows_to_dataset_dict
from ser_hf.data.validation import DataValidationError, drop_bad_rows, validate_dataset

LABELS = ("happy", "sad")


def test_one_error_names_every_bad_row(tmp_path):
    write_tone(tmp_path / "good.wav")
    write_random_bytes(tmp_path / "corrupt.wav")
    write_tone(tmp_path / "weird.wav")
    write_tone(tmp_path / "loud.wav")
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,audio,label,arousal\n"
        "ok,good.wav,happy,4\n"
        "gone,missing.wav,sad,4\n"
        "broken,corrupt.wav,sad,4\n"
        "odd,weird.wav,bored,4\n"
        "wild,loud.wav,happy,9.5\n"
    )
    dd = load_manifest(manifest, keep_invalid_rows=True)  # keeps each row's file and line for the report
    report = validate_dataset(dd, labels=LABELS, attribute_range=(1, 7), require_label=True)
    assert [p.id for p in report.problems] == ["gone", "broken", "odd", "wild"]
    with pytest.raises(DataValidationError) as info:
        report.raise_if_errors()
    lines = str(info.value).splitlines()
    assert lines[0] == "4 of 5 rows failed validation:"
    assert len(lines) == 6 and "--on_invalid_rows drop" in lines[5]  # the last line says how to go on
    assert f"{manifest}, line 3, id 'gone'" in lines[1] and "missing.wav" in lines[1] and "not found" in lines[1]
    assert f"{manifest}, line 4, id 'broken'" in lines[2] and "unreadable" in lines[2]
    assert f"{manifest}, line 5, id 'odd'" in lines[3] and "unknown label 'bored'" in lines[3]
    assert f"{manifest}, line 6, id 'wild'" in lines[4] and "arousal=9.5 outside [1, 7]" in lines[4]
    assert "'ok'" not in str(info.value)


def test_each_kind_of_problem(tmp_path):
    good = write_tone(tmp_path / "good.wav")
    rows = [
        {"id": "a", "audio": good, "label": "happy", "arousal": 2, "valence": 3, "dominance": 4, "split": "train"},
        {"id": "b", "audio": write_empty(tmp_path / "empty.wav"), "label": "sad", "split": "train"},
        {"id": "c", "audio": write_truncated_flac(tmp_path / "cut.flac"), "label": "sad", "split": "train"},
        {"id": "d", "audio": good, "label": None, "arousal": float("nan"), "split": "train"},
        {"id": "a", "audio": good, "label": "happy", "arousal": 1, "valence": 1, "dominance": 1, "split": "test"},
        {"id": None, "audio": None, "label": "sad", "split": "test"},
    ]
    report = validate_dataset(
        rows_to_dataset_dict(rows), labels=LABELS, attribute_range=(1, 7), require_label=True, require_attributes=True
    )
    reasons = {(p.split, p.index): "; ".join(p.reasons) for p in report.problems}
    assert set(reasons) == {("train", 1), ("train", 2), ("train", 3), ("test", 0), ("test", 1)}
    assert "empty audio" in reasons["train", 1] and "missing arousal" in reasons["train", 1]
    assert "corrupt audio" in reasons["train", 2]
    assert "missing label" in reasons["train", 3] and "arousal is NaN" in reasons["train", 3]
    assert "duplicate id (first seen at train[0])" in reasons["test", 0]
    assert "missing id" in reasons["test", 1] and "empty audio path" in reasons["test", 1]
    assert report.durations["train"][0] == pytest.approx(0.25) and report.durations["train"][1] is None


def test_optional_checks_are_off_by_default(tmp_path):
    rows = [{"id": "x", "audio": str(tmp_path / "nowhere.wav"), "label": "angry", "arousal": 99.0, "split": "train"}]
    assert validate_dataset(rows_to_dataset(rows), check_audio=False).ok
    report = validate_dataset(rows_to_dataset(rows))
    assert len(report.problems) == 1 and report.problems[0].split == "dataset"


def test_low_sampling_rate_warns_but_passes(tmp_path, caplog):
    rows = [{"id": "x", "audio": write_tone(tmp_path / "8k.wav", sampling_rate=8000), "split": "train"}]
    with caplog.at_level(logging.WARNING):
        report = validate_dataset(rows_to_dataset_dict(rows), sampling_rate=16000)
    assert report.ok and report.warnings and "below 16000 Hz" in caplog.text


def test_message_is_truncated_with_a_count(tmp_path):
    rows = [{"id": f"r{i}", "audio": str(tmp_path / f"{i}.wav"), "split": "train"} for i in range(60)]
    report = validate_dataset(rows_to_dataset_dict(rows))
    with pytest.raises(DataValidationError) as info:
        report.raise_if_errors()
    lines = str(info.value).splitlines()
    assert len(lines) == 53 and lines[-2].strip() == "... and 10 more" and len(info.value.problems) == 60


def test_drop_bad_rows(tmp_path, caplog):
    good = write_tone(tmp_path / "good.wav")
    rows = [
        {"id": "keep1", "audio": good, "label": "happy", "split": "train"},
        {"id": "bad1", "audio": str(tmp_path / "missing.wav"), "label": "happy", "split": "train"},
        {"id": "keep2", "audio": good, "label": "sad", "split": "test"},
        {"id": "bad2", "audio": good, "label": "angry", "split": "test"},
    ]
    dd = rows_to_dataset_dict(rows)
    report = validate_dataset(dd, labels=LABELS)
    with caplog.at_level(logging.WARNING):
        cleaned = drop_bad_rows(dd, report)
    assert cleaned["train"]["id"] == ["keep1"] and cleaned["test"]["id"] == ["keep2"]
    assert "dropped 2 of 4 rows" in caplog.text and "bad1" in caplog.text and "bad2" in caplog.text
    single = rows_to_dataset(rows)
    assert drop_bad_rows(single, validate_dataset(single, labels=LABELS))["id"] == ["keep1", "keep2"]
    with pytest.raises(ValueError, match="not in the data"):
        drop_bad_rows({"other": dd["train"]}, report)


def test_missing_schema_columns_is_a_clear_error():
    with pytest.raises(ValueError, match="lacks schema columns"):
        validate_dataset(datasets.Dataset.from_dict({"id": ["a"], "audio": ["x.wav"]}))
