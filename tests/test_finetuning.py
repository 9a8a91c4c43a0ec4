"""Fine-tuning policies, LoRA through SERTrainer, learning-rate groups under peft, gradient checkpointing."""
from __future__ import annotations

import logging
import os

import pytest
import torch
from safetensors.torch import load_file

from ser_hf.configuration import SERSpeechConfig, SERTextConfig
from ser_hf.data.collators import SERTargets, SpeechCollator
from ser_hf.finetuning import (
    apply_finetuning_policy,
    apply_lora,
    is_lora_model,
    load_ser_model,
    save_checkpoint,
    trainable_parameter_counts,
    transformer_layers,
)
from ser_hf.modeling import SERModelForSpeech, SERModelForText, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone, tiny_text_backbone
from ser_hf.trainer import SERTrainer
from ser_hf.training_args import SERTrainingArguments

from conftest import TINY_LABELS

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  layerdrop=0.0, mask_time_prob=0.0)
LRS = dict(backbone_learning_rate=1e-3, pooling_learning_rate=2e-3, head_learning_rate=3e-3)


def speech_model(hidden_size=32, num_layers=3, seed=0, **config):
    torch.manual_seed(seed)
    values = dict(labels=TINY_LABELS, head_hidden_size=16, head_dropout=0.0, max_audio_seconds=1.0,
                  layer_weighting="weighted_sum", attention_pooling_hidden_size=16)
    values.update(config)
    backbone = tiny_speech_backbone("wavlm", hidden_size=hidden_size, num_layers=num_layers, **NO_DROPOUT)
    return SERModelForSpeech(SERSpeechConfig(backbone_config=backbone, **values))


def numel(parameters) -> int:
    return sum(p.numel() for p in parameters)


def trainable(model) -> int:
    return numel(p for p in model.parameters() if p.requires_grad)


def make_trainer(model, corpus, output_dir, **overrides):
    extractor = build_feature_extractor(model.config)
    collator = SpeechCollator(extractor, SERTargets.for_config(model.config), max_seconds=1.0)
    values = dict(output_dir=str(output_dir), per_device_train_batch_size=4, learning_rate=1e-2, max_steps=2,
                  report_to=[], save_strategy="no", disable_tqdm=True, use_cpu=True, seed=0, **LRS)
    values.update(overrides)
    return SERTrainer(model=model, args=SERTrainingArguments(**values), train_dataset=corpus["train"],
                      data_collator=collator, processing_class=extractor)


# ---------------------------------------------------------------------------------------------- policies
def test_each_policy_freezes_exactly_its_part():
    model = speech_model()
    backbone = model.backbone
    ser_part = numel(p for n, p in model.named_parameters() if not n.startswith("backbone."))
    front_end = numel(backbone.feature_extractor.parameters())
    top_layer = numel(transformer_layers(backbone)[2].parameters())
    total = numel(model.parameters())

    apply_finetuning_policy(model, "full")
    assert trainable(model) == total
    assert backbone.feature_extractor._requires_grad and model.config.freeze_feature_encoder is False

    apply_finetuning_policy(model, "freeze_feature_encoder")
    assert trainable(model) == total - front_end
    assert not backbone.feature_extractor._requires_grad and model.config.freeze_feature_encoder is True

    apply_finetuning_policy(model, "frozen_backbone")
    assert trainable(model) == ser_part
    assert model.layer_weights.requires_grad and all(p.requires_grad for p in model.pooling.parameters())

    apply_finetuning_policy(model, "freeze_bottom_layers", freeze_bottom_layers=2)
    assert trainable(model) == ser_part + top_layer
    assert all(p.requires_grad for p in transformer_layers(backbone)[2].parameters())
    assert not any(p.requires_grad for p in backbone.encoder.pos_conv_embed.parameters())

    with pytest.raises(ValueError, match="encoder has 3 layers"):
        apply_finetuning_policy(model, "freeze_bottom_layers", freeze_bottom_layers=4)
    with pytest.raises(ValueError, match="not a valid FinetuningPolicy"):
        apply_finetuning_policy(model, "partial")


def test_bottom_layers_of_a_text_encoder():
    torch.manual_seed(0)
    model = SERModelForText(SERTextConfig(backbone_config=tiny_text_backbone(num_layers=3, vocab_size=50), labels=TINY_LABELS))
    apply_finetuning_policy(model, "freeze_bottom_layers", freeze_bottom_layers=1)
    layers = model.backbone.encoder.layer
    head_and_pooling = numel(p for n, p in model.named_parameters() if not n.startswith("backbone."))
    assert trainable(model) == head_and_pooling + numel(layers[1].parameters()) + numel(layers[2].parameters())
    assert not any(p.requires_grad for p in model.backbone.embeddings.parameters())


