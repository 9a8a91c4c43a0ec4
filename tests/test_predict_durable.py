"""`predict` over many files: batched across files, journaled, resumable with identical outputs,
published as one set, stale temporary files cleaned."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ser_hf.configuration import SERSpeechConfig
from ser_hf.inference import load_audio, predict
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.prediction_output import CURRENT_LINK, JOURNAL_NAME, Journal
from ser_hf.tiny import tiny_speech_backbone
from tests.helpers_audio import write_wav

LABELS = ["ang", "hap", "neu", "sad"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), task="multitask", labels=LABELS,
                             max_audio_seconds=1.0, head_dropout=0.0)
    model = SERModelForSpeech(config)
    folder = tmp_path_factory.mktemp("model")
    model.save_pretrained(folder)
    build_feature_extractor(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory) -> str:
    """24 short clips of different lengths and rates, plus two longer than the 1 s window."""
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    for k in range(24):
        rate = (16000, 22050, 8000)[k % 3]
        n = int(rng.uniform(0.15, 0.95) * rate)
        write_wav(folder / f"clip{k:02d}.wav", (0.2 * rng.standard_normal(n) * np.linspace(0.2, 1, n)).astype(np.float32), rate)
    for k, seconds in enumerate((2.7, 1.6)):
        write_wav(folder / f"long{k}.wav", (0.2 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000)
    return str(folder)


def _outputs(folder) -> dict[str, bytes]:
    return {name: open(os.path.join(folder, name), "rb").read() for name in ("predictions.json", "files.csv", "windows.csv")}


def test_batched_predict_equals_one_file_at_a_time(model_dir, audio_dir):
    """Batching across files (length-sorted, decoded by a worker) gives each file's own prediction."""
    batched = predict(model_dir, audio_dir, batch_size=6, num_workers=1)
    files = [r["file"] for r in batched.files]
    assert files == sorted(files) and len(files) == 26  # reported in input order, whatever the batch order
    model = SERModelForSpeech.from_pretrained(model_dir).eval()
    extractor = build_feature_extractor(model.config)
    for row in batched.files:
        if row["num_windows"] > 1:
            continue
        wave = load_audio(row["file"], 16000)
        with torch.no_grad():
            alone = torch.softmax(model(**extractor([wave], sampling_rate=16000, return_tensors="pt")).logits, -1)[0]
        np.testing.assert_allclose([row["probabilities"][n] for n in LABELS], alone.numpy(), atol=2e-5)
    assert {r["num_windows"] for r in batched.files if "long" in r["file"]} == {5, 3}
    in_process = predict(model_dir, audio_dir, batch_size=6, num_workers=0)  # decoding here, torch's own thread count
    assert [r["file"] for r in in_process.files] == files
    for a, b in zip(in_process.windows, batched.windows):
        assert (a["file"], a["start"], a["end"]) == (b["file"], b["start"], b["end"])
        np.testing.assert_allclose([a["probabilities"][n] for n in LABELS], [b["probabilities"][n] for n in LABELS], atol=1e-5)


