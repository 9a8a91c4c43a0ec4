"""ONNX export: onnxruntime matches PyTorch on padded batches of mixed lengths, for every model kind,
and `predict --backend onnx` gives the torch predictions."""
from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort  # the `onnx` extra; the test extra includes it, so CI never skips these
import pytest
import torch

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.export import ORTSERModel, export_onnx, is_onnx_export
from ser_hf.export.onnx import ONNX_EXPORT_FILE, _cast_inputs, sample_inputs
from ser_hf.inference import _speech_inputs, _text_inputs, predict
from ser_hf.modeling import (
    SERFusionConfig,
    SERFusionModel,
    SERJointModel,
    SERModelForSpeech,
    SERModelForText,
    build_feature_extractor,
)
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone, tokenizer_path
from tests.helpers_audio import write_wav

LABELS = ["ang", "hap", "neu", "sad"]
TOLERANCE = 1e-4


def _speech_config(kind: str, task: str, **extra) -> SERSpeechConfig:
    return SERSpeechConfig(
        backbone_config=tiny_speech_backbone(kind), task=task, labels=LABELS if task != "attributes" else None,
        max_audio_seconds=2.0, head_dropout=0.0, **extra,
    )


def _save_speech(folder, kind: str, task: str, **extra) -> str:
    torch.manual_seed(0)
    model = SERModelForSpeech(_speech_config(kind, task, **extra))
    model.save_pretrained(folder)
    build_feature_extractor(model.config).save_pretrained(folder)
    return str(folder)


def _tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_path(str(folder / "tok")))


def _save_text(folder, task: str = "multitask") -> str:
    torch.manual_seed(1)
    config = SERTextConfig(backbone_config=tiny_text_backbone(), task=task, labels=LABELS, max_length=32, head_dropout=0.0)
    model = SERModelForText(config)
    model.save_pretrained(folder)
    _tokenizer(folder.parent).save_pretrained(folder)
    return str(folder)


def _waves(lengths, seed=5):
    rng = np.random.default_rng(seed)
    envelope = lambda n: 0.05 + 0.3 * np.abs(np.sin(np.linspace(0, 5, n)))
    return [(rng.standard_normal(n) * envelope(n)).astype(np.float32) for n in lengths]


