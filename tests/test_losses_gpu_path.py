"""The losses on the GPU path: no host-device sync, and float32 results under bf16/fp16 autocast.

No GPU is needed: a forward pass on ``meta`` tensors fails on any ``.item()``, ``bool(tensor)`` or
boolean-mask indexing (the operations that force a host-device sync on CUDA), so running every loss
on meta tensors proves the hot path has none. Autocast is checked with CPU bf16 autocast.
"""
from __future__ import annotations

import pytest
import torch

from ser_hf.losses import build_loss

COUNTS = [30, 10, 5, 2]
CATEGORICAL = [
    ("ce", {}),
    ("ce", {"label_smoothing": 0.1}),
    ("weighted_ce", {"class_counts": COUNTS}),
    ("focal", {}),
    ("focal", {"class_counts": COUNTS, "focal_alpha_from_weights": True, "class_weighting": "sqrt_inverse"}),
    ("focal", {"focal_gamma": 0.5}),
]


@pytest.mark.parametrize("name,options", CATEGORICAL)
def test_categorical_losses_run_on_meta_tensors_so_they_never_sync(name, options):
    loss = build_loss(name, num_classes=4, **options).to("meta")
    logits = torch.empty(8, 4, device="meta", requires_grad=True)
    value = loss(logits, torch.empty(8, dtype=torch.long, device="meta"))
    assert value.shape == () and value.dtype == torch.float32 and value.requires_grad


def test_soft_and_attribute_losses_run_on_meta_tensors():
    soft = build_loss("soft_ce", num_classes=4, class_counts=COUNTS, class_weighting="inverse").to("meta")
    assert soft(torch.empty(8, 4, device="meta"), torch.empty(8, 4, device="meta")).shape == ()
    for name in ("ccc", "mse"):
        loss = build_loss(name, attribute_weights=[1.0, 2.0, 1.0]).to("meta")
        assert loss(torch.empty(8, 3, device="meta"), torch.empty(8, 3, device="meta")).shape == ()


def test_empty_batches_still_give_a_graph_connected_zero_without_branching():
    logits = torch.randn(4, 3, requires_grad=True)
    ignored = torch.full((4,), -100)
    for name, options in (("ce", {}), ("weighted_ce", {"class_counts": [1, 2, 3]}), ("focal", {})):
        value = build_loss(name, num_classes=3, **options)(logits, ignored)
        assert value.item() == 0.0
        value.backward()
        assert torch.isfinite(logits.grad).all()
        logits.grad = None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_under_cpu_autocast_are_float32_and_match_float32(dtype):
    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Mish(), torch.nn.Linear(32, 7))
    features = torch.randn(64, 16)
    labels = torch.randint(0, 4, (64,))
    labels[::9] = -100
    attributes = torch.rand(64, 3)
    attributes[::5, 1] = float("nan")
    losses = {
        "focal": (build_loss("focal", num_classes=4, class_counts=[20, 20, 10, 7], focal_alpha_from_weights=True), "cat"),
        "ce": (build_loss("ce", num_classes=4, label_smoothing=0.1), "cat"),
        "ccc": (build_loss("ccc"), "att"),
        "mse": (build_loss("mse"), "att"),
    }
    for name, (loss, kind) in losses.items():
        def value(autocast: bool) -> torch.Tensor:
            with torch.autocast("cpu", dtype=dtype, enabled=autocast):
                out = head(features)
                if autocast:
                    assert out.dtype == dtype  # the model's output really is half precision
                return loss(out[:, :4], labels) if kind == "cat" else loss(torch.sigmoid(out[:, 4:]), attributes)

        half, full = value(True), value(False)
        assert half.dtype == torch.float32, name
        assert torch.isfinite(half), name
        torch.testing.assert_close(half, full, rtol=3e-2, atol=3e-2, msg=name)
        half.backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters()), name
        head.zero_grad()
