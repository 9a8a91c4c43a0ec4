"""Transcripts: reference vs ASR per split, the resumable ASR cache, and `ser-hf transcribe`.

ASR runs a tiny randomly initialised Whisper saved to disk and loaded by path through
``transformers.pipeline`` (the real code path); its "words" are nonsense but deterministic.
"""
import json
import os

import datasets
import pytest
from msp_fixture import build_msp_corpus, build_tiny_whisper

from ser_hf import transcription
from ser_hf.data.corpora import load_corpus
from ser_hf.data.schema import rows_to_dataset
from ser_hf.data.validation import DataValidationError
from ser_hf.transcription import (
    ASRCache,
    parse_transcript_source,
    prepare_transcripts,
    rows_needing_asr,
    save_manifest,
    select_transcripts,
    source_for_split,
    transcribe,
)


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper"))


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    """Train 8 + 1 O/X, Development 8 (2 without transcript files), Test1 8 rows."""
    root = tmp_path_factory.mktemp("msp")
    build_msp_corpus(root, per_class={"Train": 1, "Development": 1, "Test1": 1}, extra={"Train": 1}, missing_transcripts=2)
    return root


@pytest.fixture
def asr_calls(monkeypatch):
    """Count the utterances that reach the ASR pipeline (and how often a pipeline is built)."""
    calls = {"utterances": 0, "batches": 0, "pipelines": 0, "fail_after_batches": None}
    real_run, real_build = transcription._run_asr, transcription._build_asr_pipeline

    def run(pipe, waves, *args, **kwargs):
        if calls["fail_after_batches"] is not None and calls["batches"] >= calls["fail_after_batches"]:
            raise RuntimeError("simulated crash")
        calls["batches"] += 1
        calls["utterances"] += len(waves)
        return real_run(pipe, waves, *args, **kwargs)

    def build(*args, **kwargs):
        calls["pipelines"] += 1
        return real_build(*args, **kwargs)

    monkeypatch.setattr(transcription, "_run_asr", run)
    monkeypatch.setattr(transcription, "_build_asr_pipeline", build)
    return calls


def _corpus(**splits):
    """A DatasetDict from {split: [(id, transcript), ...]} with fake audio paths."""
    return datasets.DatasetDict(
        {
            name: rows_to_dataset([{"id": i, "audio": f"/x/{i}.wav", "transcript": t, "split": name} for i, t in rows])
            for name, rows in splits.items()
        }
    )


# ------------------------------------------------------------------------------ transcript_source
def test_parse_transcript_source_forms_and_errors():
    assert parse_transcript_source(None) == {"train": "reference", "default": "asr"}
    assert parse_transcript_source("train=reference, dev=asr,test=reference_or_asr") == {
        "train": "reference",
        "dev": "asr",
        "test": "reference_or_asr",
    }
    assert parse_transcript_source({"train": "asr"}) == {"train": "asr"}
    with pytest.raises(ValueError, match="whisper"):
        parse_transcript_source("train=whisper")
    with pytest.raises(ValueError, match="not split=source"):
        parse_transcript_source("train")
    with pytest.raises(ValueError, match="twice"):
        parse_transcript_source("train=asr,train=reference")
    with pytest.raises(ValueError, match="says nothing about split 'dev'"):
        source_for_split({"train": "reference"}, "dev")
    assert source_for_split({"train": "reference", "default": "asr"}, "test3") == "asr"


