"""Second start of a run: the parsed manifest and the audio header probes come from caches that
notice every edit, and report exactly what the first start reported."""
from __future__ import annotations

import os
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from ser_hf.arguments import DataArguments
from ser_hf.data import manifest_cache
from ser_hf.data import validation as validation_module
from ser_hf.data.corpora import manifest as manifest_module
from ser_hf.data.corpora.manifest import load_manifest
from ser_hf.data.durations import read_durations
from ser_hf.errors import DataError
from ser_hf.preflight import check_run_data


def _wav(path, seconds, rate=16000):
    sf.write(path, np.full(int(seconds * rate), 0.1, dtype=np.float32), rate)
    return str(path)


def _corpus_folder(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    _wav(audio / "good.wav", 0.5)
    _wav(audio / "long.wav", 3.0)  # a warning: longer than the 2 s crop
    _wav(audio / "slow.wav", 0.5, rate=8000)  # a warning: stored below 16 kHz
    (audio / "broken.wav").write_bytes(b"RIFF but not really a wave file")
    sf.write(audio / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    lines = ["id,audio,label,split,arousal"]
    for i, name in enumerate(["good", "long", "slow", "broken", "empty", "missing", "good"]):
        lines.append(f"u{i},audio/{name}.wav,{'ab'[i % 2]},train,{i}")
    lines.append("u9,audio/good.wav,a,train,not-a-number")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


def _counting_probe(monkeypatch) -> Counter:
    probes = Counter()
    real = validation_module.probe_audio
    monkeypatch.setattr(validation_module, "probe_audio", lambda p: (probes.update([os.path.basename(p)]), real(p))[1])
    return probes


def _report(manifest):
    corpus = load_manifest(manifest, keep_invalid_rows=True, required_columns=("audio", "label"))
    return validation_module.validate_dataset(corpus, labels=["a", "b"], sampling_rate=16000, max_seconds=2.0,
                                              progress=False)


def test_second_validation_reports_the_same_without_opening_unchanged_files(tmp_path, monkeypatch):
    manifest = _corpus_folder(tmp_path)
    probes = _counting_probe(monkeypatch)
    first = _report(manifest)
    assert sum(probes.values()) == 6 and len(first.problems) == 4  # good.wav is on three rows, probed once and len(first.warnings) == 2
    probes.clear()
    second = _report(manifest)
    assert [str(p) for p in second.problems] == [str(p) for p in first.problems]
    assert second.warnings == first.warnings and second.durations == first.durations
    assert second.label_counts == first.label_counts
    assert dict(probes) == {"missing.wav": 1}  # missing files are never cached; the rest is not opened
    # A file that changed (size or mtime) is probed again: the broken one is now fine.
    _wav(tmp_path / "audio" / "broken.wav", 0.25)
    probes.clear()
    third = _report(manifest)
    assert probes["broken.wav"] == 1 and sum(probes.values()) == 2
    assert len(third.problems) == 3 and not any("broken" in str(p) for p in third.problems)
    # Same size, same content length, only the mtime moved: probed again all the same.
    os.utime(tmp_path / "audio" / "good.wav", ns=(1, 1))
    probes.clear()
    _report(manifest)
    assert probes["good.wav"] == 1


def test_the_second_start_raises_the_first_starts_error_and_durations_reuse_the_probes(tmp_path, monkeypatch):
    manifest = _corpus_folder(tmp_path)
    args = DataArguments(corpus="manifest", data_path=manifest, labels=["a", "b"], train_split="train",
                         eval_split="none", test_split="none")
    messages = []
    probes = _counting_probe(monkeypatch)
    for _ in range(2):
        with pytest.raises(DataError) as error:
            check_run_data(args, task="categorical", max_seconds=2.0, progress=False)
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "broken.wav" in messages[0] and "empty audio" in messages[0]
    assert probes["good.wav"] == 1 and probes["missing.wav"] == 2
    # Length grouping reads the same table: durations of the readable files without opening any.
    monkeypatch.setattr("ser_hf.data.audio.audio_info", lambda p: pytest.fail(f"opened {p}"))
    paths = [str(tmp_path / "audio" / f"{name}.wav") for name in ("good", "long", "slow")]
    np.testing.assert_allclose(read_durations(paths, progress=False), [0.5, 3.0, 0.5])


def test_validation_hands_its_table_to_length_grouping_and_parent_caches_are_not_borrowed(tmp_path, monkeypatch):
    """Splits in sibling folders: validation's table sits in their common folder and the training split's
    durations come from it (the trainer gets ``report.header_cache``); a stray cache in a parent folder is ignored."""
    from ser_hf.data.durations import CACHE_NAME, default_cache_path

    (tmp_path / CACHE_NAME).write_bytes(b"a stray cache of some other corpus, never read")
    for split in ("train", "test"):
        (tmp_path / "audio" / split).mkdir(parents=True)
        for i in range(2):
            _wav(tmp_path / "audio" / split / f"{i}.wav", 0.5 + i)
    lines = ["id,audio,label,split"] + [f"{s}{i},audio/{s}/{i}.wav,{'ab'[i]},{s}" for s in ("train", "test") for i in range(2)]
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    args = DataArguments(corpus="manifest", data_path=str(tmp_path / "manifest.csv"), labels=["a", "b"],
                         train_split="train", eval_split="none", test_split="test")
    checked = check_run_data(args, task="categorical", max_seconds=2.0, progress=False)
    table = str(tmp_path / "audio" / CACHE_NAME)
    assert checked.report.header_cache == table and os.path.isfile(table)
    train_paths = [str(tmp_path / "audio" / "train" / f"{i}.wav") for i in range(2)]
    assert default_cache_path(train_paths) == str(tmp_path / "audio" / "train" / CACHE_NAME)  # not the parent's
    monkeypatch.setattr("ser_hf.data.audio.audio_info", lambda p: pytest.fail(f"opened {p}"))
    np.testing.assert_allclose(read_durations(train_paths, cache_path=checked.report.header_cache, progress=False), [0.5, 1.5])
    assert not os.path.exists(tmp_path / "audio" / "train" / CACHE_NAME)


def test_the_parsed_manifest_cache_gives_the_same_corpus_and_notices_edits(tmp_path, monkeypatch):
    manifest = _corpus_folder(tmp_path)
    first = load_manifest(manifest, keep_invalid_rows=True, required_columns=("audio", "label"))
    assert os.listdir(manifest_cache.cache_root())

    def parse_again(*args, **kwargs):
        raise AssertionError("the manifest was parsed again")

    monkeypatch.setattr(manifest_module, "_read_lines", parse_again)
    second = load_manifest(manifest, keep_invalid_rows=True, required_columns=("audio", "label"))
    assert list(second) == list(first)
    for name in first:
        assert second[name].features == first[name].features
        assert second[name].to_dict() == first[name].to_dict()
    with pytest.raises(AssertionError, match="parsed again"):  # other options: another parse
        load_manifest(manifest, keep_invalid_rows=True, required_columns=("audio", "label"), split="dev")
    monkeypatch.undo()
    # An edit of the same size (an id renamed) is noticed even within the timestamp granularity.
    text = open(manifest).read()
    with open(manifest, "w") as handle:
        handle.write(text.replace("u0,", "v0,"))
    third = load_manifest(manifest, keep_invalid_rows=True, required_columns=("audio", "label"))
    assert third["train"]["id"][0] == "v0"


def test_a_manifest_with_bad_lines_raises_the_same_message_every_time(tmp_path):
    manifest = _corpus_folder(tmp_path)
    messages = []
    for _ in range(2):
        with pytest.raises(DataError) as error:
            load_manifest(manifest, required_columns=("audio", "label"))
        messages.append(str(error.value))
    assert messages[0] == messages[1] and "line 9" in messages[0] and "arousal value 'not-a-number'" in messages[0]


def test_the_train_command_imports_no_optional_heavy_package():
    """Start-up is import-bound (torch + transformers: seconds); nothing only other commands use may add to it."""
    import subprocess
    import sys

    optional = ["gradio", "onnx", "onnxruntime", "matplotlib", "evaluate", "sklearn", "librosa", "numba"]
    code = ("import sys, ser_hf.cli, ser_hf.commands.train, ser_hf.experiment, ser_hf.trainer, ser_hf.preflight; "
            f"print([m for m in {optional!r} if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_processes_that_waited_for_the_main_one_take_its_table_without_stat(tmp_path, monkeypatch):
    from ser_hf.data import durations as durations_module

    manifest = _corpus_folder(tmp_path)
    args = DataArguments(corpus="manifest", data_path=manifest, labels=["a", "b"], train_split="train",
                         eval_split="none", test_split="none", on_invalid_rows="drop")
    main = check_run_data(args, task="categorical", max_seconds=2.0, progress=False)
    probes = _counting_probe(monkeypatch)
    monkeypatch.setattr(durations_module, "_stats", lambda *a: pytest.fail("a waiting process must not stat"))
    other = check_run_data(args, task="categorical", max_seconds=2.0, progress=False, trust_header_cache=True)
    assert [str(p) for p in other.dropped] == [str(p) for p in main.dropped] and len(main.dropped) == 4
    assert other.report.warnings == main.report.warnings
    assert dict(probes) == {"missing.wav": 1}
