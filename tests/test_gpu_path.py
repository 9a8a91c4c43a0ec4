"""The GPU path, checked on CPU: activation checkpointing per backbone family, and under DDP with layerdrop."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from ser_hf.configuration import SERSpeechConfig
from ser_hf.modeling import SERModelForSpeech, build_feature_extractor
from ser_hf.tiny import tiny_speech_backbone

SCRIPT = os.path.join(os.path.dirname(__file__), "checkpointing_ddp_script.py")


@pytest.mark.parametrize("kind", ["wavlm", "wav2vec2", "hubert", "whisper"])
def test_checkpointing_gives_the_same_gradients_for_every_backbone_family(kind):
    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(kind, num_layers=2, mask_time_prob=0.0), labels=["a", "b"],
                             task="categorical", head_hidden_size=8, head_dropout=0.0, freeze_feature_encoder=False,
                             max_audio_seconds=1.0)
    model = SERModelForSpeech(config).train()
    for module in model.modules():  # no dropout, no layerdrop: both runs must see the same graph
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if hasattr(model.backbone.config, "layerdrop"):
        model.backbone.config.layerdrop = 0.0
    extractor = build_feature_extractor(config)
    waves = [torch.randn(16000).numpy() * 0.1, torch.randn(12000).numpy() * 0.1]
    batch = dict(extractor(waves, sampling_rate=16000, padding=True if kind != "whisper" else "max_length",
                           return_attention_mask=True, return_tensors="pt"))
    labels = torch.tensor([0, 1])

    def grads():
        model.zero_grad()
        model(**batch, labels=labels).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, again = grads(), grads()  # the CNN's CPU backward is not bitwise repeatable: measure that noise
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.backbone.modules())
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        noise = (plain[name] - again[name]).abs().max().item()
        difference = (plain[name] - checkpointed[name]).abs().max().item()
        assert difference <= 3 * noise + 1e-5, (name, difference, noise)


def _launch(manifest, out, *extra):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--main_process_port", str(port), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", SCRIPT, "--manifest", manifest, "--out", str(out), *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_checkpointing_with_layerdrop_trains_under_ddp(tiny_manifest, tmp_path):
    done = _launch(tiny_manifest, tmp_path / "fixed")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    result = json.loads((tmp_path / "fixed" / "result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 6 and math.isfinite(result["loss"])
    assert result["find_unused"] is True
    # The control: the stock setting (no unused-parameter detection) hits the known DDP error.
    stock = _launch(tiny_manifest, tmp_path / "stock", "--stock")
    assert stock.returncode != 0 and "Expected to have finished reduction" in stock.stderr


def test_lean_wavlm_attention_matches_the_stock_layer_and_keeps_no_weights():
    from ser_hf.modeling.lean_attention import use_lean_wavlm_attention

    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm", num_layers=2, mask_time_prob=0.0),
                             labels=["a", "b"], task="categorical", head_dropout=0.0, freeze_feature_encoder=False)
    lean = SERModelForSpeech(config).eval()
    stock = SERModelForSpeech(config).eval()
    stock.load_state_dict(lean.state_dict())
    for module in stock.backbone.modules():  # undo the patch on the reference copy
        module.__dict__.pop("torch_multi_head_self_attention", None)
    assert use_lean_wavlm_attention(torch.nn.Sequential()) == 0
    values = torch.randn(2, 16000) * 0.1
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    outputs = []
    for model in (lean, stock):
        out = model(input_values=values, attention_mask=mask, labels=torch.tensor([0, 1]))
        out.loss.backward()
        outputs.append((out.logits.detach(), model.backbone.encoder.layers[1].attention.q_proj.weight.grad.clone()))
    torch.testing.assert_close(outputs[0][0], outputs[1][0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outputs[0][1], outputs[1][1], atol=1e-5, rtol=1e-4)
    layer = lean.backbone.encoder.layers[0].attention
    hidden = torch.randn(2, 10, layer.embed_dim)
    assert layer(hidden)[1] is None  # nothing of size frames x frames is returned (or kept for it)


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert", "whisper"])
def test_backbones_with_sdpa_support_use_it(kind):
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone(kind, num_layers=1), labels=["a", "b"])
    assert SERModelForSpeech(config).backbone.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("checkpointing", [False, True])
def test_bf16_autocast_training_step_matches_float32(checkpointing):
    """A whole multitask step (focal + CCC) under CPU bf16 autocast: the loss is float32, finite and
    within bf16's precision of the float32 step; gradients point the same way."""
    torch.manual_seed(0)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm", num_layers=2, mask_time_prob=0.0, layerdrop=0.0),
                             labels=["a", "b", "c"], task="multitask", head_hidden_size=16, head_dropout=0.0,
                             freeze_feature_encoder=False, max_audio_seconds=1.0)
    model = SERModelForSpeech(config).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    if checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    from ser_hf.losses import build_loss

    focal, ccc = build_loss("focal", num_classes=3, focal_gamma=2.0), build_loss("ccc")
    batch = dict(build_feature_extractor(config)([torch.randn(16000).numpy() * 0.1 for _ in range(4)], sampling_rate=16000,
                                                 padding=True, return_attention_mask=True, return_tensors="pt"))
    labels, attributes = torch.tensor([0, 1, 2, 0]), torch.rand(4, 3)

    def step(autocast: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(**batch)
            loss = focal(out.logits, labels) + ccc(out.attributes, attributes)
        loss.backward()
        grad = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
        return loss, grad

    loss32, grad32 = step(False)
    loss16, grad16 = step(True)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16) and torch.isfinite(grad16).all()
    assert abs(loss16.item() - loss32.item()) <= 0.05 * abs(loss32.item()) + 1e-3, (loss16.item(), loss32.item())
    assert torch.nn.functional.cosine_similarity(grad16, grad32, dim=0) > 0.95
