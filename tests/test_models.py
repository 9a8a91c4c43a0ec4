"""Speech and text models: every backbone family, tasks, save/load round trip, Auto classes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification, AutoModelForSequenceClassification

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.modeling import ACTIVATIONS, SERModelForSpeech, SERModelForText, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone

SPEECH_KINDS = ["wavlm", "wav2vec2", "hubert", "data2vec-audio", "whisper"]


def _speech_model(kind="wavlm", task="multitask", **kw):
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone(kind), task=task, labels=["a", "b", "c"], max_audio_seconds=2, **kw
    )
    return SERModelForSpeech(config).eval(), build_feature_extractor(config)


def _waves(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(8000).astype(np.float32), rng.standard_normal(24000).astype(np.float32)]


@pytest.mark.parametrize("kind", SPEECH_KINDS)
def test_every_backbone_family_gives_task_outputs_and_round_trips(kind, tmp_path):
    model, extractor = _speech_model(kind, layer_weighting="weighted_sum")
    batch = extractor(_waves(), sampling_rate=16000, padding=True if kind != "whisper" else "max_length",
                      return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape == (2, 3)
    assert out.attributes.shape == (2, 3)
    torch.testing.assert_close(out.attributes, out.attributes_normalized * 6 + 1)
    model.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SERModelForSpeech)
    with torch.no_grad():
        again = loaded(**batch)
    torch.testing.assert_close(again.logits, out.logits)
    torch.testing.assert_close(again.attributes, out.attributes)


def test_whisper_window_follows_crop_length():
    model, extractor = _speech_model("whisper")
    assert model.config.backbone_config["max_source_positions"] == 100  # 2 s -> 200 mel frames -> 100 positions
    batch = extractor([np.zeros(16000 * 5, np.float32)], sampling_rate=16000, return_tensors="pt")
    assert batch["input_features"].shape[-1] == 200


def test_feature_encoder_frozen_by_default_and_trainable_on_request():
    model, _ = _speech_model("wavlm")
    assert not any(p.requires_grad for p in model.backbone.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.backbone.encoder.parameters())
    model, _ = _speech_model("wavlm", freeze_feature_encoder=False)
    assert all(p.requires_grad for p in model.backbone.feature_extractor.parameters())


def test_padding_does_not_change_pooled_vector():
    model, extractor = _speech_model("wavlm")
    waves = _waves()
    padded = extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    with torch.no_grad():
        together = model(**padded).pooled_output
        alone = model(**extractor(waves[:1], sampling_rate=16000, return_tensors="pt")).pooled_output
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_is_chosen_by_name(name):
    model, _ = _speech_model(activation=name, task="categorical")
    assert type(model.classifier[3]) is ACTIVATIONS[name]


def test_unknown_activation_pooling_task_are_clear_errors():
    with pytest.raises(ValueError, match="activation"):
        _speech_model(activation="sigmoidish")
    with pytest.raises(ValueError, match="pooling"):
        _speech_model(pooling="max")
    with pytest.raises(ValueError, match="task"):
        _speech_model(task="ranking")
    with pytest.raises(ValueError, match="labels"):
        SERSpeechConfig(backbone_config=tiny_speech_backbone(), task="categorical")


def test_default_loss_uses_labels_and_attribute_labels():
    model, extractor = _speech_model()
    batch = extractor(_waves(), sampling_rate=16000, padding=True, return_tensors="pt")
    out = model(**batch, labels=torch.tensor([0, 2]), attribute_labels=torch.tensor([[2.0, 3.0, 4.0], [6.0, 5.0, 4.0]]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()


def test_text_model_masks_padding_and_round_trips(tmp_path):
    config = SERTextConfig(backbone_config=tiny_text_backbone(vocab_size=100), task="attributes")
    model = SERModelForText(config).eval()
    ids = torch.randint(5, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    with torch.no_grad():
        together = model(input_ids=ids, attention_mask=mask)
        alone = model(input_ids=ids[:1, :5], attention_mask=mask[:1, :5])
    torch.testing.assert_close(together.pooled_output[0], alone.pooled_output[0], atol=1e-5, rtol=1e-5)
    model.save_pretrained(tmp_path)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SERTextConfig)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids, attention_mask=mask).attributes, together.attributes)


def test_from_backbone_loads_pretrained_encoder_weights(tmp_path):
    """The user path `from_backbone("microsoft/wavlm-large")`, with a local folder standing in for the Hub."""
    from transformers import WavLMConfig, WavLMModel

    encoder = WavLMModel(WavLMConfig(**{k: v for k, v in tiny_speech_backbone().items() if k != "model_type"}))
    encoder.save_pretrained(tmp_path)
    model = SERModelForSpeech.from_backbone(str(tmp_path), labels=["a", "b"], max_audio_seconds=2)
    for name, tensor in encoder.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], tensor)
    assert model.config.backbone_name_or_path == str(tmp_path)
    assert not any(p.requires_grad for p in model.backbone.feature_extractor.parameters())


def test_auto_model_builds_from_ser_config():
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=["x", "y"], label_names={"x": "happy"})
    assert isinstance(AutoModel.from_config(config), SERModelForSpeech)
    assert config.id2label == {0: "happy", 1: "y"}