def _compare(model_dir: str, export_dir: str, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
    """Max |onnxruntime - torch| per output on one batch, both models loaded from disk."""
    from ser_hf.finetuning import load_ser_model

    torch_model = load_ser_model(model_dir, merge=True).eval()
    onnx_model = ORTSERModel(export_dir)
    with torch.inference_mode():
        if onnx_model.ser_kind == "fusion":
            expected = torch_model(features=inputs)
            got = onnx_model(features=inputs)
        else:
            expected = torch_model(**inputs)
            got = onnx_model(**inputs)
    diffs = {}
    for name in onnx_model.output_names:
        diffs[name] = float((getattr(expected, name) - getattr(got, name)).abs().max())
        assert getattr(got, name).shape == getattr(expected, name).shape
    return diffs


# ------------------------------------------------------------------------------------------ speech
@pytest.mark.parametrize(
    "kind,task",
    [("wavlm", "categorical"), ("wav2vec2", "multitask"), ("whisper", "attributes"), ("hubert", "categorical")],
)
def test_speech_export_matches_torch_on_mixed_length_batches(tmp_path, kind, task):
    model_dir = _save_speech(tmp_path / "model", kind, task, layer_weighting="weighted_sum" if kind == "wav2vec2" else "last")
    export_dir = str(tmp_path / "onnx")
    record = export_onnx(model_dir, export_dir)
    assert is_onnx_export(export_dir)
    assert max(record["parity_max_abs_diff"].values()) <= TOLERANCE
    assert record["outputs"] == (["logits"] if task != "attributes" else []) + (["attributes"] if task != "categorical" else []) + ["pooled_output"]
    # The folder carries what inference needs: processor config, labels, attribute range.
    for name in ("model.onnx", "config.json", "preprocessor_config.json", ONNX_EXPORT_FILE):
        assert os.path.isfile(os.path.join(export_dir, name)), name
    assert record["labels"] == (LABELS if task != "attributes" else [])

    # Batches the export never saw: other sizes and lengths, heavy padding (a 0.1 s clip beside 2 s).
    config = SERSpeechConfig.from_pretrained(model_dir)
    extractor = build_feature_extractor(config)
    onnx_inputs = ORTSERModel(export_dir).input_names
    assert "attention_mask" in onnx_inputs
    for lengths in ([32000, 1600, 20000, 7000], [4000], [12345, 30001]):
        inputs = _speech_inputs(extractor, _waves(lengths), 16000, "cpu")
        diffs = _compare(model_dir, export_dir, inputs)
        assert max(diffs.values()) <= TOLERANCE, (lengths, diffs)
    if kind != "whisper":  # raw-waveform encoders: the length axis is dynamic in the graph itself
        session = ort.InferenceSession(os.path.join(export_dir, "model.onnx"), providers=["CPUExecutionProvider"])
        shape = session.get_inputs()[0].shape
        assert isinstance(shape[0], str) and isinstance(shape[1], str), shape


def test_padding_does_not_change_onnx_outputs(tmp_path):
    """The attention mask is a real input: a clip padded in a batch gives its outputs alone."""
    model_dir = _save_speech(tmp_path / "model", "wavlm", "multitask")
    export_dir = str(tmp_path / "onnx")
    export_onnx(model_dir, export_dir)
    onnx_model = ORTSERModel(export_dir)
    extractor = build_feature_extractor(SERSpeechConfig.from_pretrained(model_dir))
    short, long = _waves([5000, 30000])
    alone = onnx_model(**_speech_inputs(extractor, [short], 16000, "cpu"))
    batched = onnx_model(**_speech_inputs(extractor, [long, short], 16000, "cpu"))
    np.testing.assert_allclose(batched.logits[1].numpy(), alone.logits[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(batched.attributes[1].numpy(), alone.attributes[0].numpy(), atol=1e-4)


# ------------------------------------------------------------------------------------------ text, fusion, joint, LoRA
def test_text_export_matches_torch(tmp_path):
    model_dir = _save_text(tmp_path / "text")
    export_dir = str(tmp_path / "onnx")
    record = export_onnx(model_dir, export_dir)
    assert record["kind"] == "text" and "attention_mask" in record["inputs"]
    assert os.path.isfile(os.path.join(export_dir, "tokenizer_config.json"))
    tokenizer = _tokenizer(tmp_path)
    for texts in (["a", "a much longer sentence that needs many more tokens than the others", "no"], ["one two three"]):
        diffs = _compare(model_dir, export_dir, _text_inputs(tokenizer, texts, 32, "cpu"))
        assert max(diffs.values()) <= TOLERANCE, diffs


def test_fusion_and_joint_exports_match_torch(tmp_path):
    torch.manual_seed(2)
    fusion = SERFusionModel(SERFusionConfig(input_sizes={"audio": 64, "text": 32}, task="multitask", labels=LABELS, head_dropout=0.0))
    fusion.save_pretrained(tmp_path / "fusion")
    record = export_onnx(str(tmp_path / "fusion"), str(tmp_path / "fusion_onnx"))
    assert record["inputs"] == ["audio", "text"] and record["outputs"] == ["logits", "attributes"]
    features = {"audio": torch.randn(7, 64), "text": torch.randn(7, 32)}
    assert max(_compare(str(tmp_path / "fusion"), str(tmp_path / "fusion_onnx"), features).values()) <= TOLERANCE

    speech = SERModelForSpeech(_speech_config("wavlm", "attributes"))
    text = SERModelForText(SERTextConfig(backbone_config=tiny_text_backbone(), task="attributes", max_length=32))
    joint = SERJointModel.from_parts(speech, text, task="categorical", labels=LABELS, head_dropout=0.0)
    joint.save_pretrained(tmp_path / "joint")
    build_feature_extractor(speech.config).save_pretrained(tmp_path / "joint")
    _tokenizer(tmp_path).save_pretrained(tmp_path / "joint")
    export_onnx(str(tmp_path / "joint"), str(tmp_path / "joint_onnx"))
    onnx_joint = ORTSERModel(str(tmp_path / "joint_onnx"))
    inputs = _cast_inputs(sample_inputs(joint.eval(), (build_feature_extractor(speech.config), _tokenizer(tmp_path)), "joint", seed=1, batch_size=4))
    assert max(_compare(str(tmp_path / "joint"), str(tmp_path / "joint_onnx"), inputs).values()) <= TOLERANCE
    assert set(onnx_joint.input_names) >= {"input_values", "attention_mask", "input_ids", "text_attention_mask"}


def test_lora_checkpoint_is_merged_before_export(tmp_path):
    from ser_hf.finetuning import apply_lora, load_ser_model, save_checkpoint

    base = _save_speech(tmp_path / "base", "wavlm", "categorical")
    lora = apply_lora(load_ser_model(base))
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if ".lora_B." in name:
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))
    save_checkpoint(lora, tmp_path / "adapter", processor=build_feature_extractor(lora.config))
    export_onnx(str(tmp_path / "adapter"), str(tmp_path / "onnx"))
    extractor = build_feature_extractor(SERSpeechConfig.from_pretrained(base))
    inputs = _speech_inputs(extractor, _waves([8000, 20000, 3000]), 16000, "cpu")
    diffs = _compare(str(tmp_path / "adapter"), str(tmp_path / "onnx"), inputs)
    assert max(diffs.values()) <= TOLERANCE
    # ... and the adapters mattered: the base model alone gives other logits.
    base_logits = load_ser_model(base).eval()(**inputs).logits
    assert float((base_logits - ORTSERModel(str(tmp_path / "onnx"))(**inputs).logits).abs().max()) > 1e-3


# ------------------------------------------------------------------------------------------ predict and CLI
def test_predict_backend_onnx_equals_torch_and_cli(tmp_path):
    model_dir = _save_speech(tmp_path / "model", "wavlm", "multitask")
    audio = tmp_path / "audio"
    for k, seconds in enumerate((0.5, 1.3, 5.0, 0.2)):  # 5 s: several windows of the 2 s model
        write_wav(str(audio / f"clip{k}.wav"), _waves([int(seconds * 22050)], seed=k)[0], 22050)
    from ser_hf.cli import main as cli

    export_dir = tmp_path / "onnx"
    assert cli(["export", model_dir, "--format", "onnx", "--output_dir", str(export_dir), "--quantize"]) == 0
    record = json.loads((export_dir / ONNX_EXPORT_FILE).read_text())
    assert record["quantized"]["file"] == "model.int8.onnx" and (export_dir / "model.int8.onnx").is_file()

    by_torch = predict(model_dir, str(audio), backend="torch", batch_size=3)
    by_onnx = predict(str(export_dir), str(audio), batch_size=3)  # auto: an export folder runs on onnxruntime
    assert [r["file"] for r in by_onnx.files] == [r["file"] for r in by_torch.files]
    assert [r["label"] for r in by_onnx.windows] == [r["label"] for r in by_torch.windows]
    for a, b in zip(by_torch.windows, by_onnx.windows):
        for name in a["probabilities"]:
            assert abs(a["probabilities"][name] - b["probabilities"][name]) < 1e-4
        for name in a["attributes"]:
            assert abs(a["attributes"][name] - b["attributes"][name]) < 1e-4
    assert len(by_onnx.windows) > len(by_onnx.files)  # the long file went through windows

    assert cli(["predict", str(export_dir), str(audio), "--backend", "onnx", "--output_dir", str(tmp_path / "out")]) == 0
    written = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["label"] for r in written["files"]] == [r["label"] for r in by_torch.files]

    with pytest.raises(ValueError, match="ONNX export"):
        predict(str(export_dir), str(audio), backend="torch")
    with pytest.raises(ValueError, match="ser-hf export"):
        predict(model_dir, str(audio), backend="onnx")


