"""Feature extraction: exact head inputs, padding-proof batches, resumable shards, the CLI."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import datasets
import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from ser_hf import features as features_module
from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.data.audio import load_audio
from ser_hf.errors import DataError
from ser_hf.features import (
    FEATURE_COLUMNS,
    extract_features,
    feature_matrix,
    load_features,
    read_feature_metadata,
    shards_of_process,
)
from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone, tokenizer_path

LABELS = ["a", "b", "c"]


@pytest.fixture(scope="module")
def speech():
    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm"), task="multitask", labels=LABELS)
    return SERModelForSpeech(config), build_feature_extractor(config)


@pytest.fixture(scope="module")
def text():
    torch.manual_seed(0)
    config = SERTextConfig(backbone_config=tiny_text_backbone(), task="attributes")
    return SERModelForText(config), AutoTokenizer.from_pretrained(tokenizer_path())


@pytest.fixture(scope="module")
def rows(tiny_corpus):
    return tiny_corpus["train"]  # 12 utterances of 0.4-1.2 s, three classes, A/V/D


def _pool_alone_speech(model, extractor, path, seconds=None):
    wave = load_audio(path, 16000)
    if seconds is not None:
        wave = wave[: int(seconds * 16000)]
    batch = extractor([wave], sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval().pool(**batch)[0].numpy()


def test_speech_features_are_the_head_input_and_batch_independent(tmp_path, speech, rows):
    model, extractor = speech
    model.train()  # extraction must switch to eval mode itself (dropout off) and restore the mode
    result = extract_features(model, extractor, rows, output_dir=str(tmp_path / "f"), batch_size=5, progress=False)
    assert model.training
    assert tuple(result.column_names) == FEATURE_COLUMNS
    assert result.features["features"].feature.dtype == "float32"
    assert list(result["id"]) == list(rows["id"]) and list(result["label"]) == list(rows["label"])
    np.testing.assert_allclose(np.asarray(result["arousal"]), np.asarray(rows["arousal"]), rtol=1e-6)
    matrix = feature_matrix(result)
    assert matrix.shape == (len(rows), 2 * 32)  # attentive statistics: mean and std
    # Batches of 5 mix lengths (padding); each vector must equal the utterance pooled alone.
    for i, path in enumerate(rows["audio"]):
        np.testing.assert_allclose(matrix[i], _pool_alone_speech(model, extractor, path), atol=1e-5, rtol=1e-5)
    meta = read_feature_metadata(str(tmp_path / "f"))
    assert meta["feature_size"] == 64 and meta["labels"] == LABELS and meta["input_column"] == "audio"
    assert meta["crop_seconds"] is None
    assert not os.path.exists(str(tmp_path / "f") + ".parts")  # shards are merged and removed


def test_text_features_are_the_head_input(tmp_path, text, rows):
    model, tokenizer = text
    result = extract_features(model, tokenizer, rows, output_dir=str(tmp_path / "t"), batch_size=4, progress=False)
    matrix = feature_matrix(result)
    model.eval()
    with torch.no_grad():
        for i, transcript in enumerate(rows["transcript"]):
            alone = model.pool(**tokenizer([transcript], return_tensors="pt"))[0].numpy()
            np.testing.assert_allclose(matrix[i], alone, atol=1e-5, rtol=1e-5)
            # ...which is exactly what the model's own heads read.
            out = model(**tokenizer([transcript], return_tensors="pt"))
            np.testing.assert_allclose(out.pooled_output[0].numpy(), alone, atol=1e-6)


def test_audio_is_whole_unless_crop_seconds_is_given(tmp_path, speech, rows):
    model, extractor = speech
    whole = feature_matrix(extract_features(model, extractor, rows, output_dir=str(tmp_path / "w"), progress=False))
    cropped = feature_matrix(
        extract_features(model, extractor, rows, output_dir=str(tmp_path / "c"), crop_seconds=0.5, progress=False)
    )
    for i, path in enumerate(rows["audio"]):
        np.testing.assert_allclose(cropped[i], _pool_alone_speech(model, extractor, path, 0.5), atol=1e-5, rtol=1e-5)
    assert not np.allclose(whole, cropped, atol=1e-3)  # every utterance is longer than 0.5 s


def test_resume_reuses_finished_shards_and_up_to_date_results(tmp_path, speech, rows, monkeypatch):
    model, extractor = speech
    out = str(tmp_path / "r")
    real_pool = features_module._pool_shard
    calls = []

    def crash_after_first_shard(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("simulated kill")
        calls.append(1)
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(features_module, "_pool_shard", crash_after_first_shard)
    with pytest.raises(KeyboardInterrupt):
        extract_features(model, extractor, rows, output_dir=out, shard_size=4, progress=False)
    parts = out + ".parts"
    assert sorted(p for p in os.listdir(parts) if p.startswith("shard-")) == ["shard-00000"]
    assert not os.path.exists(out)

    # Mark the finished shard so we can see whether it is reused or recomputed.
    shard = datasets.load_from_disk(os.path.join(parts, "shard-00000"))
    marked = shard.map(lambda r: {"features": [7.0] * len(r["features"])})
    features_module._save_dataset_atomically(marked, os.path.join(parts, "shard-00000"))

    counted = []
    monkeypatch.setattr(features_module, "_pool_shard", lambda *a, **k: counted.append(1) or real_pool(*a, **k))
    resumed = feature_matrix(extract_features(model, extractor, rows, output_dir=out, shard_size=4, progress=False))
    assert len(counted) == 2  # shards 1 and 2 only
    assert (resumed[:4] == 7.0).all() and not (resumed[4:] == 7.0).any()
    assert resumed.shape[0] == len(rows) and not os.path.exists(parts)

    # Up to date: nothing is recomputed (the shard size does not change the vectors).
    counted.clear()
    again = extract_features(model, extractor, rows, output_dir=out, shard_size=5, progress=False)
    assert counted == [] and (feature_matrix(again)[:4] == 7.0).all()

    # resume=False recomputes everything (the marked vectors disappear).
    fresh = feature_matrix(extract_features(model, extractor, rows, output_dir=out, shard_size=4, resume=False, progress=False))
    assert len(counted) == 3 and not (fresh == 7.0).any()
    np.testing.assert_allclose(fresh[4:], resumed[4:], atol=1e-6)

    # Changed weights: the cached result no longer matches, so it is recomputed.
    counted.clear()
    with torch.no_grad():
        model.regressor[-1].bias.add_(1.0)
    try:
        extract_features(model, extractor, rows, output_dir=out, shard_size=4, progress=False)
    finally:
        with torch.no_grad():
            model.regressor[-1].bias.sub_(1.0)
    assert len(counted) == 3


def test_shards_are_split_disjointly_between_processes():
    for num_shards in (1, 5, 12):
        for processes in (1, 2, 3, 4):
            shares = [shards_of_process(num_shards, rank, processes) for rank in range(processes)]
            flat = sorted(i for share in shares for i in share)
            assert flat == list(range(num_shards))  # every shard exactly once


def test_bad_input_is_named(tmp_path, speech, text, rows):
    model, extractor = speech
    duplicated = datasets.concatenate_datasets([rows.select([0, 1]), rows.select([1])])
    with pytest.raises(ValueError, match=rf"duplicated: \['{rows[1]['id']}'\]"):
        extract_features(model, extractor, duplicated, output_dir=str(tmp_path / "d"), progress=False)
    no_text = rows.select([0, 1]).map(lambda r: {"transcript": None if r["id"] == rows[0]["id"] else r["transcript"]})
    with pytest.raises(ValueError, match=rf"no 'transcript' \(first: \['{rows[0]['id']}'\]\)"):
        extract_features(*text, no_text, output_dir=str(tmp_path / "n"), progress=False)
    with pytest.raises(DataError, match="not a ser-hf feature dataset"):
        load_features(str(tmp_path))


def test_extract_command(tmp_path, text, tiny_manifest, tiny_corpus, capsys):
    from ser_hf.commands.extract import main

    model, tokenizer = text
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    out = tmp_path / "features"
    argv = ["--model", str(tmp_path / "model"), "--corpus", "manifest", "--data_path", tiny_manifest,
            "--split", "train+test", "--output_dir", str(out), "--batch_size", "8"]
    assert main(argv) == 0
    expected = len(tiny_corpus["train"]) + len(tiny_corpus["test"])
    assert f"{expected} feature vectors of size 32" in capsys.readouterr().out
    result = load_features(str(out))
    assert sorted(set(result["split"])) == ["test", "train"] and len(result) == expected


def test_two_processes_extract_disjoint_shares_and_match_one(tmp_path, speech, tiny_manifest):
    """`accelerate launch` with two CPU processes: each extracts its own shards, the result equals one process's."""
    model, extractor = speech
    model.save_pretrained(tmp_path / "model")
    extractor.save_pretrained(tmp_path / "model")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--model", str(tmp_path / "model"), "--corpus", "manifest", "--data_path", tiny_manifest,
            "--split", "train+dev+test", "--shard_size", "4", "--batch_size", "3"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--main_process_port", str(port), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "ser_hf.cli", "extract", *args, "--output_dir", str(tmp_path / "two")]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    shares = {int(m[0]): int(m[1]) for m in re.findall(r"process (\d)/2: (\d+) rows", done.stderr)}
    assert shares == {0: 20, 1: 16}  # 36 rows in 9 shards of 4, dealt out in turn
    assert done.stderr.count("wrote 36 feature vectors") == 1  # only the main process merges

    from ser_hf.commands.extract import main

    assert main([*args, "--output_dir", str(tmp_path / "one")]) == 0
    one, two = load_features(str(tmp_path / "one")), load_features(str(tmp_path / "two"))
    assert list(two["id"]) == list(one["id"])  # every row once, in order
    np.testing.assert_allclose(feature_matrix(two), feature_matrix(one), atol=1e-5)