def test_training_arguments_reject_contradictions(tmp_path):
    base = dict(output_dir=str(tmp_path), report_to=[])
    assert SERTrainingArguments(**base).finetuning_policy is None  # the model as built
    with pytest.raises(ValueError, match="finetuning_policy='partial' is not valid"):
        SERTrainingArguments(**base, finetuning_policy="partial")
    with pytest.raises(ValueError, match="only used with finetuning_policy=freeze_bottom_layers"):
        SERTrainingArguments(**base, freeze_bottom_layers=2)
    with pytest.raises(ValueError, match="must be >= 1"):
        SERTrainingArguments(**base, finetuning_policy="freeze_bottom_layers")
    with pytest.raises(ValueError, match="contradicts"):
        SERTrainingArguments(**base, use_lora=True, finetuning_policy="full")
    with pytest.raises(ValueError, match="use_lora is False"):
        SERTrainingArguments(**base, lora_target_modules=["q_proj"])
    with pytest.raises(ValueError, match="lora_r >= 1"):
        SERTrainingArguments(**base, use_lora=True, lora_r=0)


def test_a_run_never_mixes_checkpoint_kinds_in_output_dir(tiny_corpus, tmp_path):
    save_checkpoint(speech_model(), tmp_path)
    with pytest.raises(ValueError, match="holds a full checkpoint of an earlier run"):
        make_trainer(load_ser_model(tmp_path), tiny_corpus, tmp_path, use_lora=True)


def test_trainer_applies_policy_and_logs_counts(tiny_corpus, tmp_path, caplog):
    model = speech_model()
    ser_part = numel(p for n, p in model.named_parameters() if not n.startswith("backbone."))
    with caplog.at_level(logging.INFO, logger="ser_hf.trainer"):
        trainer = make_trainer(model, tiny_corpus, tmp_path, finetuning_policy="frozen_backbone")
    assert f"trainable parameters: {ser_part:,} of" in caplog.text
    assert "backbone 0," in caplog.text
    trainer.train()
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimised for p in model.backbone.parameters())


# ---------------------------------------------------------------------------------------------- LoRA
@pytest.fixture(scope="module")
def lora_run(tiny_corpus, tmp_path_factory):
    """Two SERTrainer steps with LoRA on a randomly initialised encoder (hidden 256, 4 layers)."""
    output_dir = tmp_path_factory.mktemp("lora_run")
    model = speech_model(hidden_size=256, num_layers=4, head_hidden_size=64, attention_pooling_hidden_size=64)
    handler = _ListHandler()
    logging.getLogger("ser_hf.trainer").addHandler(handler)
    logging.getLogger("ser_hf.trainer").setLevel(logging.INFO)
    try:
        trainer = make_trainer(model, tiny_corpus, output_dir, use_lora=True, lora_r=8, lora_dropout=0.0)
    finally:
        logging.getLogger("ser_hf.trainer").removeHandler(handler)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    trainer.save_model(str(output_dir / "adapter"))
    return dict(trainer=trainer, before=before, log="\n".join(handler.messages), output_dir=output_dir)


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_lora_trains_only_adapters_pooling_and_head(lora_run):
    trainer = lora_run["trainer"]
    model = trainer.model
    assert is_lora_model(model)
    named = dict(model.named_parameters())
    trained = {n for n, p in named.items() if p.requires_grad}
    lora = {n for n in named if ".lora_" in n}
    assert lora and all(".feed_forward." in n for n in lora)  # WavLM default: its feed-forward layers
    kept_as_is = {n for n in named if ".original_module." in n}  # peft's frozen spare copies
    ser_part = {n for n in named if ".backbone." not in n and n not in kept_as_is}
    assert trained == lora | ser_part
    assert any(n.endswith("layer_weights") for n in trained)

    counts = trainable_parameter_counts(model)
    assert counts["backbone"] == numel(named[n] for n in lora)
    assert counts["trainable"] == numel(named[n] for n in trained)
    assert f"trainable parameters: {counts['trainable']:,} of {counts['total']:,}" in lora_run["log"]
    assert f"backbone (LoRA adapters) {counts['backbone']:,}" in lora_run["log"]
    assert counts["trainable"] < 0.05 * counts["total"]


