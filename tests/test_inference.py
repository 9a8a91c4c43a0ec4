"""`ser_hf.inference.predict` and `ser-hf predict` on tiny saved models and generated audio."""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.data.audio import AudioError, load_audio
from ser_hf.data.corpora import get_corpus_spec
from ser_hf.inference import (
    find_audio_files,
    load_transcripts,
    predict,
    stream_mono,
    stream_windows,
    window_bounds,
)
from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone, tokenizer_path
from tests.helpers_audio import write_random_bytes, write_wav

EMODB = get_corpus_spec("emodb")
NAMES = [EMODB.label_names[code] for code in EMODB.labels]


def _noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Noise with a slowly changing loudness, so different windows give different predictions."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    envelope = 0.05 + 0.3 * (1 + np.sin(np.linspace(0, 6 * np.pi, n))) / 2
    wave = rng.standard_normal((n, channels)) * envelope[:, None]
    return (wave[:, 0] if channels == 1 else wave).astype(np.float32)


def _save(model, folder) -> str:
    model.save_pretrained(folder)
    build_feature_extractor(model.config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def categorical_model(tmp_path_factory) -> str:
    torch.manual_seed(0)
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone(), labels=list(EMODB.labels), label_names=EMODB.label_names,
        max_audio_seconds=1.0, head_dropout=0.0,
    )
    return _save(SERModelForSpeech(config), tmp_path_factory.mktemp("categorical"))


def _direct(model_dir: str, waves: list[np.ndarray]) -> np.ndarray:
    """Probabilities from a plain forward pass on already decoded waves (the reference)."""
    model = SERModelForSpeech.from_pretrained(model_dir).eval()
    extractor = build_feature_extractor(model.config)
    inputs = extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        return torch.softmax(model(**inputs).logits, -1).numpy()


# ------------------------------------------------------------------------------------------ windowing
@pytest.mark.parametrize("total", [1, 799, 800, 801, 1200, 3999, 4000, 4001])
def test_stream_windows_match_window_bounds(total):
    signal = np.arange(total, dtype=np.float32)
    rng = np.random.default_rng(total)
    cuts = np.cumsum(rng.integers(1, 500, size=total))
    blocks = np.split(signal, cuts[cuts < total])
    got = list(stream_windows(iter(blocks), window=800, hop=300))
    expected = window_bounds(total, 800, 300)
    assert [(w.start, w.end) for w in got] == expected
    for w in got:
        np.testing.assert_array_equal(w.wave, signal[w.start : w.end])
    covered = np.zeros(total, bool)
    for start, end in expected:
        covered[start:end] = True
    assert covered.all()  # no audio is skipped
    assert all(end - start == min(800, total) for start, end in expected)  # full windows only


def test_window_hop_must_not_skip_audio():
    with pytest.raises(ValueError, match="hop"):
        list(stream_windows(iter([np.zeros(10, np.float32)]), window=4, hop=5))


def test_streamed_decoding_equals_whole_file_decoding(tmp_path):
    path = write_wav(tmp_path / "a.wav", _noise(3.3, 44100, channels=2), 44100)
    streamed = np.concatenate(list(stream_mono(path, 16000, block_frames=1001)))
    np.testing.assert_allclose(streamed, load_audio(path, 16000), atol=1e-6)


