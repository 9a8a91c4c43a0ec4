"""Masked pooling: padding must not change an utterance's pooled vector.

Checked at the pooling layer (garbage in padded positions) and end to end: a padded batch gives the
same vectors as each utterance alone, for WavLM / wav2vec2 / HuBERT speech encoders and a BERT text
encoder. Not asserted for data2vec-audio (its convolutional positional encoder sees padded frames)
or Whisper (it attends over its whole zero-padded window); see ``ser_hf.features``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor
from ser_hf.modeling.pooling import AttentiveStatisticsPooling, MeanPooling, StatisticsPooling
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone, tokenizer_path

LENGTHS = [10, 4, 7]


def _hidden_and_mask(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(len(LENGTHS), max(LENGTHS), 8, generator=generator)
    mask = torch.arange(max(LENGTHS)).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)
    return hidden, mask


@pytest.mark.parametrize("pooling_class", [MeanPooling, StatisticsPooling, AttentiveStatisticsPooling])
def test_pooling_ignores_whatever_is_in_padded_positions(pooling_class):
    torch.manual_seed(0)
    pooling = pooling_class(8).eval()
    hidden, mask = _hidden_and_mask()
    pooled = pooling(hidden, mask)
    garbage = hidden.clone()
    garbage[~mask] = 1e3 * torch.randn(int((~mask).sum()), 8)
    torch.testing.assert_close(pooling(garbage, mask), pooled, atol=1e-6, rtol=1e-6)
    for i, n in enumerate(LENGTHS):
        alone = pooling(hidden[i : i + 1, :n])  # no mask: every position is real
        torch.testing.assert_close(pooled[i], alone[0], atol=1e-6, rtol=1e-6)


def test_mean_pooling_is_the_mean_of_real_positions_only():
    hidden, mask = _hidden_and_mask()
    pooled = MeanPooling(8)(hidden, mask)
    for i, n in enumerate(LENGTHS):
        torch.testing.assert_close(pooled[i], hidden[i, :n].mean(0))
    # The unmasked average over the padded sequence (what the authors' code did) is different.
    assert not torch.allclose(pooled[1], hidden[1].mean(0), atol=1e-3)


def test_statistics_pooling_is_mean_and_population_std_of_real_positions():
    hidden, mask = _hidden_and_mask()
    pooled = StatisticsPooling(8)(hidden, mask)
    assert pooled.shape == (len(LENGTHS), 16)
    for i, n in enumerate(LENGTHS):
        real = hidden[i, :n].numpy()
        expected = np.concatenate([real.mean(0), real.std(0)])  # numpy's std is the population std
        np.testing.assert_allclose(pooled[i].numpy(), expected, atol=1e-5, rtol=1e-5)


def _waves(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in (1.1, 0.45, 0.8)]


@pytest.mark.parametrize(
    "kind,pooling,layer_weighting",
    [
        ("wavlm", "attentive_stats", "last"),
        ("wavlm", "mean", "weighted_sum"),
        ("wav2vec2", "attentive_stats", "weighted_sum"),
        ("wav2vec2", "mean", "last"),
        ("wav2vec2", "stats", "weighted_sum"),
        ("hubert", "attentive_stats", "last"),
    ],
)
def test_speech_padded_batch_equals_each_utterance_alone(kind, pooling, layer_weighting):
    torch.manual_seed(0)
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone(kind), task="attributes", pooling=pooling, layer_weighting=layer_weighting
    )
    model = SERModelForSpeech(config).eval()
    extractor = build_feature_extractor(config)
    waves = _waves()
    batch = extractor(waves, sampling_rate=16000, padding=True, return_attention_mask=True, return_tensors="pt")
    assert batch["attention_mask"].sum(-1).tolist() == [len(w) for w in waves]  # really padded
    with torch.no_grad():
        pooled = model.pool(**batch)
        for i, wave in enumerate(waves):
            alone = model.pool(**extractor([wave], sampling_rate=16000, return_attention_mask=True, return_tensors="pt"))
            torch.testing.assert_close(pooled[i], alone[0], atol=1e-5, rtol=1e-5)
        # The heads read the same vector: forward's pooled_output is pool().
        torch.testing.assert_close(model(**batch).pooled_output, pooled)


def test_text_padded_batch_equals_each_transcript_alone():
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    config = SERTextConfig(backbone_config=tiny_text_backbone(), task="multitask", labels=["a", "b"])
    model = SERModelForText(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path())
    texts = ["what a wonderful morning that was", "awful", "the meeting on monday was rather ordinary"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert len(set(batch["attention_mask"].sum(-1).tolist())) == 3  # three lengths: padding happened
    with torch.no_grad():
        pooled = model.pool(**batch)
        for i, text in enumerate(texts):
            alone = model.pool(**tokenizer([text], return_tensors="pt"))
            torch.testing.assert_close(pooled[i], alone[0], atol=1e-5, rtol=1e-5)
