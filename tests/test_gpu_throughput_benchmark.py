"""benchmarks/gpu_throughput.py in its --tiny CPU mode: the same code a lent GPU runs, on tiny configs."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_throughput_runs_on_tiny_configs(tmp_path):
    out = tmp_path / "gpu.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_throughput.py"), "--tiny", "--models", "wavlm-large",
               "--precisions", "bf16", "--batching", "grouped", "random", "--checkpointing", "on", "--batch-sizes", "2",
               "--steps", "2", "--warmup", "1", "--output", str(out)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {r["batching"]: r for r in result["results"]}
    assert result["tiny"] and set(rows) == {"grouped", "random"}
    for row in rows.values():
        assert row["audio_seconds_per_second"] > 0 and row["samples_per_second"] > 0 and math.isfinite(row["final_loss"])
        assert row["flops_per_audio_second"] > 0 and row["peak_memory_gib"] > 0
    assert rows["grouped"]["real_frame_fraction"] > rows["random"]["real_frame_fraction"]
    assert "audio-s/s" in done.stdout


def test_flops_per_audio_second_of_wavlm_large_is_about_a_hundred_gigaflops():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import gpu_throughput

    flops = gpu_throughput.flops_per_audio_second(gpu_throughput.LARGE["wavlm-large"])
    assert 80e9 < flops < 130e9  # the arithmetic: ~104 GFLOP per audio-second


def test_gpu_throughput_compiled_runs_on_bucketed_shapes(tmp_path):
    out = tmp_path / "gpu.json"
    command = [sys.executable, os.path.join(ROOT, "benchmarks", "gpu_throughput.py"), "--tiny", "--models", "wavlm-large",
               "--precisions", "fp32", "--batching", "grouped", "--checkpointing", "off", "--batch-sizes", "2",
               "--steps", "2", "--warmup", "1", "--compile", "off", "on", "--compile-backend", "eager",
               "--bucket-seconds", "1.0", "--output", str(out)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    rows = {r["compile"]: r for r in json.loads(out.read_text())["results"]}
    assert set(rows) == {"off", "on"} and "compile_seconds" not in rows["off"]
    compiled = rows["on"]
    assert compiled["compile_seconds"] > 0 and compiled["compiled_graphs"] >= 1 and math.isfinite(compiled["final_loss"])
    # Bucket padding (1 s here) costs real frames compared with the same grouped batches uncompiled.
    assert compiled["real_frame_fraction"] < rows["off"]["real_frame_fraction"] <= 1.0
