"""Memory-lean WavLM attention: the same computation without materialising attention weights.

Why: transformers' WavLM attention calls ``F.multi_head_attention_forward(need_weights=True)``, which
takes the explicit softmax path and keeps a batch x heads x frames x frames probability tensor for
backward in every layer (about 17.7 GB at batch 32 x 12 s over WavLM-large's 24 layers). A SER model
never reads those weights, so its WavLM layers call the same function with ``need_weights=False``,
which runs PyTorch's fused ``scaled_dot_product_attention`` (memory-efficient kernel on GPUs) with the
gated relative-position bias as the additive mask. Outputs and gradients are unchanged (tested).
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def _attention_without_weights(self, hidden_states, attention_mask, gated_position_bias, *_output_attentions):
    query = key = value = hidden_states.transpose(0, 1)
    key_padding_mask = attention_mask.ne(1) if attention_mask is not None else None
    if key_padding_mask is not None:
        # One additive float mask (bias + padding) instead of a bool and a float one.
        bsz, frames = key_padding_mask.shape
        padding = torch.zeros_like(key_padding_mask, dtype=gated_position_bias.dtype).masked_fill(
            key_padding_mask, float("-inf")
        )
        gated_position_bias = gated_position_bias + padding.repeat_interleave(self.num_heads, dim=0)[:, None, :]
    attn_output, _ = F.multi_head_attention_forward(
        query, key, value, self.embed_dim, self.num_heads, torch.empty([0]),
        torch.cat((self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)), None, None, False, self.dropout,
        self.out_proj.weight, self.out_proj.bias, self.training, None,
        need_weights=False, attn_mask=gated_position_bias, use_separate_proj_weight=True,
        q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight, v_proj_weight=self.v_proj.weight,
    )
    return attn_output.transpose(0, 1), None


def use_lean_wavlm_attention(encoder: torch.nn.Module) -> int:
    """Switch every WavLM attention layer of ``encoder`` to the weight-free path; returns how many."""
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    count = 0
    for module in encoder.modules():
        if isinstance(module, WavLMAttention):
            module.torch_multi_head_self_attention = types.MethodType(_attention_without_weights, module)
            count += 1
    return count


__all__ = ["use_lean_wavlm_attention"]
