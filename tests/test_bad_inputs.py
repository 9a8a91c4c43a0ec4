"""The bad-input suite: every kind of bad input gets the same clear message from `validate` and `train`.

Each case writes a small manifest, runs ``ser-hf validate`` and ``ser-hf train`` in-process through
`ser_hf.cli.main` (a subprocess costs seconds of torch import), and checks: exit status 2, the
exact file and line named on stderr, no traceback, the same first line from both commands, no model
built and nothing written (output_dir absent). Warnings (silent, clipped, low-rate audio) exit 0
and list the rows. A property-based test feeds fuzzed manifests: each validates or exits 2 with a
message naming a line, never a traceback.
"""
from __future__ import annotations

import csv
import json
import os
import string

import numpy as np
import pytest
from helpers_audio import tone, write_empty, write_random_bytes, write_wav
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ser_hf.experiment
from ser_hf.cli import COMMANDS
from ser_hf.cli import main as cli
from ser_hf.tiny import tiny_speech_backbone

HEADER = ["id", "audio", "label", "arousal", "valence", "dominance", "transcript", "split"]
LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Good, silent, clipped, 8 kHz, empty and corrupt files, written once."""
    root = tmp_path_factory.mktemp("bad_inputs_audio")
    for name in ("g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10", "g11", "g12"):
        write_wav(root / f"{name}.wav", tone(0.3, freq=200 + 30 * len(name)))
    write_wav(root / "silent.wav", np.zeros(4800, dtype=np.float32))
    write_wav(root / "clipped.wav", np.clip(4 * tone(0.3), -1, 1))
    write_wav(root / "low.wav", tone(0.3, sampling_rate=8000), sampling_rate=8000)
    write_empty(root / "empty.wav")
    write_random_bytes(root / "corrupt.wav")
    return root


def good_rows() -> list[dict]:
    """12 clean rows: classes a, b, c in train (2 each), dev and test (1 each)."""
    rows, k = [], 0
    for split, per_class in (("train", 2), ("dev", 1), ("test", 1)):
        for label in LABELS:
            for _ in range(per_class):
                k += 1
                rows.append(dict(id=f"u{k}", audio=f"g{k}.wav", label=label, arousal="4", valence="4",
                                 dominance="4", transcript=f"words {k}", split=split))
    return rows


def write_manifest(folder, rows, header=HEADER, name="m.csv", encoding="utf-8") -> str:
    """CSV with ``header``; row i (0-based) is on line i + 2. Rows may be dicts or raw text lines."""
    path = os.path.join(folder, name)
    lines = [",".join(header)]
    for row in rows:
        lines.append(row if isinstance(row, str) else ",".join(str(row.get(column, "")) for column in header))
    with open(path, "wb") as handle:
        handle.write(("\n".join(lines) + "\n").encode(encoding))
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a model is built: every check must run before."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built despite bad input")

    monkeypatch.setattr(ser_hf.experiment, "build_model", refuse)


def _args(data_path, output_dir, *extra, corpus="manifest", labels=LABELS):
    args = ["--corpus", corpus, "--data_path", str(data_path), "--output_dir", str(output_dir),
            "--backbone_config", json.dumps(tiny_speech_backbone()), "--max_steps", "1", "--eval_strategy", "no",
            "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true",
            "--per_device_train_batch_size", "2", "--max_audio_seconds", "1.0", "--head_hidden_size", "8"]
    if labels:
        args += ["--labels", *labels]
    return args + list(extra)


def run(capsys, command, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli([command, *args])
    out, err = capsys.readouterr()
    return code, out, err


def error_message(err: str) -> str:
    """The message after ``ser-hf <command>: error:`` (stderr may also hold a progress bar and log lines)."""
    start = err.index(": error: ") + len(": error: ")
    return err[start:]


def assert_rejected(capsys, tmp_path, data_path, *extra, expect: list[str], corpus="manifest", labels=LABELS) -> str:
    """validate and train both exit 2 naming ``expect``, same first line, no traceback, nothing written."""
    first_lines = []
    for command in ("validate", "train"):
        output_dir = tmp_path / f"out_{command}"
        code, _, err = run(capsys, command, *_args(data_path, output_dir, *extra, corpus=corpus, labels=labels))
        assert code == 2, err
        assert "Traceback" not in err
        for text in expect:
            assert text in err, f"{command}: {text!r} not in:\n{err}"
        assert not output_dir.exists(), f"{command} wrote {list(output_dir.iterdir())}"
        first_lines.append(error_message(err).splitlines()[0])
    assert first_lines[0] == first_lines[1]
    return err


# --- one case per kind of bad input ------------------------------------------------------------


def test_attribute_outside_the_declared_scale(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[4]["arousal"] = "9"
    manifest = write_manifest(audio_dir, rows, name="arousal9.csv")
    assert_rejected(capsys, tmp_path, manifest, "--task", "multitask", "--attribute_range", "1", "7",
                    expect=[f"{manifest}, line 6, id 'u5': arousal=9 outside [1, 7]"])


def test_attributes_without_a_declared_scale(audio_dir, tmp_path, capsys, no_model):
    manifest = write_manifest(audio_dir, good_rows(), name="noscale.csv")
    assert_rejected(capsys, tmp_path, manifest, "--task", "attributes",
                    expect=["task 'attributes' needs the scale of the attributes", "--attribute_range LOW HIGH",
                            "values in the data span 4 to 4"])


def test_unknown_class_with_a_label_set(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[2]["label"] = "hapy"
    manifest = write_manifest(audio_dir, rows, name="typo.csv")
    assert_rejected(capsys, tmp_path, manifest,
                    expect=[f"{manifest}, line 4, id 'u3': unknown label 'hapy' (expected one of ['a', 'b', 'c'])"])


def test_unknown_class_without_a_label_set(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[2]["label"] = "hapy"
    manifest = write_manifest(audio_dir, rows, name="typo_nolabels.csv")
    assert_rejected(capsys, tmp_path, manifest, labels=None,
                    expect=["task 'categorical' needs the class codes", f"hapy (1 row, first at {manifest}, line 4)",
                            "--labels"])


def test_label_column_in_the_wrong_case(audio_dir, tmp_path, capsys, no_model):
    header = ["id", "audio", "Label", "split"]
    rows = [{"id": r["id"], "audio": r["audio"], "Label": r["label"], "split": r["split"]} for r in good_rows()]
    manifest = write_manifest(audio_dir, rows, header=header, name="case.csv")
    assert_rejected(capsys, tmp_path, manifest,
                    expect=[f"{manifest}, line 1 (the header): column 'Label' differs from the schema column 'label' "
                            "only by case or spacing", '"column_mapping": {"Label": "label"}'])


def test_renamed_columns_show_the_mapping(audio_dir, tmp_path, capsys, no_model):
    header = ["name", "path", "emotion", "split"]
    rows = [{"name": r["id"], "path": r["audio"], "emotion": r["label"], "split": r["split"]} for r in good_rows()]
    manifest = write_manifest(audio_dir, rows, header=header, name="renamed.csv")
    err = assert_rejected(capsys, tmp_path, manifest,
                          expect=[f"{manifest}, line 1 (the header): no column provides 'audio' (required); no "
                                  "column provides 'label' (required)", "Columns found: 'name', 'path', 'emotion', "
                                  "'split'", 'column_mapping: {"path": "audio", "emotion": "label"}'])
    assert err.count("missing audio path") == 0  # one message, not one per row
    # ... and the mapping it shows does fix it.
    mapping = json.dumps({"column_mapping": {"path": "audio", "emotion": "label", "name": "id"}})
    code, out, err = run(capsys, "validate", *_args(manifest, tmp_path / "ok", "--corpus_options", mapping))
    assert code == 0 and "OK: 12 rows" in out, err


def test_class_absent_from_training(audio_dir, tmp_path, capsys, no_model):
    rows = [r for r in good_rows() if not (r["split"] == "train" and r["label"] == "c")]
    manifest = write_manifest(audio_dir, rows, name="nocinTrain.csv")
    assert_rejected(capsys, tmp_path, manifest,
                    expect=[f"class 'c' has no training rows (dev: 1 rows, e.g. {manifest}, line 8; test: 1 rows, "
                            f"e.g. {manifest}, line 11)", "--allow_missing_classes"])
    code, out, err = run(capsys, "validate", *_args(manifest, tmp_path / "ok", "--allow_missing_classes", "true"))
    assert code == 0 and "class 'c' has no training rows" in out


def test_class_in_the_label_set_with_no_rows(audio_dir, tmp_path, capsys, no_model):
    manifest = write_manifest(audio_dir, good_rows(), name="fourclasses.csv")
    assert_rejected(capsys, tmp_path, manifest, labels=[*LABELS, "d"],
                    expect=["class 'd' has no training rows (no rows in any split read)"])


def test_empty_transcript_in_a_text_run(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[7]["transcript"] = ""
    manifest = write_manifest(audio_dir, rows, name="notext.csv")
    assert_rejected(capsys, tmp_path, manifest, "--modality", "text",
                    expect=[f"{manifest}, line 9, id 'u8': missing or empty transcript"])


def test_no_transcript_column_in_a_text_run(audio_dir, tmp_path, capsys, no_model):
    header = [c for c in HEADER if c != "transcript"]
    manifest = write_manifest(audio_dir, good_rows(), header=header, name="notextcol.csv")
    assert_rejected(capsys, tmp_path, manifest, "--modality", "text",
                    expect=[f"{manifest}, line 1 (the header): no column provides 'transcript' (required)"])


@pytest.mark.parametrize(
    "file_name, reason",
    [("missing.wav", "audio file not found"), ("corrupt.wav", "unreadable audio"), ("empty.wav", "empty audio")],
)
def test_missing_corrupt_and_empty_files(audio_dir, tmp_path, capsys, no_model, file_name, reason):
    rows = good_rows()
    rows[3]["audio"] = file_name
    manifest = write_manifest(audio_dir, rows, name=f"file_{file_name}.csv")
    assert_rejected(capsys, tmp_path, manifest, expect=[f"{manifest}, line 5, id 'u4': {reason}", file_name])


def test_duplicate_ids(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[9]["id"] = "u2"
    manifest = write_manifest(audio_dir, rows, name="dupes.csv")
    assert_rejected(capsys, tmp_path, manifest,
                    expect=[f"{manifest}, line 11, id 'u2': duplicate id (first seen at {manifest}, line 3)"])


def test_parse_errors_and_row_errors_in_one_report(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[1] = "u2,g2.wav,a,4,4,4,words,train,EXTRA"  # too many fields
    rows[2]["arousal"] = "high"
    rows[5]["audio"] = "gone.wav"
    rows[6]["label"] = "zzz"
    manifest = write_manifest(audio_dir, rows, name="mixed.csv")
    err = assert_rejected(capsys, tmp_path, manifest, expect=[
        "4 of 12 rows failed validation",
        f"{manifest}, line 3, id 'u2': 9 fields but the header has 8",
        f"{manifest}, line 4, id 'u3': arousal value 'high' is not a number",
        f"{manifest}, line 7, id 'u6': audio file not found",
        f"{manifest}, line 8, id 'u7': unknown label 'zzz'",
    ])
    assert "train[" not in err  # rows are named by line, not by position in a split


def test_invalid_json_lines_with_row_errors(audio_dir, tmp_path, capsys, no_model):
    lines = [json.dumps({k: v for k, v in row.items()}) for row in good_rows()]
    lines[0] = '{"id": "u1", "audio": "g1.wav",'
    lines[4] = json.dumps({**good_rows()[4], "audio": "nowhere.wav"})
    path = audio_dir / "broken.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert_rejected(capsys, tmp_path, path, expect=[
        f"{path}, line 1, id None: invalid JSON", f"{path}, line 5, id 'u5': audio file not found"])


def test_latin1_manifest(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[3]["transcript"] = "déjà vu"
    manifest = write_manifest(audio_dir, rows, name="latin1.csv", encoding="latin-1")
    assert_rejected(capsys, tmp_path, manifest, expect=[
        f"{manifest}, line 5, id 'u4': not valid utf-8 text in column 'transcript' (byte 0xe9)",
        "corpus_options: {encoding: latin-1}"])
    code, out, err = run(capsys, "validate", *_args(manifest, tmp_path / "ok", "--corpus_options",
                                                   '{"encoding": "latin-1"}'))
    assert code == 0, err


def test_latin1_transcript_file(tmp_path, capsys, no_model):
    from msp_fixture import build_msp_corpus

    root = tmp_path / "msp"
    fixture = build_msp_corpus(root)
    stem = os.path.splitext(fixture.file_names("Train")[0])[0]
    transcript = root / "Transcripts" / f"{stem}.txt"
    transcript.write_bytes("first line\nça va très bien\n".encode("latin-1"))
    assert_rejected(capsys, tmp_path, root, corpus="msp_podcast", labels=None, expect=[
        f"{transcript}, line 2: not valid utf-8 text (byte 0xe7)", "corpus_options: {encoding: latin-1}"])


def test_unreadable_config_and_unknown_keys(audio_dir, tmp_path, capsys, no_model):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("corpus: manifest\nlabels: [a, b\nlearning_rate: 1\n")
    for command in ("validate", "train"):
        code, _, err = run(capsys, command, "--config", str(bad_yaml))
        assert code == 2 and f"{bad_yaml}, line " in err and "invalid YAML" in err and "Traceback" not in err
    typo = tmp_path / "typo.yaml"
    typo.write_text("corpus: manifest\nlabel: [a, b]\n")
    for command in ("validate", "train"):
        code, _, err = run(capsys, command, "--config", str(typo))
        assert code == 2 and "unknown config keys 'label' (did you mean 'labels'?)" in err


def test_missing_split_and_bad_choices(audio_dir, tmp_path, capsys, no_model):
    manifest = write_manifest(audio_dir, good_rows(), name="splits.csv")
    assert_rejected(capsys, tmp_path, manifest, "--eval_split", "valid", "--eval_strategy", "epoch",
                    expect=["split 'valid' not in corpus 'manifest' (it has ['train', 'dev', 'test'])"])
    assert_rejected(capsys, tmp_path, manifest, "--task", "categorial",
                    expect=["task='categorial' is not one of categorical, attributes, multitask"])
    for flag, value in (("--pooling", "maxx"), ("--activation", "swishy"), ("--input_normalization", "frame")):
        assert_rejected(capsys, tmp_path, manifest, flag, value, expect=[f"{flag[2:]}={value!r} is not one of"])


def test_debug_shows_the_traceback(audio_dir, tmp_path, monkeypatch, capsys):
    from ser_hf.errors import DataError

    rows = good_rows()
    rows[0]["audio"] = "gone.wav"
    manifest = write_manifest(audio_dir, rows, name="debug.csv")
    with pytest.raises(DataError, match="line 2"):
        cli(["--debug", "validate", *_args(manifest, tmp_path / "o")])
    monkeypatch.setenv("SER_HF_DEBUG", "1")
    with pytest.raises(DataError, match="line 2"):
        cli(["validate", *_args(manifest, tmp_path / "o")])


def test_evaluate_checks_its_split_before_loading_the_model(audio_dir, tmp_path, capsys, no_model):
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech, build_feature_extractor

    model_dir = tmp_path / "model"
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=LABELS, head_hidden_size=8)
    SERModelForSpeech(config).save_pretrained(model_dir)
    build_feature_extractor(config).save_pretrained(model_dir)
    rows = good_rows()
    rows[9]["label"], rows[10]["audio"] = "zzz", "gone.wav"
    manifest = write_manifest(audio_dir, rows, name="evaluate.csv")
    code, _, err = run(capsys, "evaluate", "--model", str(model_dir), "--corpus", "manifest", "--data_path", manifest,
                       "--split", "test", "--output_dir", str(tmp_path / "eval"))
    assert code == 2 and "Traceback" not in err
    assert f"{manifest}, line 11, id 'u10': unknown label 'zzz' (expected one of ['a', 'b', 'c'])" in err
    assert f"{manifest}, line 12, id 'u11': audio file not found" in err
    assert not (tmp_path / "eval").exists()


# --- warnings: counted and listed, never errors -------------------------------------------------


def test_silent_clipped_and_low_rate_audio_are_warnings(audio_dir, tmp_path, capsys, no_model):
    rows = good_rows()
    rows[0]["audio"], rows[1]["audio"], rows[2]["audio"] = "silent.wav", "clipped.wav", "low.wav"
    manifest = write_manifest(audio_dir, rows, name="warn.csv")
    code, out, err = run(capsys, "validate", *_args(manifest, tmp_path / "o", "--max_audio_seconds", "0.25"))
    assert code == 0, err
    assert f"1 row: audio is all silence (peak below -80 dBFS); check the file or drop the row ({manifest}, line 2)" in out
    assert f"1 row: audio is clipped (over 0.1% of samples at full scale) ({manifest}, line 3" in out
    assert f"1 row: audio stored below 16000 Hz, the model's rate; it will be upsampled (adds no information) " \
           f"({manifest}, line 4 (8000 Hz))" in out
    assert "12 rows: audio longer than the 0.25 s crop" in out
    assert "OK: 12 rows" in out and not (tmp_path / "o").exists()


# --- drop: every kind of bad row goes, and the list is written -----------------------------------


def test_drop_removes_every_kind_of_bad_row_and_lists_them(audio_dir, tmp_path, capsys):
    rows = good_rows() + [dict(id=f"x{k}", audio=f"g{k}.wav", label=label, split="train")
                          for k, label in ((1, "a"), (4, "b"), (7, "c"))]
    rows = [{**row, "id": f"v{i}"} if isinstance(row, dict) else row for i, row in enumerate(rows)]
    rows[1] = "v1,g2.wav,a,4,4,4,words,train,EXTRA"  # parse problem
    rows[3]["audio"] = "gone.wav"  # missing file
    rows[4]["label"] = "zzz"  # unknown class
    manifest = write_manifest(audio_dir, rows, name="drop.csv")
    output_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", *_args(manifest, output_dir, "--on_invalid_rows", "drop"))
    assert code == 0, err
    with open(output_dir / "dropped_rows.csv", newline="") as handle:
        dropped = list(csv.DictReader(handle))
    assert [(r["file"], r["line"], r["id"]) for r in dropped] == [
        (manifest, "3", "v1"), (manifest, "5", "v3"), (manifest, "6", "v4")]
    assert "9 fields" in dropped[0]["reason"] and "not found" in dropped[1]["reason"] and "zzz" in dropped[2]["reason"]
    assert (output_dir / "model.safetensors").exists()


def test_validate_with_drop_lists_what_train_would_drop(audio_dir, tmp_path, capsys):
    rows = [json.dumps(row) for row in good_rows()]
    rows.insert(2, "not json at all")
    rows.append(json.dumps({**good_rows()[0], "id": "late", "audio": "gone.wav"}))
    path = audio_dir / "drop.jsonl"
    path.write_text("\n".join(rows) + "\n")
    code, out, err = run(capsys, "validate", *_args(path, tmp_path / "o", "--on_invalid_rows", "drop"))
    assert code == 0, err
    assert "train would drop 2 bad rows" in out
    assert f"{path}, line 3, id None: invalid JSON" in out and f"{path}, line 14, id 'late': audio file not found" in out
    assert "OK with --on_invalid_rows drop: 12 rows usable" in out and not (tmp_path / "o").exists()


def test_console_script_exit_status(audio_dir, tmp_path):
    """The real process (one subprocess: each costs seconds of imports): exit 2, one message, no traceback.
    (--debug and SER_HF_DEBUG are tested in-process above.)"""
    import subprocess
    import sys

    rows = good_rows()
    rows[0]["audio"] = "gone.wav"
    manifest = write_manifest(audio_dir, rows, name="console.csv")
    command = [sys.executable, "-m", "ser_hf.cli", "train", *_args(manifest, tmp_path / "o")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"ser-hf train: error: {manifest}, line 2, id 'u1': audio file not found" in result.stderr
    assert "(1 of 12 rows failed validation.) Fix this row, or train without it with --on_invalid_rows drop" \
        in result.stderr
    assert not (tmp_path / "o").exists()


# --- every command's --help ----------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_working_help(command, capsys):
    code, out, err = run(capsys, command, "--help")
    assert code == 0, err
    assert "usage" in out.lower() and "Traceback" not in err


def test_train_help_mentions_column_mapping(capsys):
    _, out, _ = run(capsys, "train", "--help")
    assert "column_mapping" in out and "encoding" in out


# --- fuzzed manifests ----------------------------------------------------------------------------

_CELLS = st.one_of(
    st.sampled_from(["", "g1.wav", "g2.wav", "g3.wav", "missing.wav", "empty.wav", "corrupt.wav", "a", "b", "c",
                     "train", "4", "9", "-1", "nan", "inf", "x,y", '"q"', "é", " ", "u1", "u2"]),
    st.text(alphabet=string.printable + "éß€\x00", max_size=8),
)
# Mostly usable headers (so the rows get checked), sometimes anything.
_HEADERS = st.one_of(
    st.permutations(HEADER),
    st.lists(st.sampled_from(HEADER[3:] + ["extra"]), max_size=4, unique=True).map(lambda rest: ["audio", "label", *rest]),
    st.lists(st.sampled_from(HEADER + ["Label", "path", "extra", "Audio"]), min_size=1, max_size=8, unique=True),
)
# Problems of the data as a whole name the split or class rather than a line.
_WHOLE_DATA = ("has no rows", "no row of the training split", "has no training rows", "not in corpus",
               "have no rows left")


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_HEADERS, cells=st.lists(st.lists(_CELLS, min_size=0, max_size=10), min_size=0, max_size=6),
       latin1=st.booleans())
def test_fuzzed_manifests_validate_or_name_a_line(audio_dir, tmp_path, capsys, header, cells, latin1):
    lines = [",".join(header)] + [",".join(row) for row in cells]
    path = audio_dir / "fuzz.csv"
    data = "\n".join(lines) + "\n"
    path.write_bytes(data.encode("latin-1", "replace") if latin1 else data.encode("utf-8"))
    code, out, err = run(capsys, "validate", *_args(path, tmp_path / "o", "--eval_split", "none", "--test_split",
                                                     "none", "--allow_missing_classes", "true"))
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        message = error_message(err)
        assert ", line " in message or any(text in message for text in _WHOLE_DATA), message
    else:
        assert out.startswith("OK") or "OK:" in out
    assert not (tmp_path / "o").exists()


_JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["g1.wav", "g2.wav", "missing.wav", "a", "b", "train", "4"]), st.text(max_size=6),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
_JSON_ROWS = st.lists(
    st.one_of(
        st.fixed_dictionaries({"audio": st.sampled_from(["g1.wav", "g2.wav", "g3.wav"]), "label": st.sampled_from(LABELS)},
                              optional={key: _JSON_VALUES for key in HEADER[:1] + HEADER[3:] + ["Label", "extra"]}),
        st.dictionaries(st.sampled_from(HEADER + ["Label", "extra"]), _JSON_VALUES, max_size=6),
        st.text(max_size=12),  # a line that is not a JSON object
    ),
    max_size=6,
)


@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 30)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=_JSON_ROWS)
def test_fuzzed_jsonl_manifests_validate_or_name_a_line(audio_dir, tmp_path, capsys, records):
    path = audio_dir / "fuzz.jsonl"
    lines = [json.dumps(r) if isinstance(r, dict) else r.replace("\n", " ") for r in records]
    path.write_text("\n".join(lines) + "\n")
    code, out, err = run(capsys, "validate", *_args(path, tmp_path / "o", "--eval_split", "none", "--test_split",
                                                     "none", "--allow_missing_classes", "true"))
    assert "Traceback" not in err
    assert code in (0, 2), err
    if code == 2:
        message = error_message(err)
        assert ", line " in message or any(text in message for text in _WHOLE_DATA), message
    assert not (tmp_path / "o").exists()


def test_evaluation_checks_accept_unlabelled_rows(audio_dir):
    """A challenge test set has no targets: evaluate/extract predict it, so its rows are not 'bad'."""
    from ser_hf.arguments import DataArguments
    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.preflight import check_evaluation_data

    rows = good_rows()
    for row in rows[9:]:
        row.update(label="", arousal="", valence="", dominance="")
    manifest = write_manifest(audio_dir, rows, name="unlabelled.csv")
    for task in ("attributes", "multitask", "categorical"):
        config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), task=task, labels=LABELS)
        checked = check_evaluation_data(DataArguments(corpus="manifest", data_path=manifest), config, "test")
        assert len(checked.corpus["test"]) == 3 and checked.report.ok


def test_predict_names_a_folder_that_is_no_checkpoint(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    write_wav(wav, tone(0.1))
    code, _, err = run(capsys, "predict", str(tmp_path / "nope"), str(wav), "--output_dir", str(tmp_path / "o"))
    assert code == 2 and "Traceback" not in err
    assert f"{tmp_path / 'nope'}: no config.json or adapter_config.json; give a saved ser-hf checkpoint folder" in err
