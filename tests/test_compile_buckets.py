"""Opt-in torch.compile over variable-length batches: length buckets bound the compiled graphs and
the bucket padding stays masked (same outputs as the unpadded batch)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_hf.configuration import SERSpeechConfig
from ser_hf.data.shape_buckets import BucketPaddingCollator, bucket_length, pad_batch_to_bucket, shape_count_bound
from ser_hf.modeling import SERModelForSpeech
from ser_hf.tiny import tiny_speech_backbone

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
                  layerdrop=0.0, mask_time_prob=0.0)


def _model(seed=0):
    torch.manual_seed(seed)
    config = SERSpeechConfig(backbone_config=tiny_speech_backbone("wavlm", **NO_DROPOUT), labels=["a", "b", "c"],
                             task="categorical", pooling="attentive_stats", head_dropout=0.0)
    return SERModelForSpeech(config).eval()


def _batch(lengths, seed=0):
    rng = np.random.default_rng(seed)
    longest = max(lengths)
    values = torch.zeros(len(lengths), longest)
    mask = torch.zeros(len(lengths), longest, dtype=torch.long)
    for i, n in enumerate(lengths):
        values[i, :n] = torch.from_numpy(rng.standard_normal(n).astype(np.float32))
        mask[i, :n] = 1
    return {"input_values": values, "attention_mask": mask, "labels": torch.zeros(len(lengths), dtype=torch.long)}


def test_bucket_padding_rounds_up_and_masks():
    assert [bucket_length(n, 4000) for n in (1, 4000, 4001, 7999)] == [4000, 4000, 8000, 8000]
    assert bucket_length(123, 0) == 123 and shape_count_bound(12.0, 0.5) == 24 and shape_count_bound(None, 0.5) is None
    batch = pad_batch_to_bucket(_batch([5000, 3000]), audio_multiple=4000, text_multiple=16)
    assert batch["input_values"].shape == (2, 8000) and batch["attention_mask"].shape == (2, 8000)
    assert batch["attention_mask"].sum(1).tolist() == [5000, 3000] and batch["labels"].shape == (2,)
    text = pad_batch_to_bucket({"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 5)},
                               audio_multiple=4000, text_multiple=16, pad_token_id=7)
    assert text["input_ids"].shape == (2, 16) and text["input_ids"][0, 5:].eq(7).all() and text["attention_mask"][:, 5:].eq(0).all()
    assert BucketPaddingCollator.wrap(len, bucket_seconds=0, bucket_tokens=0) is len  # both off: no wrapper
    import pickle
    from types import SimpleNamespace

    wrapped = BucketPaddingCollator.wrap(SimpleNamespace(window_long_inputs=True, max_seconds=3.0), bucket_seconds=0.5,
                                         bucket_tokens=16)
    assert wrapped.audio_multiple == 8000 and wrapped.window_long_inputs and wrapped.max_seconds == 3.0  # settings show through
    assert pickle.loads(pickle.dumps(wrapped)).max_seconds == 3.0  # dataloader workers get a working copy


def test_bucket_padding_keeps_the_logits():
    model = _model()
    lengths = [11000, 7300, 5200]
    with torch.no_grad():
        plain = model(**{k: v for k, v in _batch(lengths).items() if k != "labels"}).logits
        padded_batch = pad_batch_to_bucket(_batch(lengths), audio_multiple=8000, text_multiple=0)
        assert padded_batch["input_values"].shape[-1] == 16000
        padded = model(**{k: v for k, v in padded_batch.items() if k != "labels"}).logits
    torch.testing.assert_close(padded, plain, atol=1e-5, rtol=1e-4)


def _compiled_graphs(lengths, multiple):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model()
    compiled = torch.compile(model, backend="eager", dynamic=False)
    with torch.no_grad():
        for k, n in enumerate(lengths):
            batch = pad_batch_to_bucket(_batch([n, max(1000, n // 2)], seed=k), audio_multiple=multiple, text_multiple=0)
            out = compiled(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits
            assert torch.isfinite(out).all()
    graphs = counters["stats"]["unique_graphs"]
    torch._dynamo.reset()
    return graphs


def test_buckets_bound_the_number_of_compiled_graphs():
    lengths = np.random.default_rng(0).integers(2000, 16000, size=12).tolist()  # 12 distinct lengths up to 1 s
    assert len(set(lengths)) == 12
    bucket = 4000  # 0.25 s: at most 4 shapes up to 1 s
    bucketed = _compiled_graphs(lengths, bucket)
    assert bucketed <= shape_count_bound(1.0, 0.25) == 4
    assert bucketed == len({bucket_length(n, bucket) for n in lengths})
    assert _compiled_graphs(lengths[:6], 0) == 6  # static shapes without buckets: one graph per length


def test_trainer_with_torch_compile_trains_on_bucketed_batches(tiny_corpus, tmp_path):
    import torch._dynamo
    from torch._dynamo.utils import counters
    from test_trainer import make_trainer

    torch._dynamo.reset()
    counters.clear()
    trainer = make_trainer(tiny_corpus, tmp_path, torch_compile=True, torch_compile_backend="aot_eager",
                           torch_compile_dynamic=False, compile_bucket_seconds=0.25, max_steps=4,
                           per_device_train_batch_size=3, max_audio_seconds=1.0)
    loader = trainer.get_train_dataloader()
    shapes = {batch["input_values"].shape[-1] for batch in loader}
    assert shapes and all(n % 4000 == 0 for n in shapes) and max(shapes) <= 16000
    assert trainer.accelerator.state.dynamo_plugin.dynamic is False
    result = trainer.train()
    assert result.global_step == 4 and np.isfinite(result.training_loss)
    assert 1 <= counters["stats"]["unique_graphs"] <= 4 * shape_count_bound(1.0, 0.25)
    eval_shapes = {batch["input_values"].shape[-1] for batch in trainer.get_eval_dataloader()}
    assert all(n % 4000 == 0 for n in eval_shapes)
    torch._dynamo.reset()
