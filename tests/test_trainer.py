"""SERTrainer: every loss x sampler x activation trains; class weights, lr groups, whole-set metrics,
gradient accumulation and seeded reproducibility."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, f1_score

from ser_hf.configuration import SERSpeechConfig
from ser_hf.data.collators import SERTargets, SpeechCollator
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone
from ser_hf.trainer import SERTrainer
from ser_hf.training_args import SERTrainingArguments

from conftest import TINY_LABELS

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  layerdrop=0.0, mask_time_prob=0.0)


def make_trainer(corpus, tmp_path, *, task="categorical", activation="mish", seed=0, model_seed=0, **arg_overrides):
    torch.manual_seed(model_seed)
    config = SERSpeechConfig(
        backbone_config=tiny_speech_backbone(**NO_DROPOUT), task=task, labels=TINY_LABELS, activation=activation,
        head_hidden_size=16, head_dropout=0.0, max_audio_seconds=1.0, freeze_feature_encoder=False,
    )
    model = SERModelForSpeech(config)
    extractor = build_feature_extractor(config)
    collator = SpeechCollator(extractor, SERTargets.for_config(config), max_seconds=1.0)
    values = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=5,
                  learning_rate=1e-3, max_steps=2, report_to=[], save_strategy="no", disable_tqdm=True, seed=seed,
                  use_cpu=True, logging_steps=1)
    values.update(arg_overrides)
    args = SERTrainingArguments(**values)
    return SERTrainer(model=model, args=args, train_dataset=corpus["train"], eval_dataset=corpus["dev"],
                      data_collator=collator, processing_class=extractor)


COMBINATIONS = list(itertools.product(["ce", "weighted_ce", "focal"], ["none", "up", "down", "weighted"], ["relu", "mish"]))


@pytest.mark.parametrize("loss,sampler,activation", COMBINATIONS)
def test_every_strategy_combination_trains(tiny_corpus, tmp_path, loss, sampler, activation):
    trainer = make_trainer(tiny_corpus, tmp_path, loss=loss, sampler=sampler, activation=activation, max_steps=1)
    before = [p.detach().clone() for p in trainer.model.classifier.parameters()]
    result = trainer.train()
    assert np.isfinite(result.training_loss)
    after = list(trainer.model.classifier.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))


def test_class_weights_come_from_training_split(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, loss="weighted_ce")
    counts = np.array([6, 4, 2])
    assert trainer.class_counts == counts.tolist()
    expected = counts.sum() / (len(counts) * counts)
    np.testing.assert_allclose(trainer.categorical_loss.weight.numpy(), expected, rtol=1e-6)


def test_focal_with_class_weighting_uses_alpha(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, loss="focal", focal_gamma=1.5, class_weighting="sqrt_inverse")
    assert trainer.categorical_loss.gamma == 1.5
    assert trainer.categorical_loss.alpha is not None


def test_separate_learning_rates(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, backbone_learning_rate=1e-5, head_learning_rate=1e-3,
                           pooling_learning_rate=5e-4)
    optimizer = trainer.create_optimizer()
    by_lr = {}
    for group in optimizer.param_groups:
        by_lr.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    model = trainer.model
    assert {id(p) for p in model.backbone.parameters() if p.requires_grad} <= by_lr[1e-5]
    assert {id(p) for p in model.pooling.parameters()} <= by_lr[5e-4]
    assert {id(p) for p in model.classifier.parameters()} <= by_lr[1e-3]


def test_eval_metrics_cover_whole_eval_set(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, task="multitask", max_steps=1)
    metrics = trainer.evaluate()  # 12 dev rows in batches of 5: 5 + 5 + 2
    dev = tiny_corpus["dev"]
    output = trainer.predict(dev)
    logits, attributes = output.predictions
    assert logits.shape[0] == len(dev) == 12
    truth = np.array([TINY_LABELS.index(label) for label in dev["label"]])
    predicted = logits.argmax(-1)
    assert metrics["eval_macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro", labels=[0, 1, 2]))
    assert metrics["eval_uar"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert {"eval_ccc_arousal", "eval_ccc_valence", "eval_ccc_dominance", "eval_ccc_mean"} <= set(metrics)
    assert trainer.args.metric_for_best_model == "macro_f1"


def test_attribute_model_selects_best_by_mean_ccc(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, task="attributes", max_steps=1)
    assert trainer.args.metric_for_best_model == "ccc_mean"
    assert trainer.categorical_loss is None
    metrics = trainer.evaluate()
    assert -1.0 <= metrics["eval_ccc_mean"] <= 1.0


def test_gradient_accumulation_matches_one_big_batch(tiny_corpus, tmp_path):
    """CE is a per-utterance mean: 2 x 4 accumulated == 1 x 8 (same 8 utterances, one SGD step)."""
    common = dict(max_steps=1, optim="sgd", learning_rate=0.5, warmup_steps=0, lr_scheduler_type="constant",
                  group_by_length=False)  # the same 8 utterances in both runs
    big = make_trainer(tiny_corpus, tmp_path / "big", per_device_train_batch_size=8, **common)
    big.train()
    small = make_trainer(tiny_corpus, tmp_path / "small", per_device_train_batch_size=4,
                         gradient_accumulation_steps=2, **common)
    small.train()
    for (name, a), b in zip(big.model.named_parameters(), small.model.parameters()):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)


def test_same_seed_same_metrics(tiny_corpus, tmp_path):
    runs = []
    for attempt in range(2):
        trainer = make_trainer(tiny_corpus, tmp_path / str(attempt), sampler="up", max_steps=3, task="multitask")
        trainer.train()
        runs.append(trainer.evaluate())
    for key in ("eval_macro_f1", "eval_loss", "eval_ccc_mean"):
        assert runs[0][key] == runs[1][key]


def test_sampler_without_classes_is_refused(tiny_corpus, tmp_path):
    trainer = make_trainer(tiny_corpus, tmp_path, task="attributes", sampler="up")
    with pytest.raises(ValueError, match="balances classes"):
        trainer.train()


def test_bad_strategy_names_are_clear(tmp_path):
    with pytest.raises(ValueError, match="sampler='sideways'"):
        SERTrainingArguments(output_dir=str(tmp_path), sampler="sideways")
    with pytest.raises(ValueError, match="loss"):
        SERTrainingArguments(output_dir=str(tmp_path), loss="hinge")
