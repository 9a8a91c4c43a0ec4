"""Two CPU processes under `accelerate launch` (gloo): disjoint training shares covering each epoch,
and an evaluation equal to a single-process evaluation of the same checkpoint."""
from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys

import pytest

from ser_hf.data.corpora import load_corpus

SCRIPT = os.path.join(os.path.dirname(__file__), "distributed_script.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(manifest, out, processes: int, sampler: str):
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    if processes > 1:
        launcher += ["--multi_gpu", "--num_processes", str(processes), "--main_process_port", str(_free_port())]
    else:
        launcher += ["--cpu", "--num_processes", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    command = launcher + ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", SCRIPT,
                          "--manifest", manifest, "--out", str(out), "--sampler", sampler]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("sampler", ["none", "up"])
def test_two_processes_split_each_epoch_and_evaluate_like_one(tiny_manifest, tmp_path, sampler):
    two = _launch(tiny_manifest, tmp_path / "two", 2, sampler)
    assert two["world_size"] == 2
    seen = [(tmp_path / "two" / f"seen_rank{r}.txt").read_text().split() for r in range(2)]
    train = load_corpus("manifest", tiny_manifest)["train"]
    epochs = 2
    counts = collections.Counter(seen[0] + seen[1])
    labels = dict(zip(train["id"], train["label"]))
    assert len(seen[0]) == len(seen[1])  # equal shares
    if sampler == "none":
        assert set(counts) == set(train["id"]) and set(counts.values()) == {epochs}  # each row once per epoch
    else:  # balanced up-sampling: each class drawn as often as the largest (6 rows) per epoch
        per_class = collections.Counter(labels[i] for i in seen[0] + seen[1])
        assert per_class == {"a": 6 * epochs, "b": 6 * epochs, "c": 6 * epochs}
        assert set(counts) == set(train["id"])

    # the saved checkpoint evaluated by one process gives the same metrics (nothing dropped or duplicated)
    one_out = tmp_path / "one"
    from ser_hf.arguments import DataArguments
    from ser_hf.experiment import evaluate_checkpoint

    single = evaluate_checkpoint(str(tmp_path / "two" / "model"), DataArguments(corpus="manifest", data_path=tiny_manifest),
                                 split="test", batch_size=5, output_dir=str(one_out))
    assert two["num_predictions"] == 12
    for key in ("macro_f1", "uar", "ccc_mean", "ccc_valence"):
        assert two["metrics"][f"eval_{key}"] == pytest.approx(single[key], abs=1e-6), key


def test_accelerate_cpu_flag_runs_one_process(tiny_manifest, tmp_path):
    result = _launch(tiny_manifest, tmp_path / "cpu", 1, "none")
    assert result["world_size"] == 1
    assert len((tmp_path / "cpu" / "seen_rank0.txt").read_text().split()) == 12 * 2