def test_fusion_predict_with_onnx_parts(tmp_path):
    """A fusion head and the speech/text models it reads, all exported, predict like torch."""
    speech_dir = _save_speech(tmp_path / "speech", "wavlm", "attributes")
    text_dir = _save_text(tmp_path / "text", task="attributes")
    torch.manual_seed(4)
    fusion = SERFusionModel(SERFusionConfig(input_sizes={"audio": 64, "text": 32}, labels=LABELS, head_dropout=0.0))
    fusion.save_pretrained(tmp_path / "fusion")
    for name in ("speech", "text", "fusion"):
        export_onnx(str(tmp_path / name), str(tmp_path / f"{name}_onnx"))
    audio = tmp_path / "audio"
    for k in range(3):
        write_wav(str(audio / f"u{k}.wav"), _waves([8000 + 4000 * k], seed=k)[0], 16000)
    transcripts = {f"u{k}": text for k, text in enumerate(["so happy", "i am very angry about this", "fine"])}
    expected = predict(str(tmp_path / "fusion"), str(audio), speech_model=speech_dir, text_model=text_dir, transcripts=transcripts)
    got = predict(str(tmp_path / "fusion_onnx"), str(audio), speech_model=str(tmp_path / "speech_onnx"),
                  text_model=str(tmp_path / "text_onnx"), transcripts=transcripts)
    for a, b in zip(expected.files, got.files):
        assert a["label"] == b["label"]
        assert max(abs(a["probabilities"][n] - b["probabilities"][n]) for n in a["probabilities"]) < 1e-4


def test_emodb_test_speakers_same_predictions_under_onnx(tmp_path):
    """Real speech: EmoDB's test speakers (03, 08) give the same labels under onnxruntime as under torch."""
    from tests.helpers_audio import emodb_root

    wavs = sorted(str(p) for p in (emodb_root() / "wav").glob("*.wav") if p.name[:2] in ("03", "08"))
    assert len(wavs) == 107
    model_dir = _save_speech(tmp_path / "model", "wavlm", "multitask")
    export_onnx(model_dir, str(tmp_path / "onnx"))
    by_torch = predict(model_dir, wavs, batch_size=16, backend="torch", progress=False)
    by_onnx = predict(str(tmp_path / "onnx"), wavs, batch_size=16, backend="onnx", progress=False)
    assert [r["label"] for r in by_onnx.files] == [r["label"] for r in by_torch.files]
    worst = max(abs(a["probabilities"][n] - b["probabilities"][n]) for a, b in zip(by_torch.windows, by_onnx.windows) for n in LABELS)
    assert worst < 1e-4