def test_reference_vs_asr_switch_per_split():
    corpus = _corpus(
        train=[("t1", "ref one"), ("t2", "ref two")],
        dev=[("d1", "ref dev"), ("d2", None)],
        test=[("s1", "ref test"), ("s2", "")],
    )
    asr = {"d1": "asr dev", "d2": "asr dev two", "s1": "asr test", "s2": "asr test two"}
    # the paper: references for training, ASR for everything evaluated
    out, counts = select_transcripts(corpus, parse_transcript_source(None), asr)
    assert out["train"]["transcript"] == ["ref one", "ref two"]
    assert out["dev"]["transcript"] == ["asr dev", "asr dev two"]
    assert out["test"]["transcript"] == ["asr test", "asr test two"]
    assert counts == {"train": {"reference": 2, "asr": 0}, "dev": {"reference": 0, "asr": 2}, "test": {"reference": 0, "asr": 2}}
    # references where they exist, ASR only for the missing ones (None and empty)
    out, counts = select_transcripts(corpus, {"default": "reference_or_asr"}, asr)
    assert out["dev"]["transcript"] == ["ref dev", "asr dev two"]
    assert out["test"]["transcript"] == ["ref test", "asr test two"]
    assert counts["test"] == {"reference": 1, "asr": 1}
    # which rows ASR has to see for each choice
    assert {k: v["id"] for k, v in rows_needing_asr(corpus, {"default": "reference_or_asr"}).items()} == {
        "dev": ["d2"],
        "test": ["s2"],
    }
    assert {k: v["id"] for k, v in rows_needing_asr(corpus, parse_transcript_source(None)).items()} == {
        "dev": ["d1", "d2"],
        "test": ["s1", "s2"],
    }


def test_missing_reference_is_an_error_naming_every_row():
    corpus = _corpus(train=[("t1", "ok"), ("t2", None), ("t3", "  ")])
    with pytest.raises(DataValidationError) as info:
        select_transcripts(corpus, {"train": "reference"})
    message = str(info.value)
    assert "t2" in message and "t3" in message and "t1 " not in message
    assert "reference_or_asr" in message
    with pytest.raises(DataValidationError, match="t2.*no ASR transcript"):
        select_transcripts(corpus, {"train": "reference_or_asr"}, {"t3": "x"})


# ------------------------------------------------------------------------------------ ASR + cache
def test_transcribe_caches_resumes_and_notices_changed_audio(msp, whisper, tmp_path, asr_calls):
    corpus = load_corpus("msp_podcast", msp)
    data = datasets.DatasetDict({"dev": corpus["dev"]})  # 8 utterances
    ids = data["dev"]["id"]
    cache_dir = tmp_path / "cache"

    # a crash after the first batch of 3 leaves exactly that batch in the cache
    asr_calls["fail_after_batches"] = 1
    with pytest.raises(RuntimeError, match="simulated crash"):
        transcribe(data, model=whisper, batch_size=3, cache_dir=cache_dir, progress=False)
    assert asr_calls["utterances"] == 3
    (cache_file,) = os.listdir(cache_dir)
    lines = (cache_dir / cache_file).read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[0])["meta"]["model"] == whisper
    assert [json.loads(line)["id"] for line in lines[1:]] == ids[:3]

    # resuming transcribes only the other 5
    asr_calls.update(fail_after_batches=None, utterances=0)
    first = transcribe(data, model=whisper, batch_size=3, cache_dir=cache_dir, progress=False)
    assert asr_calls["utterances"] == 5
    assert list(first) == ids and all(isinstance(text, str) for text in first.values())
    assert any(text for text in first.values())

    # a second run does no ASR at all (no pipeline is even loaded) and returns the same texts
    asr_calls.update(utterances=0, pipelines=0)
    assert transcribe(data, model=whisper, batch_size=3, cache_dir=cache_dir, progress=False) == first
    assert asr_calls["utterances"] == 0 and asr_calls["pipelines"] == 0

    # an audio file rewritten since (new size/mtime) is transcribed again; the others are not
    changed = data["dev"]["audio"][4]
    stat = os.stat(changed)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert transcribe(data, model=whisper, batch_size=3, cache_dir=cache_dir, progress=False) == first
    assert asr_calls["utterances"] == 1

    # overwrite runs everything again; different generation settings use a separate cache file
    asr_calls.update(utterances=0)
    transcribe(data, model=whisper, batch_size=8, cache_dir=cache_dir, overwrite=True, progress=False)
    assert asr_calls["utterances"] == 8
    assert ASRCache(cache_dir, whisper, {"language": "en"}).path != ASRCache(cache_dir, whisper).path


