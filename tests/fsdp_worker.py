"""One rank of the CPU FSDP check (see test_fsdp.py): wrap a tiny ser-hf model with torch FSDP using
accelerate's transformer auto-wrap policy on the model's `_no_split_modules`, take training steps."""
from __future__ import annotations

import functools
import json
import os
import sys

import torch
import torch.distributed as dist


def run(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    from ser_hf.configuration import SERSpeechConfig
    from ser_hf.modeling import SERModelForSpeech
    from ser_hf.tiny import tiny_speech_backbone

    torch.manual_seed(0)
    model = SERModelForSpeech(SERSpeechConfig(backbone_config=tiny_speech_backbone(), labels=["a", "b", "c"],
                                              head_hidden_size=16, freeze_feature_encoder=False))
    layer_classes = {type(m) for m in model.modules() if type(m).__name__ in set(model._no_split_modules)}
    policy = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls=layer_classes)
    wrapped = FSDP(model, auto_wrap_policy=policy, use_orig_params=True, device_id=torch.device("cpu"))
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(rank)
    losses = []
    for _ in range(3):
        audio = torch.randn(2, 8000, generator=generator)
        labels = torch.tensor([rank % 3, (rank + 1) % 3])
        loss = wrapped(input_values=audio, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    units = sum(isinstance(m, FSDP) for m in wrapped.modules())
    if rank == 0:
        with open(out, "w") as handle:
            json.dump({"losses": losses, "units": units, "layers": sorted(c.__name__ for c in layer_classes)}, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    import torch.multiprocessing as mp

    port, out = int(sys.argv[1]), sys.argv[2]
    mp.spawn(run, args=(2, port, out), nprocs=2, join=True)
