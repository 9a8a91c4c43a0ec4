"""Any `datasets` input: audiofolder, parquet with bytes-only Audio + ClassLabel at 44.1 kHz, a
save_to_disk folder of decoded arrays, and `ser-hf train --dataset_name` — offline, and with
torchcodec made unimportable and no FFmpeg on PATH, so the default path provably needs neither."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys

import datasets
import numpy as np
import pytest
import soundfile as sf
import soxr

from ser_hf.arguments import DataArguments, ModelArguments
from ser_hf.data.audio import AudioError, load_audio, probe_audio
from ser_hf.data.collators import SERTargets
from ser_hf.data.hf_datasets import DatasetColumns, load_dataset_as_manifest, to_manifest
from ser_hf.tiny import tiny_speech_backbone
from ser_hf.training_args import SERTrainingArguments

from conftest import TINY_LABELS

NAMES = ["angry", "calm", "sad"]  # ClassLabel names (the model's labels come from here, in this order)
CODE_TO_NAME = dict(zip(TINY_LABELS, NAMES))


@pytest.fixture(autouse=True)
def no_torchcodec_no_ffmpeg(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # any `import torchcodec` now fails
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None


def _rows(manifest):
    root = os.path.dirname(manifest)
    with open(manifest) as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["path"] = os.path.join(root, row["audio"])
    return rows


def _split_name(split):
    return {"dev": "validation"}.get(split, split)


@pytest.fixture(scope="module")
def audiofolder(tiny_manifest, tmp_path_factory):
    root = tmp_path_factory.mktemp("audiofolder")
    for row in _rows(tiny_manifest):
        target = root / _split_name(row["split"]) / CODE_TO_NAME[row["label"]] / f"{row['id']}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(row["path"], target)
    return str(root)


def _wav_bytes(wave, rate, fmt="WAV"):
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def parquet_folder(tiny_manifest, tmp_path_factory):
    """Hub-style parquet shards: bytes-only Audio at 44.1 kHz (FLAC), ClassLabel ints, other column names."""
    root = tmp_path_factory.mktemp("parquet")
    by_split: dict[str, dict[str, list]] = {}
    for row in _rows(tiny_manifest):
        wave, rate = sf.read(row["path"], dtype="float32")
        wave = soxr.resample(wave, rate, 44100)
        part = by_split.setdefault(_split_name(row["split"]), {"speech": [], "emotion": [], "spk": [], "utt": []})
        part["speech"].append({"bytes": _wav_bytes(wave, 44100, "FLAC"), "path": None})
        part["emotion"].append(NAMES.index(CODE_TO_NAME[row["label"]]))
        part["spk"].append(row["speaker"])
        part["utt"].append(row["id"])
    for split, columns in by_split.items():
        ds = datasets.Dataset.from_dict(columns)
        ds = ds.cast_column("speech", datasets.Audio(decode=False)).cast_column("emotion", datasets.ClassLabel(names=NAMES))
        ds.to_parquet(str(root / f"{split}.parquet"))
    return str(root)


@pytest.fixture(scope="module")
def saved_folder(tiny_manifest, tmp_path_factory):
    """A save_to_disk DatasetDict whose audio is decoded {array, sampling_rate} at 22.05 kHz, string labels."""
    root = tmp_path_factory.mktemp("saved") / "ds"
    by_split: dict[str, dict[str, list]] = {}
    for row in _rows(tiny_manifest):
        wave, rate = sf.read(row["path"], dtype="float32")
        part = by_split.setdefault(row["split"], {"audio": [], "label": [], "text": []})
        part["audio"].append({"array": soxr.resample(wave, rate, 22050).tolist(), "sampling_rate": 22050})
        part["label"].append(row["label"])
        part["text"].append(row["transcript"])
    datasets.DatasetDict({s: datasets.Dataset.from_dict(c) for s, c in by_split.items()}).save_to_disk(str(root))
    return str(root)


# ------------------------------------------------------------------------------------------ loading
def test_audiofolder_loads_without_torchcodec(audiofolder, tmp_path):
    manifest, class_labels = load_dataset_as_manifest(audiofolder, cache_dir=str(tmp_path / "cache"))
    assert set(manifest) == {"train", "validation", "test"}
    assert class_labels == NAMES  # labels inferred from the folder names, as datasets does
    row = manifest["train"][0]
    assert os.path.isfile(row["audio"]) and row["label"] in NAMES and row["split"] == "train"
    assert len(manifest["train"]) == 12
    # the explicit packaged-module spelling works too
    again, _ = load_dataset_as_manifest("audiofolder", data_dir=audiofolder, cache_dir=str(tmp_path / "cache"))
    assert again["test"]["audio"] == manifest["test"]["audio"]


def test_parquet_bytes_and_classlabel_map_to_names(parquet_folder, tiny_manifest, tmp_path):
    columns = DatasetColumns(audio="speech", label="emotion", speaker="spk", id="utt")
    manifest, class_labels = load_dataset_as_manifest(parquet_folder, columns=columns, cache_dir=str(tmp_path / "c"))
    assert class_labels == NAMES
    rows = {r["id"]: r for r in _rows(tiny_manifest)}
    test = manifest["test"]
    for row in test:
        original = rows[row["id"]]
        assert row["label"] == CODE_TO_NAME[original["label"]] and row["speaker"] == original["speaker"]
        assert row["audio"]["bytes"] is not None  # kept embedded, decoded from memory
        # 44.1 kHz FLAC bytes come back at 16 kHz, matching the original 16 kHz file
        ours = load_audio(row["audio"], 16000)
        reference = load_audio(original["path"], 16000)
        assert abs(len(ours) - len(reference)) <= 2
        n = min(len(ours), len(reference))
        assert np.corrcoef(ours[:n], reference[:n])[0, 1] > 0.99
        assert probe_audio(row["audio"]).samplerate == 44100


def test_missing_column_names_the_split_and_the_columns(parquet_folder, tmp_path):
    with pytest.raises(ValueError, match=r"column\(s\) \['label'\] not found; it has \['speech', 'emotion'"):
        load_dataset_as_manifest(parquet_folder, columns=DatasetColumns(audio="speech"), cache_dir=str(tmp_path / "c"))


def test_every_audio_form_decodes_the_same():
    rate = 44100
    t = np.arange(rate // 2) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    expected = soxr.resample(wave, rate, 16000)
    forms = [
        {"bytes": _wav_bytes(wave, rate), "path": "clip.wav"},  # bytes win over a path that is not there
        {"array": wave, "sampling_rate": rate},
        {"array": wave.tolist(), "sampling_rate": rate},  # how an Arrow struct row comes back
        {"array": np.stack([wave, wave]), "sampling_rate": rate},  # (channels, time)
    ]
    for form in forms:
        np.testing.assert_allclose(load_audio(form, 16000), expected, atol=2e-4)
    with pytest.raises(AudioError, match="without a sampling_rate"):
        load_audio({"array": wave, "sampling_rate": None})
    with pytest.raises(AudioError, match="unreadable encoded audio bytes"):
        load_audio({"bytes": b"not audio at all", "path": None})


def test_classlabel_integers_are_label_indices():
    targets = SERTargets(labels=NAMES)
    assert [targets.label_id({"label": v}) for v in [2, "calm", np.int64(0), None]] == [2, 1, 0, -100]
    with pytest.raises(ValueError, match="label 7 is not one of"):
        targets.label_id({"label": 7, "audio": {"bytes": b"xx", "path": None}})


def test_to_manifest_on_an_in_memory_dataset():
    wave = np.zeros(8000, dtype=np.float32).tolist()
    ds = datasets.Dataset.from_dict({"audio": [{"array": wave, "sampling_rate": 8000}] * 2, "label": ["x", "y"],
                                     "EmoAct": [3.0, None]})
    manifest = to_manifest(datasets.DatasetDict(train=ds), DatasetColumns(attributes={"arousal": "EmoAct"}))
    row = manifest["train"][1]
    assert row["label"] == "y" and row["arousal"] is None and row["id"] == "train/1"
    assert manifest["train"][0]["arousal"] == 3.0
    assert len(load_audio(row["audio"], 16000)) == 16000


# ------------------------------------------------------------------------------- train and evaluate
def _train_args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, per_device_eval_batch_size=4,
        eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True, max_audio_seconds=1.0,
    )
    values.update(overrides)
    return SERTrainingArguments(**values)


def _model_args():
    return ModelArguments(backbone_config=tiny_speech_backbone(), freeze_feature_encoder=False, head_hidden_size=16)


@pytest.mark.parametrize("source", ["audiofolder", "parquet", "saved"])
def test_train_and_evaluate_from_a_datasets_input(source, audiofolder, parquet_folder, saved_folder, tmp_path):
    from ser_hf.experiment import evaluate_checkpoint, train

    common = dict(dataset_cache_dir=str(tmp_path / "cache"), eval_split="none")
    data_args = {
        "audiofolder": DataArguments(dataset_name=audiofolder, **common),
        "parquet": DataArguments(dataset_name=parquet_folder, audio_column_name="speech", label_column_name="emotion",
                                 speaker_column_name="spk", id_column_name="utt", **common),
        "saved": DataArguments(dataset_name=saved_folder, text_column_name="text", **common),
    }[source]
    results = train(data_args, _model_args(), _train_args(tmp_path))
    assert 0.0 <= results["macro_f1"] <= 1.0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    expected = TINY_LABELS if source == "saved" else NAMES  # string labels: sorted; ClassLabel: its order
    assert config["labels"] == expected
    metrics = evaluate_checkpoint(str(tmp_path / "run"), data_args, split="test", output_dir=str(tmp_path / "eval"),
                                  bootstrap_resamples=0, report=False)
    assert metrics["num_examples"] == 12
    assert metrics["macro_f1"] == pytest.approx(results["macro_f1"])


def test_cli_train_with_dataset_name(parquet_folder, tmp_path, capsys):
    from ser_hf.cli import main as cli

    argv = ["train", "--dataset_name", parquet_folder, "--audio_column_name", "speech", "--label_column_name", "emotion",
            "--eval_split_name", "validation", "--eval_strategy", "epoch", "--backbone_config",
            json.dumps(tiny_speech_backbone()), "--freeze_feature_encoder", "false", "--head_hidden_size", "16",
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--save_strategy", "no", "--report_to", "none",
            "--disable_tqdm", "true", "--use_cpu", "true", "--max_audio_seconds", "1.0", "--dataset_cache_dir",
            str(tmp_path / "cache"), "--output_dir", str(tmp_path / "run")]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    printed = json.loads(out[out.rindex('{\n  "test"'):])
    assert 0.0 <= printed["test"]["macro_f1"] <= 1.0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["labels"] == NAMES
