"""Full and adapter checkpoints: safetensors only, Auto classes, the audio-classification pipeline,
LoRA merging for export, and adapters on a pretrained encoder named by path."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoModelForAudioClassification, WavLMConfig, WavLMModel, pipeline

from ser_hf.configuration import SERSpeechConfig
from ser_hf.finetuning import (
    apply_lora,
    is_adapter_checkpoint,
    is_lora_model,
    load_ser_config,
    load_ser_model,
    merge_lora,
    save_checkpoint,
)
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone

LABELS = ["A", "H", "N"]
NAMES = {"A": "angry", "H": "happy", "N": "neutral"}


def speech_config(**overrides) -> SERSpeechConfig:
    values = dict(backbone_config=tiny_speech_backbone("wavlm"), labels=LABELS, label_names=NAMES,
                  layer_weighting="weighted_sum", head_hidden_size=16, attention_pooling_hidden_size=16)
    values.update(overrides)
    return SERSpeechConfig(**values)


def wave(seed: int = 0, seconds: float = 1.0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(16000 * seconds))).astype(np.float32)


def probabilities(model, extractor, audio: np.ndarray) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**extractor(audio, sampling_rate=16000, return_tensors="pt")).logits.softmax(-1)[0]


def strengthen_adapters(peft_model) -> None:
    """Random adapter and layer weights, so an adapter that did nothing could not pass for merged."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if ".lora_B." in name or name.endswith("layer_weights"):
                parameter.copy_(0.3 * torch.randn(parameter.shape, generator=generator))


def only_safetensors(folder) -> None:
    weights = [f for f in os.listdir(folder) if f.endswith((".bin", ".pt", ".pth", ".pkl", ".safetensors"))]
    assert weights and all(f.endswith(".safetensors") for f in weights), weights


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A categorical speech model saved in full, and a LoRA adapter on it with strong random adapters."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    model = SERModelForSpeech(speech_config())
    extractor = build_feature_extractor(model.config)
    save_checkpoint(model, root / "full", processor=extractor)
    lora = apply_lora(load_ser_model(root / "full"))
    strengthen_adapters(lora)
    save_checkpoint(lora, root / "adapter", processor=extractor)
    return dict(root=root, model=model, lora=lora, extractor=extractor)


def test_full_checkpoint_loads_with_auto_classes_and_pipeline(saved):
    folder = saved["root"] / "full"
    only_safetensors(folder)
    assert not is_adapter_checkpoint(folder)
    expected = probabilities(saved["model"], saved["extractor"], wave())
    auto = AutoModelForAudioClassification.from_pretrained(folder)
    assert isinstance(auto, SERModelForSpeech)
    torch.testing.assert_close(probabilities(auto, saved["extractor"], wave()), expected, atol=1e-6, rtol=0)

    classify = pipeline("audio-classification", model=str(folder))
    results = classify({"raw": wave(), "sampling_rate": 16000}, top_k=None)
    assert {r["label"] for r in results} == set(NAMES.values())
    by_name = {r["label"]: r["score"] for r in results}
    for index, code in enumerate(LABELS):
        assert by_name[NAMES[code]] == pytest.approx(expected[index].item(), abs=1e-5)
    assert [r["score"] for r in results] == sorted(by_name.values(), reverse=True)