def test_lora_keeps_encoder_weights_and_moves_adapters(lora_run):
    model, before = lora_run["trainer"].model, lora_run["before"]
    base = load_file(os.path.join(lora_run["output_dir"], "base_model", "model.safetensors"))
    state = model.get_base_model().state_dict()
    encoder = {k.replace(".base_layer.", "."): v for k, v in state.items() if k.startswith("backbone.") and ".lora_" not in k}
    assert encoder.keys() == {k for k in base if k.startswith("backbone.")}
    assert all(torch.equal(encoder[k], base[k]) for k in encoder)
    after = dict(model.named_parameters())
    for name in [n for n in after if ".lora_A." in n or ".lora_B." in n]:
        assert not torch.equal(after[name], before[name]), name
    for suffix in ("layer_weights", "pooling.modules_to_save.default.scorer.0.weight", "classifier.modules_to_save.default.5.weight"):
        name = next(n for n in after if n.endswith(suffix))
        assert not torch.equal(after[name], before[name]), name


def test_learning_rate_groups_follow_names_under_peft(lora_run):
    trainer = lora_run["trainer"]
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    expected = {"backbone": LRS["backbone_learning_rate"], "pooling": LRS["pooling_learning_rate"],
                "head": LRS["head_learning_rate"]}
    seen = set()
    for group in trainer.optimizer.param_groups:
        group_names = [names[id(p)] for p in group["params"]]
        if ".lora_" in group_names[0]:
            part = "backbone"
        elif ".pooling." in group_names[0] or group_names[0].endswith("layer_weights"):
            part = "pooling"
        else:
            part = "head"
        assert group["initial_lr"] == expected[part]
        assert all((".lora_" in n) == (part == "backbone") for n in group_names)
        seen.add(part)
    assert seen == {"backbone", "pooling", "head"}


def test_lora_checkpoint_is_small_and_reloads(lora_run):
    adapter_dir = lora_run["output_dir"] / "adapter"
    files = set(os.listdir(adapter_dir))
    assert {"adapter_config.json", "adapter_model.safetensors", "preprocessor_config.json"} <= files
    assert not any(f.startswith("model") for f in files)
    from huggingface_hub import ModelCard

    card = ModelCard.load(adapter_dir / "README.md")  # the adapter card, parsed by huggingface_hub
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    full = os.path.getsize(lora_run["output_dir"] / "base_model" / "model.safetensors")
    assert os.path.getsize(adapter_dir / "adapter_model.safetensors") < 0.05 * full

    model = lora_run["trainer"].model.eval()
    reloaded = load_ser_model(adapter_dir).eval()
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = model(input_values=wave).logits, reloaded(input_values=wave).logits
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    assert torch.equal(reloaded.get_base_model().layer_weights, model.get_base_model().layer_weights)


def test_adapters_on_layers_the_encoder_never_calls_are_refused(tmp_path):
    model = speech_model()
    save_checkpoint(model, tmp_path / "base")
    with pytest.raises(ValueError, match="never called"):
        apply_lora(load_ser_model(tmp_path / "base"), target_modules=["q_proj", "v_proj"])
    with pytest.raises(ValueError, match="no encoder module matches"):
        apply_lora(load_ser_model(tmp_path / "base"), target_modules=["qkv"])


def test_text_default_targets_are_attention_only(tmp_path):
    torch.manual_seed(0)
    model = SERModelForText(SERTextConfig(backbone_config=tiny_text_backbone(num_layers=2, vocab_size=50), labels=TINY_LABELS))
    save_checkpoint(model, tmp_path / "base")
    peft_model = apply_lora(load_ser_model(tmp_path / "base"))
    adapted = sorted({n.split(".lora_A")[0].split(".layer.", 1)[1] for n, _ in peft_model.named_parameters() if ".lora_A." in n})
    assert adapted == [f"{i}.attention.{m}" for i in range(2) for m in ("output.dense", "self.key", "self.query", "self.value")]


@pytest.mark.parametrize("use_lora", [False, True])
def test_gradient_checkpointing_recomputes_layers_and_trains(tiny_corpus, tmp_path, use_lora):
    model = speech_model(num_layers=2, freeze_feature_encoder=False)
    trainer = make_trainer(model, tiny_corpus, tmp_path, max_steps=1, activation_checkpointing=True, use_lora=use_lora,
                           **({} if use_lora else {"finetuning_policy": "freeze_feature_encoder"}))
    calls = []
    layer = transformer_layers(model.backbone)[0]
    layer.feed_forward.register_forward_pre_hook(lambda *_: calls.append(1))  # the layer's own forward is wrapped
    watched = {n: p.detach().clone() for n, p in trainer.model.named_parameters()
               if p.requires_grad and ".encoder.layers.0." in n}
    assert watched
    trainer.train()
    assert layer.gradient_checkpointing
    assert len(calls) == 2  # forward, and again during backward
    current = dict(trainer.model.named_parameters())
    # after one step LoRA's A matrices have had no gradient yet (B starts at zero)
    moved = [n for n, value in watched.items() if n.endswith("weight") and ".lora_A." not in n]
    assert moved and all(not torch.equal(current[n], watched[n]) for n in moved)
