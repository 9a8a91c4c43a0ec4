"""Averaging the weights of the last k epochs of one run into its final model (``average_last_epochs``).

Why: a small encoder trained from scratch on a few hundred utterances ends each epoch at a rather
different point, and which one the run stops at decides much of its test score (EmoDB's seed-to-seed
spread). Averaging the end-of-epoch weights of the last epochs (stochastic weight averaging on the
decaying learning rate; Izmailov et al., 2018) evaluates a point in the middle of that region: same
training cost, no extra evaluation data, one model at inference.

The snapshots travel with each checkpoint (``epoch_weights.safetensors``, written before the
Trainer marks the checkpoint complete), so a resumed run averages exactly what an uninterrupted
run would have. Only floating-point tensors are averaged; integer buffers keep the last value.
"""
from __future__ import annotations

import os

import torch
from transformers import TrainerCallback

SNAPSHOT_FILE = "epoch_weights.safetensors"


class EpochWeightAveraging(TrainerCallback):
    """Keep the model's weights at the end of each of the last ``k`` epochs; at the end of training load their mean."""

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"average_last_epochs must be >= 1, got {k}")
        self.k = k
        self.snapshots: list[dict[str, torch.Tensor]] = []  # oldest first, at most k

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        snapshot = {name: tensor.detach().to("cpu", torch.float32, copy=True)
                    for name, tensor in model.state_dict().items() if tensor.is_floating_point()}
        self.snapshots = [*self.snapshots, snapshot][-self.k:]

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if not self.snapshots:
            return
        averaged = average_state_dicts(self.snapshots)
        current = model.state_dict()
        model.load_state_dict({name: averaged[name].to(current[name].dtype) for name in averaged}, strict=False)

    def save(self, folder: str) -> None:
        """Write the snapshots into a checkpoint folder (atomically)."""
        from safetensors.torch import save_file

        from ser_hf.io import atomic_path

        flat = {f"{i}/{name}": tensor for i, snapshot in enumerate(self.snapshots) for name, tensor in snapshot.items()}
        with atomic_path(os.path.join(folder, SNAPSHOT_FILE)) as tmp:
            save_file(flat, tmp, metadata={"count": str(len(self.snapshots))})

    def load(self, folder: str) -> None:
        """Restore the snapshots saved in a checkpoint folder; a checkpoint written without them is refused."""
        from safetensors import safe_open

        path = os.path.join(folder, SNAPSHOT_FILE)
        if not os.path.isfile(path):
            raise ValueError(
                f"{folder} has no {SNAPSHOT_FILE}: it was saved without average_last_epochs, so the averaged "
                "weights cannot be reproduced; resume with the settings it was trained with"
            )
        with safe_open(path, "pt") as handle:
            count = int(handle.metadata()["count"])
            snapshots: list[dict[str, torch.Tensor]] = [{} for _ in range(count)]
            for key in handle.keys():
                index, _, name = key.partition("/")
                snapshots[int(index)][name] = handle.get_tensor(key)
        self.snapshots = snapshots[-self.k:]


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of state dicts with the same keys (in float32)."""
    return {name: torch.stack([sd[name].float() for sd in state_dicts]).mean(0) for name in state_dicts[0]}


__all__ = ["SNAPSHOT_FILE", "EpochWeightAveraging", "average_state_dicts"]