def test_adapter_checkpoint_names_its_base_and_reloads(saved, monkeypatch):
    folder = saved["root"] / "adapter"
    only_safetensors(folder)
    assert is_adapter_checkpoint(folder) and not os.path.exists(folder / "config.json")
    adapter_config = json.loads((folder / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == os.path.join("..", "full")  # relative: no local path saved
    assert adapter_config["task_type"] == "FEATURE_EXTRACTION"
    assert sorted(adapter_config["modules_to_save"]) == ["classifier", "pooling"]
    assert load_ser_config(folder).id2label == {0: "angry", 1: "happy", 2: "neutral"}

    expected = probabilities(saved["lora"], saved["extractor"], wave())
    assert not torch.allclose(expected, probabilities(saved["model"], saved["extractor"], wave()), atol=1e-3)
    reloaded = load_ser_model(folder)
    assert is_lora_model(reloaded)
    torch.testing.assert_close(probabilities(reloaded, saved["extractor"], wave()), expected, atol=1e-6, rtol=0)
    layer_weights = reloaded.get_base_model().layer_weights
    with torch.no_grad():
        layer_weights.zero_()
    reloaded.load_adapter(str(folder), "default", is_trainable=True)  # how the Trainer resumes / loads the best model
    assert torch.equal(layer_weights, saved["lora"].get_base_model().layer_weights) and layer_weights.requires_grad
    # transformers' own peft integration also follows base_model_name_or_path (from the working directory)
    monkeypatch.chdir(folder)
    classify = pipeline("audio-classification", model=str(folder))
    top = classify({"raw": wave(), "sampling_rate": 16000}, top_k=1)[0]
    assert top == {"label": NAMES[LABELS[int(expected.argmax())]], "score": pytest.approx(expected.max().item(), abs=1e-5)}


def test_merged_lora_equals_unmerged_and_exports_plain_checkpoint(saved):
    folder = saved["root"] / "merged"
    save_checkpoint(saved["lora"], folder, processor=saved["extractor"], merged=True)
    assert is_lora_model(saved["lora"])  # merging for export leaves the adapter model usable
    only_safetensors(folder)
    assert not is_adapter_checkpoint(folder)

    unmerged = load_ser_model(saved["root"] / "adapter")
    inputs = saved["extractor"]([wave(1), wave(2, 0.6)], sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = unmerged.eval()(**inputs).logits
        merged = merge_lora(unmerged).eval()
        assert not is_lora_model(merged) and not any("lora_" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**inputs).logits, expected, atol=1e-5, rtol=0)
        exported = AutoModelForAudioClassification.from_pretrained(folder).eval()
        assert not any("lora_" in key for key in exported.state_dict())
        torch.testing.assert_close(exported(**inputs).logits, expected, atol=1e-5, rtol=0)

    classify = pipeline("audio-classification", model=str(folder))
    results = classify({"raw": wave(), "sampling_rate": 16000}, top_k=None)
    reference = probabilities(saved["lora"], saved["extractor"], wave())
    assert {r["label"]: r["score"] for r in results} == {
        NAMES[code]: pytest.approx(reference[i].item(), abs=1e-5) for i, code in enumerate(LABELS)
    }


def test_adapter_on_a_pretrained_encoder_stores_its_config(tmp_path):
    """A base built from a pretrained encoder by name is rebuilt from the config saved with the adapter."""
    torch.manual_seed(0)
    encoder_config = WavLMConfig(**{k: v for k, v in tiny_speech_backbone("wavlm").items() if k != "model_type"})
    WavLMModel(encoder_config).save_pretrained(tmp_path / "wavlm")
    model = SERModelForSpeech.from_backbone(str(tmp_path / "wavlm"), labels=LABELS, head_hidden_size=16)
    lora = apply_lora(model)
    strengthen_adapters(lora)
    save_checkpoint(lora, tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] is None
    assert load_ser_config(tmp_path / "adapter").backbone_name_or_path == str(tmp_path / "wavlm")

    audio = torch.from_numpy(wave())[None]
    with torch.no_grad():
        expected = lora.eval()(input_values=audio).logits
        got = load_ser_model(tmp_path / "adapter", merge=True).eval()(input_values=audio).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with pytest.raises(OSError, match="model.safetensors"):  # no base weights there: never a silent random model
        AutoModelForAudioClassification.from_pretrained(tmp_path / "adapter")


def test_bad_checkpoints_fail_clearly(saved, tmp_path):
    with pytest.raises(ValueError, match="both a full model and an adapter"):
        save_checkpoint(saved["model"], saved["root"] / "adapter")
    with pytest.raises(ValueError, match="randomly initialised encoder"):
        apply_lora(SERModelForSpeech(speech_config()))
    with pytest.raises(ValueError, match="merged=True needs a LoRA model"):
        save_checkpoint(saved["model"], tmp_path / "x", merged=True)

    moved = tmp_path / "orphan"
    moved.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (moved / name).write_bytes((saved["root"] / "adapter" / name).read_bytes())
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_ser_model(moved)