def test_torn_last_cache_line_is_dropped_and_redone(msp, whisper, tmp_path, asr_calls):
    data = datasets.DatasetDict({"test": load_corpus("msp_podcast", msp)["test"].select(range(3))})
    cache_dir = tmp_path / "cache"
    texts = transcribe(data, model=whisper, batch_size=3, cache_dir=cache_dir, progress=False)
    (cache_file,) = cache_dir.iterdir()
    intact = cache_file.read_bytes()
    cache_file.write_bytes(intact[:-20])  # a crash in the middle of writing the last record
    asr_calls["utterances"] = 0
    assert transcribe(data, model=whisper, batch_size=3, cache_dir=cache_dir, progress=False) == texts
    assert asr_calls["utterances"] == 1
    assert cache_file.read_bytes().count(b"\n") == 4  # header + 2 kept + 1 redone, no torn bytes left
    # damage before the last line is not guessed around
    lines = cache_file.read_bytes().split(b"\n")
    cache_file.write_bytes(b"\n".join([lines[0], b"{not json", *lines[2:]]))
    with pytest.raises(ValueError, match="line 2: corrupt ASR cache"):
        transcribe(data, model=whisper, cache_dir=cache_dir, progress=False)


def test_duplicate_ids_with_different_audio_are_refused(tmp_path):
    corpus = _corpus(train=[("a", None)], dev=[("b", None)])
    clash = datasets.DatasetDict({"train": corpus["train"], "dev": rows_to_dataset([{"id": "a", "audio": "/y/a.wav", "split": "dev"}])})
    with pytest.raises(ValueError, match="ids must be unique.*a: /x/a.wav and /y/a.wav"):
        transcribe(clash, model="unused", cache_dir=tmp_path)


def test_prepare_transcripts_runs_asr_only_where_needed(msp, whisper, tmp_path, asr_calls):
    corpus = load_corpus("msp_podcast", msp)
    assert sum(text is None for text in corpus["dev"]["transcript"]) == 2
    out, counts = prepare_transcripts(
        corpus, transcript_source={"default": "reference_or_asr"}, model=whisper, cache_dir=tmp_path, progress=False
    )
    assert asr_calls["utterances"] == 2  # the two dev files without a transcript
    assert counts["dev"] == {"reference": 6, "asr": 2} and counts["train"] == {"reference": 9, "asr": 0}
    assert all(isinstance(text, str) for text in out["dev"]["transcript"])
    assert out["train"]["transcript"] == corpus["train"]["transcript"]
    # a split the mapping does not cover fails before any ASR time is spent
    asr_calls["utterances"] = 0
    with pytest.raises(ValueError, match="nothing about split 'dev'"):
        prepare_transcripts(corpus, transcript_source={"train": "reference", "test": "asr"}, model=whisper, cache_dir=tmp_path)
    assert asr_calls["utterances"] == 0


def test_cli_writes_a_manifest_with_references_for_train_and_asr_elsewhere(msp, whisper, tmp_path, asr_calls):
    from ser_hf.cli import main

    output = tmp_path / "out" / "transcripts.jsonl"
    argv = ["transcribe", "--corpus", "msp_podcast", "--data_path", str(msp), "--model", whisper]
    argv += ["--output", str(output), "--cache_dir", str(tmp_path / "cache"), "--batch_size", "8"]
    assert main(argv) == 0
    assert asr_calls["utterances"] == 16  # dev + test; train keeps its references
    summary = json.loads(output.with_name("transcripts.jsonl.summary.json").read_text())
    assert summary["rows"]["train"] == {"reference": 9, "asr": 0}
    assert summary["rows"]["dev"] == {"reference": 0, "asr": 8}

    original = load_corpus("msp_podcast", msp)
    manifest = load_corpus("manifest", output)
    assert list(manifest) == ["train", "dev", "test"]
    for split in manifest:
        assert manifest[split]["id"] == original[split]["id"]
        assert manifest[split]["audio"] == original[split]["audio"]
        assert manifest[split]["label"] == original[split]["label"]
        assert manifest[split]["arousal"] == original[split]["arousal"]
    assert manifest["train"]["transcript"] == original["train"]["transcript"]
    cached = transcribe(original, model=whisper, cache_dir=tmp_path / "cache", splits=["dev", "test"], progress=False)
    assert manifest["dev"]["transcript"] == [cached[i] for i in original["dev"]["id"]]
    assert manifest["test"]["transcript"] != original["test"]["transcript"]
    assert asr_calls["utterances"] == 16  # the check above came from the cache

    # running again is all cache hits and rewrites an identical manifest
    before = output.read_bytes()
    assert main(argv) == 0
    assert asr_calls["utterances"] == 16 and output.read_bytes() == before