def test_interrupted_run_resumes_with_identical_outputs(model_dir, audio_dir, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    predict(model_dir, audio_dir, batch_size=4, output_dir=reference, num_workers=1)
    assert not (reference / JOURNAL_NAME).exists()  # removed once the set is published

    out = tmp_path / "out"
    recorded = []
    original = Journal.record

    def record_then_crash(self, unit, entry):
        original(self, unit, entry)
        recorded.append(unit)
        if len(recorded) == 4:  # 4 of 8 units (6 batches of 4 short files, then 2 long files) done
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(Journal, "record", record_then_crash)
    with pytest.raises(KeyboardInterrupt):
        predict(model_dir, audio_dir, batch_size=4, output_dir=out, num_workers=1)
    monkeypatch.setattr(Journal, "record", original)
    assert not (out / "predictions.json").exists()  # nothing published from a half run
    lines = (out / JOURNAL_NAME).read_text().splitlines()
    assert len(lines) == 1 + 4  # header + 4 finished units
    # A kill can also leave a torn last line and temporary files; both are handled on restart.
    with open(out / JOURNAL_NAME, "a") as handle:
        handle.write('{"unit": 8, "files": [{"ind')
    (out / ".tmp-abc.csv").write_text("partial")
    os.makedirs(out / ".tmp-run-dead")

    calls = []
    original_run = type(_predictor_of(model_dir)).run

    def counting_run(self, inputs):
        calls.append(1)
        return original_run(self, inputs)

    monkeypatch.setattr(type(_predictor_of(model_dir)), "run", counting_run)
    predict(model_dir, audio_dir, batch_size=4, output_dir=out, num_workers=1)
    assert _outputs(out) == _outputs(reference)
    assert not any(name.startswith(".tmp-") for name in os.listdir(out))
    assert not (out / JOURNAL_NAME).exists()
    # Only the unfinished units ran: 2 batches of short files + the long files' windows (5 and 3, in 4s).
    assert len(calls) == 2 + 2 + 1


def _predictor_of(model_dir):
    from ser_hf.inference import build_predictor

    return build_predictor(model_dir, device="cpu")


def test_killed_cli_run_resumes(model_dir, audio_dir, tmp_path):
    """`kill -9` of a real `ser-hf predict` process, then the same command again."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "ser_hf.cli", "predict", model_dir, audio_dir, "--batch_size", "1", "--output_dir"]
    # The reference in this process: same settings, so the same batches and the same bytes.
    predict(model_dir, audio_dir, batch_size=1, output_dir=tmp_path / "reference", progress=False)
    out = tmp_path / "out"
    process = subprocess.Popen([*command, str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        journal = out / JOURNAL_NAME
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    journal_lines = len((out / JOURNAL_NAME).read_text().splitlines()) if (out / JOURNAL_NAME).exists() else 0
    assert journal_lines >= 4, "the run finished before it could be killed"
    subprocess.run([*command, str(out)], check=True, capture_output=True, env=env)
    assert _outputs(out) == _outputs(tmp_path / "reference")


def test_changed_settings_start_afresh(model_dir, audio_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first = predict(model_dir, audio_dir, batch_size=4, output_dir=out, num_workers=0)
    # A stale journal from a run with other settings (here: another hop) must not be reused.
    journal = Journal(str(out), {"something": "else"})
    journal.record(0, {"files": [], "errors": []})
    journal.close(remove=False)
    second = predict(model_dir, audio_dir, batch_size=4, hop_seconds=0.25, output_dir=out, num_workers=0)
    assert len(second.windows) > len(first.windows) and len(second.files) == len(first.files)


def test_outputs_are_published_as_one_set(model_dir, audio_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    predict(model_dir, audio_dir, batch_size=8, output_dir=out, num_workers=0)
    for name in ("predictions.json", "files.csv", "windows.csv", "timelines"):
        assert os.path.islink(out / name) and os.readlink(out / name) == os.path.join(CURRENT_LINK, name)
    first_run = os.readlink(out / CURRENT_LINK)
    before = _outputs(out)

    # A second run that dies while writing its set leaves the first set intact and current.
    import ser_hf.io

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ser_hf.io, "write_json_atomic", broken)
    with pytest.raises(OSError, match="disk full"):
        predict(model_dir, audio_dir, batch_size=8, hop_seconds=0.3, output_dir=out, num_workers=0)
    monkeypatch.undo()
    assert os.readlink(out / CURRENT_LINK) == first_run and _outputs(out) == before

    # A completed second run swaps the whole set at once; the previous run's folder stays for readers
    # that resolved the old link, older ones and temporary folders are removed.
    predict(model_dir, audio_dir, batch_size=8, hop_seconds=0.3, output_dir=out, num_workers=0)
    second_run = os.readlink(out / CURRENT_LINK)
    assert second_run != first_run
    data = json.loads((out / "predictions.json").read_text())
    assert data["hop_seconds"] == 0.3
    runs = sorted(n for n in os.listdir(out) if n.startswith(".run-"))
    assert set(runs) == {first_run, second_run}
    assert not any(n.startswith(".tmp-") for n in os.listdir(out))


def test_second_run_on_the_same_folder_is_refused(model_dir, audio_dir, tmp_path):
    from ser_hf.prediction_output import locked_output_dir

    with locked_output_dir(tmp_path / "out"), pytest.raises(ValueError, match="in use by another"):
        predict(model_dir, audio_dir, output_dir=tmp_path / "out", num_workers=0)