# ------------------------------------------------------------------------------------------ files
def test_directories_are_searched_recursively(tmp_path):
    write_wav(tmp_path / "b" / "deep" / "x.flac", _noise(0.3, 16000), 16000)
    write_wav(tmp_path / "a.wav", _noise(0.3, 16000), 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    assert find_audio_files(tmp_path) == [str(tmp_path / "a.wav"), str(tmp_path / "b" / "deep" / "x.flac")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no audio files"):
        find_audio_files(tmp_path / "empty")
    with pytest.raises(AudioError, match="missing.wav"):
        find_audio_files(tmp_path / "missing.wav")


def test_any_rate_channels_and_format(categorical_model, tmp_path):
    files = [
        write_wav(tmp_path / "in" / "r8k.wav", _noise(0.8, 8000, seed=1), 8000),
        write_wav(tmp_path / "in" / "sub" / "r22k_stereo.flac", _noise(0.7, 22050, channels=2, seed=2), 22050),
        write_wav(tmp_path / "in" / "sub" / "r48k.ogg", _noise(0.9, 48000, seed=3), 48000, subtype="VORBIS"),
        write_wav(tmp_path / "in" / "r44k.mp3", _noise(0.6, 44100, seed=4), 44100, subtype="MPEG_LAYER_III"),
    ]
    results = predict(categorical_model, [str(tmp_path / "in")], batch_size=3)
    assert sorted(r["file"] for r in results.files) == sorted(files)
    reference = _direct(categorical_model, [load_audio(f, 16000) for f in files])
    for path, expected in zip(files, reference):
        (row,) = [r for r in results.files if r["file"] == path]
        assert row["num_windows"] == 1
        assert row["duration"] == pytest.approx(sf.info(path).duration, abs=1e-3)
        np.testing.assert_allclose([row["probabilities"][n] for n in NAMES], expected, atol=1e-5)
        assert row["label"] == NAMES[int(np.argmax(expected))]


# ------------------------------------------------------------------------------------------ long files
@pytest.fixture(scope="module")
def long_run(categorical_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    long_file = write_wav(folder / "long.wav", _noise(4.3, 44100, channels=2, seed=5), 44100)
    short_file = write_wav(folder / "short.wav", _noise(0.5, 16000, seed=6), 16000)
    results = predict(
        categorical_model, [long_file, short_file], hop_seconds=0.4, batch_size=4, output_dir=folder / "out"
    )
    return results, long_file, short_file, folder / "out"


def test_long_file_windows(long_run, categorical_model):
    results, long_file, _, _ = long_run
    windows = [w for w in results.windows if w["file"] == long_file]
    starts = [0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8, 3.2]  # 1 s windows every 0.4 s ...
    expected = [(s, s + 1.0) for s in starts] + [(3.3, 4.3)]  # ... and one aligned to the end
    np.testing.assert_allclose([(w["start"], w["end"]) for w in windows], expected, atol=1e-4)
    assert [w["window"] for w in windows] == list(range(len(expected)))
    assert results.window_seconds == 1.0 and results.hop_seconds == 0.4
    # Each window's prediction is the model's output on that stretch of the whole decoded file.
    whole = load_audio(long_file, 16000)
    reference = _direct(categorical_model, [whole[round(s * 16000) : round(e * 16000)] for s, e in expected])
    got = np.array([[w["probabilities"][n] for n in NAMES] for w in windows])
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert len({w["label"] for w in windows}) >= 1 and np.ptp(got[:, 0]) > 0  # windows really differ


def test_file_result_is_the_duration_weighted_window_mean(long_run):
    results, long_file, short_file, _ = long_run
    for path in (long_file, short_file):
        windows = [w for w in results.windows if w["file"] == path]
        (row,) = [r for r in results.files if r["file"] == path]
        weights = np.array([w["end"] - w["start"] for w in windows])
        mean = (weights[:, None] * np.array([[w["probabilities"][n] for n in NAMES] for w in windows])).sum(0) / weights.sum()
        np.testing.assert_allclose([row["probabilities"][n] for n in NAMES], mean, atol=1e-9)
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
        assert row["label"] == NAMES[int(np.argmax(mean))]
        assert row["num_windows"] == len(windows)


def test_csv_json_and_timeline_outputs(long_run):
    results, long_file, short_file, out = long_run
    visible = sorted(n for n in os.listdir(out) if not n.startswith("."))  # hidden: the published run, lock
    assert visible == ["files.csv", "predictions.json", "timelines", "windows.csv"]
    with open(out / "windows.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["file", "window", "start", "end", "label", *(f"prob_{n}" for n in NAMES)]
    assert len(rows) == len(results.windows)
    for row, window in zip(rows, results.windows):
        assert row["file"] == window["file"] and row["label"] == window["label"]
        assert float(row["start"]) == window["start"]
        assert float(row["prob_anger"]) == pytest.approx(window["probabilities"]["anger"], abs=1e-6)
    with open(out / "files.csv", newline="") as handle:
        files = list(csv.DictReader(handle))
    assert [(f["file"], f["label"], int(f["num_windows"])) for f in files] == [
        (r["file"], r["label"], r["num_windows"]) for r in results.files
    ]
    data = json.loads((out / "predictions.json").read_text())
    assert data["labels"] == EMODB.label_names and data["window_seconds"] == 1.0
    assert data["files"] == json.loads(json.dumps(results.files)) and len(data["windows"]) == len(results.windows)
    # Timeline only for the long file; a real PNG.
    assert files[0]["timeline"] == os.path.join("timelines", "long.png") and files[1]["timeline"] == ""
    assert os.listdir(out / "timelines") == ["long.png"]
    png = (out / "timelines" / "long.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(out / "timelines" / "long.png")
    assert image.shape[0] > 200 and image.shape[1] > 500 and image[..., :3].std() > 0.05


# ------------------------------------------------------------------------------------------ attributes
def test_attribute_model_outputs_on_the_corpus_scale(tmp_path):
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), task="attributes", attribute_range=(1, 7), max_audio_seconds=1.0)
    model = SERModelForSpeech(config)
    last = model.regressor[-1]
    with torch.no_grad():  # head output fixed at (0, 0.5, 1) on the normalised scale
        last.weight.zero_()
        last.bias.copy_(torch.tensor([0.0, 0.5, 1.0]))
    folder = _save(model, tmp_path / "model")
    path = write_wav(tmp_path / "a.wav", _noise(2.2, 16000), 16000)
    results = predict(folder, [path], output_dir=tmp_path / "out")
    assert results.labels == [] and results.attributes == ["arousal", "valence", "dominance"]
    assert len(results.windows) == 4
    for row in results.windows + results.files:
        assert row["attributes"] == pytest.approx({"arousal": 1.0, "valence": 4.0, "dominance": 7.0}, abs=1e-5)
        assert "label" not in row
    with open(tmp_path / "out" / "windows.csv", newline="") as handle:
        assert list(next(csv.DictReader(handle))) == ["file", "window", "start", "end", "arousal", "valence", "dominance"]


# ------------------------------------------------------------------------------------------ errors and CLI
def test_bad_files_raise_or_are_reported(categorical_model, tmp_path):
    good = write_wav(tmp_path / "good.wav", _noise(0.5, 16000), 16000)
    bad = write_random_bytes(tmp_path / "bad.wav")
    with pytest.raises(AudioError, match="bad.wav"):
        predict(categorical_model, [good, bad])
    results = predict(categorical_model, [good, bad], on_error="skip")
    assert [r["file"] for r in results.files] == [good]
    assert results.errors[0]["file"] == bad and "bad.wav" in results.errors[0]["error"]


def test_cli_predict(categorical_model, tmp_path, capsys):
    from ser_hf.commands.predict import main

    path = write_wav(tmp_path / "clip.wav", _noise(2.5, 32000), 32000)
    assert main([categorical_model, path, "--output_dir", str(tmp_path / "out"), "--hop_seconds", "0.5", "--batch_size", "2"]) == 0
    printed = capsys.readouterr().out
    assert f"{path}: 2.5s, 4 window(s)," in printed
    data = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert data["hop_seconds"] == 0.5 and data["files"][0]["num_windows"] == 4
    assert (tmp_path / "out" / "timelines" / "clip.png").is_file()
    write_random_bytes(tmp_path / "broken.flac")
    assert main([categorical_model, path, str(tmp_path / "broken.flac"), "--output_dir", str(tmp_path / "o2"), "--on_error", "skip"]) == 1
    assert "broken.flac" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ text models
@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> str:
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("text")
    config = SERTextConfig(backbone_config=tiny_text_backbone(), labels=list(EMODB.labels), label_names=EMODB.label_names)
    SERModelForText(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_path(str(folder / "tok"))).save_pretrained(folder)
    return str(folder)


def test_text_model_with_a_transcripts_file(text_model, tmp_path):
    a = write_wav(tmp_path / "a.wav", _noise(1.5, 16000), 16000)
    b = write_wav(tmp_path / "b.flac", _noise(0.5, 16000), 16000)
    table = tmp_path / "transcripts.csv"
    table.write_text("id,transcript\na,I am so angry with you\nb.flac,what a lovely day\n")
    assert load_transcripts(table) == {"a": "I am so angry with you", "b.flac": "what a lovely day"}
    as_json = tmp_path / "transcripts.json"
    as_json.write_text(json.dumps([{"file": "a", "text": "I am so angry with you"}, {"id": "b.flac", "transcript": "what a lovely day"}]))
    assert load_transcripts(as_json) == load_transcripts(table)
    as_json.write_text(json.dumps([{"id": "a"}]))
    with pytest.raises(ValueError, match=r"transcripts.json: row 0 has none of the columns \('text', 'transcript'\)"):
        load_transcripts(as_json)
    results = predict(text_model, [a, b], transcripts=str(table))
    assert [(r["file"], r["text"], r["num_windows"]) for r in results.files] == [
        (a, "I am so angry with you", 1), (b, "what a lovely day", 1)
    ]
    assert results.files[0]["duration"] == pytest.approx(1.5)
    assert results.files[0]["probabilities"] != results.files[1]["probabilities"]
    missing = write_wav(tmp_path / "c.wav", _noise(0.5, 16000), 16000)
    with pytest.raises(ValueError, match="c.wav: no transcript"):
        predict(text_model, [a, missing], transcripts=str(table))


def test_text_model_with_asr_per_window(text_model, tmp_path):
    path = write_wav(tmp_path / "talk.wav", _noise(2.5, 8000), 8000)
    heard = []

    def fake_asr(inputs):  # stands in for a transformers ASR pipeline
        heard.append(len(inputs["raw"]) / inputs["sampling_rate"])
        return {"text": f" words {len(heard)}"}

    results = predict(text_model, [path], asr_model=fake_asr, window_seconds=1.0)
    assert heard == [1.0, 1.0, 1.0]  # non-overlapping 1 s windows, the last aligned to the end
    assert [(w["start"], w["end"], w["text"]) for w in results.windows] == [
        (0.0, 1.0, "words 1"), (1.0, 2.0, "words 2"), (1.5, 2.5, "words 3")
    ]
    assert results.files[0]["text"] == "words 1 words 2 words 3"
    with pytest.raises(ValueError, match="exactly one of transcripts"):
        predict(text_model, [path])


def _pooled_reference(speech_dir, text_dir, waves, texts):
    from transformers import AutoTokenizer

    speech = SERModelForSpeech.from_pretrained(speech_dir).eval()
    text = SERModelForText.from_pretrained(text_dir).eval()
    extractor = build_feature_extractor(speech.config)
    tokenizer = AutoTokenizer.from_pretrained(text_dir)
    with torch.no_grad():
        audio = speech.pool(**extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt"))
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=text.config.max_length, return_tensors="pt")
        return audio, text.pool(**tokens)


def test_late_fusion_head_reads_speech_and_text_features(categorical_model, text_model, tmp_path):
    from ser_hf.modeling import SERFusionConfig, SERFusionModel

    speech_width = SERModelForSpeech.from_pretrained(categorical_model).pooling.output_size
    text_width = SERModelForText.from_pretrained(text_model).pooling.output_size
    config = SERFusionConfig(
        input_sizes={"audio": speech_width, "text": text_width}, labels=list(EMODB.labels),
        label_names=EMODB.label_names, head_dropout=0.0,
    )
    fusion = SERFusionModel(config).eval()
    fusion.save_pretrained(tmp_path / "fusion")
    path = write_wav(tmp_path / "talk.wav", _noise(2.2, 16000), 16000)
    table = {"talk": "I am so angry with you"}
    results = predict(str(tmp_path / "fusion"), [path], transcripts=table, speech_model=categorical_model, text_model=text_model)
    bounds = [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.2, 2.2)]
    assert [(w["start"], w["end"]) for w in results.windows] == bounds
    assert results.files[0]["text"] == "I am so angry with you" and "text" not in results.windows[0]
    whole = load_audio(path, 16000)
    audio, text = _pooled_reference(
        categorical_model, text_model, [whole[int(s * 16000) : int(e * 16000)] for s, e in bounds], [table["talk"]] * 4
    )
    with torch.no_grad():
        expected = torch.softmax(fusion(features={"audio": audio, "text": text}).logits, -1).numpy()
    got = np.array([[w["probabilities"][n] for n in NAMES] for w in results.windows])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="pass speech_model="):
        predict(str(tmp_path / "fusion"), [path], transcripts=table, text_model=text_model)
    with pytest.raises(ValueError, match="speech_model must be a SERModelForSpeech"):
        predict(str(tmp_path / "fusion"), [path], transcripts=table, speech_model=text_model, text_model=categorical_model)
    other = SERFusionModel(SERFusionConfig(input_sizes={"audio": speech_width + 1, "text": text_width}, labels=["A", "B"]))
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match=f"gives {speech_width}-dim pooled vectors; the fusion head expects {speech_width + 1}"):
        predict(str(tmp_path / "other"), [path], transcripts=table, speech_model=categorical_model, text_model=text_model)