def test_save_manifest_needs_jsonl(tmp_path):
    with pytest.raises(ValueError, match="jsonl"):
        save_manifest(_corpus(train=[("a", "x")]), tmp_path / "m.csv")


# ------------------------------------------------------------------------------ sharded over processes
def test_parts_left_by_a_killed_distributed_run_are_merged_and_not_redone(msp, whisper, tmp_path, asr_calls):
    from ser_hf.transcription import _file_key

    data = datasets.DatasetDict({"dev": load_corpus("msp_podcast", msp)["dev"]})  # 8 utterances
    ids, audio = data["dev"]["id"], data["dev"]["audio"]
    cache_dir = tmp_path / "cache"
    done = {0: [0, 2], 1: [1]}  # process 0 finished two rows, process 1 one row and then died mid-write
    for rank, rows in done.items():
        part = ASRCache(cache_dir, whisper, part=rank)
        part.append([{"id": ids[i], "audio": audio[i], "size": _file_key(audio[i])[0], "mtime_ns": _file_key(audio[i])[1],
                      "text": f"from part {rank}"} for i in rows])
    with open(ASRCache(cache_dir, whisper, part=1).path, "ab") as handle:
        handle.write(b'{"id": "torn')
    texts = transcribe(data, model=whisper, batch_size=4, cache_dir=cache_dir, progress=False)
    assert asr_calls["utterances"] == 5  # only the rows no part holds
    assert [texts[ids[i]] for i in (0, 1, 2)] == ["from part 0", "from part 1", "from part 0"]
    assert sorted(p.name for p in cache_dir.iterdir()) == [os.path.basename(ASRCache(cache_dir, whisper).path)]
    lines = (cache_dir / os.listdir(cache_dir)[0]).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 8 and sorted(json.loads(line)["id"] for line in lines[1:]) == sorted(ids)


def test_two_processes_share_the_transcription_and_merge_one_cache(msp, whisper, tmp_path):
    """`accelerate launch` with two CPU processes: disjoint shares, one merged cache, the one-process manifest."""
    import re
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["transcribe", "--corpus", "msp_podcast", "--data_path", str(msp), "--model", whisper, "--batch_size", "3"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_port", str(port), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "ser_hf.cli", *args, "--output", str(tmp_path / "two.jsonl"), "--cache_dir", str(tmp_path / "cache2")]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    run = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-4000:]
    shares = {int(m[0]): int(m[1]) for m in re.findall(r"ASR process (\d)/2: (\d+) rows", run.stderr)}
    assert shares == {0: 8, 1: 8}  # dev + test (16 rows) dealt out in turn
    (cache_file,) = os.listdir(tmp_path / "cache2")  # the parts were merged and removed
    records = [json.loads(line) for line in (tmp_path / "cache2" / cache_file).read_text(encoding="utf-8").splitlines()[1:]]
    assert len(records) == 16 and len({r["id"] for r in records}) == 16  # every row once

    from ser_hf.cli import main

    assert main([*args, "--output", str(tmp_path / "one.jsonl"), "--cache_dir", str(tmp_path / "cache1")]) == 0
    one, two = load_corpus("manifest", tmp_path / "one.jsonl"), load_corpus("manifest", tmp_path / "two.jsonl")
    for split in one:
        assert two[split]["id"] == one[split]["id"] and two[split]["transcript"] == one[split]["transcript"]
