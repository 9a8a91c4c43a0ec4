"""FSDP on two CPU processes (gloo): torch's FullyShardedDataParallel with accelerate's transformer
auto-wrap policy over the model's `_no_split_modules` (what accelerate_configs/fsdp.yaml asks for)
shards a ser-hf model one unit per encoder layer and trains it.

Not run here: `accelerate launch --config_file accelerate_configs/fsdp.yaml` through the Trainer. On a
machine without accelerators transformers' Trainer joins CPU processes only with use_cpu=True, which
makes accelerate fall back to DDP (MULTI_CPU) and drop the FSDP plugin; without it every process trains
alone. That path needs GPUs."""
from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fsdp_wraps_encoder_layers_and_trains_on_two_cpu_processes(tmp_path):
    out = tmp_path / "fsdp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fsdp_worker.py"), str(_free_port()), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["layers"] == ["WavLMEncoderLayerStableLayerNorm"]
    assert result["units"] == 1 + 2  # the root and one unit per encoder layer
    assert all(math.isfinite(loss) for loss in result["losses"])