def test_joint_model_with_asr(categorical_model, text_model, tmp_path):
    from transformers import AutoTokenizer

    from ser_hf.modeling import SERJointModel

    joint = SERJointModel.from_parts(
        SERModelForSpeech.from_pretrained(categorical_model), SERModelForText.from_pretrained(text_model),
        task="attributes", attribute_range=(1, 7),
    )
    folder = tmp_path / "joint"
    joint.save_pretrained(folder)
    build_feature_extractor(joint.speech.config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(text_model).save_pretrained(folder)
    path = write_wav(tmp_path / "talk.wav", _noise(1.6, 48000), 48000)
    results = predict(str(folder), [path], asr_model=lambda inputs: {"text": f"{len(inputs['raw'])} samples"})
    assert [(w["start"], w["end"], w["text"]) for w in results.windows] == [
        (0.0, 1.0, "16000 samples"), (0.5, 1.5, "16000 samples"), (0.6, 1.6, "16000 samples")
    ]
    assert results.labels == [] and set(results.files[0]["attributes"]) == {"arousal", "valence", "dominance"}


def test_whisper_model_windows_fit_its_input_window(tmp_path):
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone("whisper"), labels=list(EMODB.labels), label_names=EMODB.label_names,
        max_audio_seconds=1.0,
    )
    folder = _save(SERModelForSpeech(config), tmp_path / "whisper")
    path = write_wav(tmp_path / "a.wav", _noise(2.5, 16000), 16000)
    results = predict(folder, [path])
    assert [(w["start"], w["end"]) for w in results.windows] == [(0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5)]
    with pytest.raises(ValueError, match="Whisper model's input window of 1 s"):
        predict(folder, [path], window_seconds=2.0)


def test_lora_adapter_checkpoint_predicts_like_its_merged_model(categorical_model, tmp_path):
    from ser_hf.finetuning import apply_lora, save_checkpoint

    torch.manual_seed(1)
    peft = apply_lora(SERModelForSpeech.from_pretrained(categorical_model), r=2, base_model_name_or_path=categorical_model)
    with torch.no_grad():  # LoRA's B starts at zero; give the adapters an effect
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    extractor = build_feature_extractor(peft.config)
    save_checkpoint(peft, tmp_path / "adapter", processor=extractor)
    save_checkpoint(peft, tmp_path / "merged", processor=extractor, merged=True)
    path = write_wav(tmp_path / "a.wav", _noise(1.8, 16000), 16000)
    probs = {}
    for name in ("adapter", "merged"):
        results = predict(str(tmp_path / name), [path])
        probs[name] = np.array([[w["probabilities"][n] for n in NAMES] for w in results.windows])
    base = predict(categorical_model, [path])
    np.testing.assert_allclose(probs["adapter"], probs["merged"], atol=1e-5)
    assert np.abs(probs["adapter"] - np.array([[w["probabilities"][n] for n in NAMES] for w in base.windows])).max() > 1e-3
